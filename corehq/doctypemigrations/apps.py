from django.apps import AppConfig


class DocTypeMigrationsConfig(AppConfig):
    name = 'corehq.doctypemigrations'
    default_auto_field = 'django.db.models.BigAutoField'
    verbose_name = 'Doc type migrations'
