from django.apps import AppConfig


class PillowsConfig(AppConfig):
    name = 'corehq.pillows'
    default_auto_field = 'django.db.models.BigAutoField'
    verbose_name = 'Pillows'
