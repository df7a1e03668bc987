"""Running pillows in tests: in-process through call_command, or as real
processes to interrupt and kill."""
import signal
import sys
from io import StringIO

from django.core.management import call_command

from corehq.couchsettings import CouchSettingsHelper
from corehq.pillows.sinks import UserIndexSink
from tests import processes
from tests.conftest import PROJECT_DIR, bind_couchdbkit


def pillow(*args):
    """call_command run_pillow; returns stdout."""
    out = StringIO()
    call_command('run_pillow', *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def move(*args):
    out = StringIO()
    call_command('move_pillow_checkpoint', *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def flip(settings):
    """Commit 2 of the guide, in this test's settings: users and groups read from the new database."""
    old = settings.COUCH_SETTINGS_HELPER
    apps = [(app, 'users') if app in ('users', 'groups') else app for app in old.app_db_names]
    helper = CouchSettingsHelper(old.main_db_url, apps, old.extra_db_names)
    settings.COUCH_SETTINGS_HELPER = helper
    settings.COUCHDB_DATABASES = helper.get_couchdb_databases()
    bind_couchdbkit(settings.COUCHDB_DATABASES)
    return helper


def index():
    return UserIndexSink().entries()


def rebuilt_index():
    """What a rebuild from scratch on the database the settings name makes of it
    (the index is replaced by it)."""
    pillow('user_index', '--rebuild', '--until-caught-up')
    return index()


def start_manage(env, cwd, *args, **popen_kwargs):
    """./manage.py in the background, which Ctrl-C interrupts whatever the tests inherited."""
    return processes.start([sys.executable, PROJECT_DIR / 'manage.py', *args], cwd=cwd, env=env,
                           **popen_kwargs)


def stop(proc, sig=signal.SIGTERM, timeout=60):
    """Stop a process a test started (pass or fail); returns its output, if piped."""
    return processes.stop(proc, sig, timeout)[0]
