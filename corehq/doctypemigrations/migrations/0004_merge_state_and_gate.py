from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('doctypemigrations', '0003_phases_and_refusals'),
        ('doctypemigrations', '0002_users_migration_initial_complete'),
    ]

    operations = []
