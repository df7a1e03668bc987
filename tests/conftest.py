"""Fixtures: one real pouchdb-server for the session, fresh databases per test."""
import os
import uuid
from pathlib import Path

import pytest
import requests

from corehq.couchsettings import CouchSettingsHelper
from corehq.couch import CouchDB
from corehq.embedded_couch.server import EmbeddedCouch, free_port

PROJECT_DIR = Path(__file__).resolve().parent.parent

# couch_proxy and proxied_dbs, for the tests that need faults between the client and the server;
# the check that no test leaves a process running (and pytester, to show that check fail)
pytest_plugins = ['tests.proxy_fixtures', 'tests.processes', 'pytester']


def pytest_addoption(parser):
    parser.addoption('--couch-proxy', action='store_true',
                     help="Reach CouchDB through a proxy that makes seqs opaque strings (as on "
                          "CouchDB 3 clusters) and replays already-sent changes.")


def pytest_configure(config):
    # The test database is built by running every migration, the blocking one
    # included; tests of that migration turn this off again.
    from django.conf import settings
    settings.UNIT_TESTING = True


@pytest.fixture(scope='session')
def couch_server(tmp_path_factory):
    """The project's own pouchdb-server on a free loopback port, stopped at the end."""
    server = EmbeddedCouch(PROJECT_DIR, tmp_path_factory.mktemp('couchdb'), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope='session')
def couch_url(couch_server, request):
    """Where the code under test reaches CouchDB: the server itself, or with
    --couch-proxy a cluster-like proxy in front of it."""
    if not request.config.getoption('--couch-proxy'):
        yield couch_server.url
        return
    from tests.couchproxy import CouchProxy
    proxy = CouchProxy(couch_server.url, opaque_seqs=True, replay_changes=True,
                       replay_probability=0.5, replay_rows=2, replay_seed=7).start()
    yield proxy.url
    proxy.stop()


@pytest.fixture(scope='session')
def feed_replays(request):
    """How many already-sent rows a _changes page may repeat (at-least-once delivery)."""
    return 2 if request.config.getoption('--couch-proxy') else 0


@pytest.fixture
def db_prefix(couch_server):
    """A unique main-database name; every database named after it is deleted afterwards."""
    prefix = f"test_{uuid.uuid4().hex[:12]}"
    yield prefix
    for name in requests.get(f"{couch_server.url}/_all_dbs", timeout=30).json():
        if name.startswith(prefix):
            requests.delete(f"{couch_server.url}/{name}", timeout=60)


@pytest.fixture
def couch_settings(settings, couch_url, db_prefix):
    """Point the project's couch settings (and couchdbkit) at this test's databases."""
    main_url = f"{couch_url}/{db_prefix}"
    helper = CouchSettingsHelper(main_url, settings.COUCHDB_APPS, [settings.NEW_USERS_GROUPS_DB])
    settings.COUCH_SERVER_URL = couch_url
    settings.COUCH_DATABASE_NAME = db_prefix
    settings.COUCH_DATABASE = main_url
    settings.COUCH_SETTINGS_HELPER = helper
    settings.COUCHDB_DATABASES = helper.get_couchdb_databases()
    bind_couchdbkit(settings.COUCHDB_DATABASES)
    yield helper
    bind_couchdbkit(helper.get_couchdb_databases())


def bind_couchdbkit(databases):
    """Make couchdbkit's handler and every Document class use ``databases``."""
    from couchdbkit.ext.django.loading import CouchdbkitHandler, couchdbkit_handler
    couchdbkit_handler._databases.clear()
    CouchdbkitHandler(databases)
    for schemas in couchdbkit_handler.app_schema.values():
        for document_class in schemas.values():
            document_class._db = None


@pytest.fixture
def source_db(couch_settings):
    db = CouchDB(couch_settings.db_url(None))
    db.create()
    return db


@pytest.fixture
def target_db(couch_settings):
    db = CouchDB(couch_settings.db_url('users'))
    db.create()
    return db


@pytest.fixture
def subprocess_env(couch_url, db_prefix, tmp_path):
    """Environment for running ./manage.py against this test's databases and a
    state database file of its own."""
    env = dict(os.environ)
    env.update({
        'COUCH_SERVER_URL': couch_url,
        'COUCH_DATABASE_NAME': db_prefix,
        'DATABASE_URL': f"sqlite:///{tmp_path / 'state.sqlite3'}",
        'PYTHONUNBUFFERED': '1',
    })
    env.pop('USERS_GROUPS_DB', None)
    return env


@pytest.fixture
def migration_dbs(couch_settings, source_db, target_db, tmp_path, monkeypatch, db):
    """users_migration's source and target, fresh, with design docs synced, the
    dump file going to a temporary folder and a fresh state database."""
    from django.core.management import call_command
    call_command('sync_couch_views', verbosity=0)
    monkeypatch.chdir(tmp_path)
    return source_db, target_db


@pytest.fixture
def own_server(tmp_path):
    """A pouchdb-server of the test's own, to stop and restart at will."""
    server = EmbeddedCouch(PROJECT_DIR, tmp_path / 'own-couch', free_port())
    server.start()
    yield server
    server.stop()
