# The guide's "Commit 1": no deploy past this point until the users/groups
# migration has finished its initial phase.
from django.db import migrations

from corehq.doctypemigrations.djangomigrations import assert_initial_complete
from corehq.doctypemigrations.migrator_instances import users_migration


class Migration(migrations.Migration):

    dependencies = [
        ('doctypemigrations', '0001_initial'),
    ]

    operations = [
        migrations.RunPython(assert_initial_complete(users_migration), migrations.RunPython.noop),
    ]
