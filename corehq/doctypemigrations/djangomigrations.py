"""A blocking Django migration: no deploy goes past it before --initial finished."""
import os

from django.conf import settings

from corehq.doctypemigrations.checkpoints import has_checkpoint


class MigrationNotComplete(Exception):
    pass


def assert_initial_complete(migrator):
    """For ``migrations.RunPython(assert_initial_complete(users_migration))``."""

    def forwards(apps, schema_editor):
        if getattr(settings, 'UNIT_TESTING', False) or os.environ.get('CCHQ_IS_FRESH_INSTALL') == '1':
            return
        if not has_checkpoint(migrator.slug):
            raise MigrationNotComplete(_message(migrator))

    return forwards


def _message(migrator):
    slug = migrator.slug
    return f"""
The doc type migration {slug!r} has not finished its initial phase, and the code
you are deploying reads its doc types from the new database.

On a developer machine, run:
    ./manage.py migrate doctypemigrations 0001   # the tables that record progress
    ./manage.py sync_couch_views
    ./manage.py run_doctype_migration {slug} --initial
    ./manage.py migrate

On a production deploy, follow the live swap in the doc type migration guide:
run `./manage.py run_doctype_migration {slug} --initial`, keep
`./manage.py run_doctype_migration {slug} --continuous` running, and deploy
this code while it runs.

On a fresh install with no data to migrate, set CCHQ_IS_FRESH_INSTALL=1 to
skip this check.
"""
