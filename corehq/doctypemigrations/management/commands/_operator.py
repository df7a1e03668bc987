"""What every migration command shares: the databases a migrator names, one
CommandError line for every failure an operator can act on, and a prompt stop
on SIGTERM or Ctrl-C."""
import signal
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import DatabaseError

from corehq.couch import CouchDB, CouchError
from corehq.couch.transport import allow_requests, stop_requests
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


class Stopping(KeyboardInterrupt):
    """SIGTERM or SIGINT: the process was told to stop."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals():
    """A supervisor's SIGTERM and Ctrl-C stop any phase at once: the requests
    in flight are abandoned and no new one starts (see couch.stop_requests),
    so a large attachment or a stalled response does not hold the stop up.
    What was recorded stays right: a result is recorded only once it arrived.
    A SIGINT the shell made ignored (a script's background job) stays ignored."""
    def stop(signum, frame):
        stop_requests()
        raise Stopping(signum)
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        allow_requests()


def stopped_error(interrupt, rerun):
    """The line a stopped command ends with, and the shell's exit code for the signal."""
    signum = getattr(interrupt, 'signum', signal.SIGINT)
    return CommandError(f"Stopped by {signal.Signals(signum).name}: the requests in flight were "
                        f"abandoned; the progress recorded so far stands, and {rerun} goes on from it "
                        f"when run again.", returncode=128 + signum)


@contextmanager
def stoppable(rerun):
    """The block stops promptly on SIGTERM or Ctrl-C (see stop_signals) and
    ends with ``stopped_error``'s line; ``rerun`` names what goes on from it."""
    try:
        with stop_signals():
            yield
    except KeyboardInterrupt as interrupt:
        raise stopped_error(interrupt, rerun) from None
