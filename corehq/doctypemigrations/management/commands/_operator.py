"""What every migration command shares: the databases a migrator names, and
one CommandError line for every failure an operator can act on."""
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import DatabaseError

from corehq.couch import CouchDB, CouchError
from corehq.doctypemigrations.djangomigrations import STATE_MIGRATION
from corehq.doctypemigrations.errors import MigrationError
from corehq.doctypemigrations.management.commands._text import error_text


@contextmanager
def operator_errors():
    """Every failure the operator can act on becomes one CommandError."""
    try:
        yield
    except (MigrationError, CouchError) as e:
        raise CommandError(error_text(e))
    except ImproperlyConfigured as e:
        raise CommandError(str(e))
    except DatabaseError as e:
        raise CommandError(f"The migration state in Django's database is not readable ({e}): "
                           f"run `./manage.py migrate doctypemigrations {STATE_MIGRATION}` first.")


def open_databases(migrator, budget):
    """The migrator's source and target as the settings name them, sharing
    the phase's budget (ImproperlyConfigured for a database not registered)."""
    migrator.validate(settings.COUCH_SETTINGS_HELPER)
    helper = settings.COUCH_SETTINGS_HELPER
    return (CouchDB(helper.db_url(migrator.source_db_name), budget=budget),
            CouchDB(helper.db_url(migrator.target_db_name), budget=budget))
