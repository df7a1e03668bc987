"""What the pillow commands share: the database a pillow's app reads from
(through the settings, so it follows the flip), and one
CommandError for every failure an operator can act on."""
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import DatabaseError

from corehq.couch import CouchDB, CouchError, DatabaseMissing
from corehq.doctypemigrations.errors import MigrationError
from corehq.pillows.errors import PillowError


@contextmanager
def operator_errors():
    try:
        yield
    except DatabaseMissing as e:
        raise CommandError(f"{e} (does the database exist? Check COUCH_DATABASE and COUCHDB_APPS in "
                           f"the settings, or create it with sync_couch_views)")
    except (PillowError, MigrationError, CouchError) as e:
        raise CommandError(str(e))
    except ImproperlyConfigured as e:
        raise CommandError(str(e))
    except DatabaseError as e:
        raise CommandError(f"The pillows' checkpoints in Django's database are not readable ({e}): "
                           f"run `./manage.py migrate` first.")


def app_db_name(pillow):
    """The real name of the database the settings make the pillow's app read from."""
    helper = settings.COUCH_SETTINGS_HELPER
    try:
        return helper.full_db_name(helper.app_db_name(pillow.app_label))
    except KeyError:
        raise ImproperlyConfigured(f"Pillow {pillow.name!r} follows the app {pillow.app_label!r}, which "
                                   f"COUCHDB_APPS does not list") from None


def app_db(pillow, budget):
    return CouchDB(f"{settings.COUCH_SETTINGS_HELPER.server_url}/{app_db_name(pillow)}", budget=budget)
