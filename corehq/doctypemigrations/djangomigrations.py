"""A blocking Django migration: no deploy goes past it before --initial finished.

It raises a ``CommandError``, so a blocked ``./manage.py migrate`` prints the
explanation alone and exits non-zero, as Django does for any command error.
"""
import os

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError

from corehq.doctypemigrations import state as states

# The migration that creates the state tables; the blocking one comes after it.
STATE_MIGRATION = '0010_pair_changes'


class MigrationNotComplete(CommandError):
    pass


def assert_initial_complete(migrator):
    """For ``migrations.RunPython(assert_initial_complete(users_migration))``."""

    def forwards(apps, schema_editor):
        if getattr(settings, 'UNIT_TESTING', False) or os.environ.get('CCHQ_IS_FRESH_INSTALL') == '1':
            return
        problem = why_not_complete(migrator, settings.COUCH_SETTINGS_HELPER)
        if problem:
            raise MigrationNotComplete(_message(migrator, problem))

    return forwards


def why_not_complete(migrator, helper):
    """None when the initial phase is complete for the configured databases, else why not."""
    try:
        state = states.get(migrator.slug)
    except DatabaseError:
        return "its state tables are not there yet"
    if state is None:
        return "it has not started"
    if not states.initial_complete(state):
        refused = state.refusals.count()
        return (f"it is in the phase {states.phase(state)!r}"
                + (f", with {refused} documents refused by the target" if refused else ""))
    recorded = states.recorded_databases(state)
    configured = (helper.full_db_name(migrator.source_db_name), helper.full_db_name(migrator.target_db_name))
    if recorded and recorded != configured:
        return (f"its initial phase was completed from {recorded[0]} to {recorded[1]}, but the settings "
                f"name {configured[0]} and {configured[1]}")
    return None


def _message(migrator, problem):
    slug = migrator.slug
    return f"""
The doc type migration {slug!r} has not finished its initial phase ({problem}),
and the code you are deploying reads its doc types from the new database.

On a developer machine, run:
    ./manage.py migrate doctypemigrations {STATE_MIGRATION}   # the tables that record progress
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
