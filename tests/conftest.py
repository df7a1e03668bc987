"""Fixtures: one real server for the session, fresh databases per test.

The server is the project's own pouchdb-server unless the run names another
(tests/servers.py): ``--couch-url URL`` (or ``COUCH_TEST_URL``) for any CouchDB 3,
``--couchdb-launcher PATH --couchdb-nodes 1|3`` for Apache CouchDB started and
stopped by the run.
"""
import os
import uuid
from pathlib import Path

import pytest
import requests

from corehq.couchsettings import CouchSettingsHelper
from corehq.couch import CouchDB
from corehq.embedded_couch.server import EmbeddedCouch, free_port
from tests import servers

PROJECT_DIR = Path(__file__).resolve().parent.parent

# couch_proxy and proxied_dbs, for the tests that need faults between the client and the server;
# the check that no test leaves a process running (and pytester, to show that check fail)
pytest_plugins = ['tests.proxy_fixtures', 'tests.processes', 'pytester']


def pytest_addoption(parser):
    parser.addoption('--couch-proxy', action='store_true',
                     help="Reach pouchdb-server through a proxy that makes seqs opaque strings (as "
                          "on CouchDB 3 clusters) and replays already-sent changes.")
    parser.addoption('--couch-url', default=os.environ.get('COUCH_TEST_URL'),
                     help="Run against this CouchDB 3 (admin credentials in the url), left "
                          "running; default: $COUCH_TEST_URL, else the project's pouchdb-server.")
    parser.addoption('--couchdb-launcher', default=None,
                     help="Start Apache CouchDB with this launcher (../shared/couchdb/couchdb) "
                          "for the run and stop it at the end.")
    parser.addoption('--couchdb-nodes', type=int, choices=(1, 3), default=1,
                     help="With --couchdb-launcher: a single node, or a 3-node cluster.")


def pytest_configure(config):
    # The test database is built by running every migration, the blocking one
    # included; tests of that migration turn this off again.
    from django.conf import settings
    settings.UNIT_TESTING = True
    config.addinivalue_line('markers', 'pouchdb_only(reason): about a quirk of pouchdb-server; '
                                       'skipped on any other server')
    config.addinivalue_line('markers', 'couchdb_only(reason): needs what only CouchDB has; '
                                       'skipped on pouchdb-server')
    config.addinivalue_line('markers', 'cluster: kills and restarts nodes of a 3-node cluster '
                                       'started by the run; skipped on any other server')


def pytest_runtest_setup(item):
    """Skip, naming the reason, a test the run's server cannot show."""
    kind, nodes, launched = _server_shape(item.config)
    for marker, wanted in (('pouchdb_only', servers.POUCHDB), ('couchdb_only', servers.COUCHDB)):
        found = item.get_closest_marker(marker)
        if found and kind != wanted:
            reason = found.args[0] if found.args else found.kwargs.get('reason', '')
            pytest.skip(f"{marker}: {reason} (this run's server is {kind})")
    if item.get_closest_marker('cluster') and not (launched and nodes == 3):
        pytest.skip("cluster: needs a 3-node cluster started by the run "
                    "(--couchdb-launcher ../shared/couchdb/couchdb --couchdb-nodes 3)")


def _server_shape(config):
    """(kind, nodes, started by the launcher) of the server the run names."""
    if config.getoption('--couchdb-launcher'):
        return servers.COUCHDB, config.getoption('--couchdb-nodes'), True
    if config.getoption('--couch-url'):
        if not hasattr(config, '_couch_shape'):
            url = config.getoption('--couch-url')
            config._couch_shape = (servers.server_kind(url), servers.cluster_size(url), False)
        return config._couch_shape
    return servers.POUCHDB, 1, False


@pytest.fixture(scope='session')
def couch_server(tmp_path_factory, request):
    """The run's server (see the module docstring), stopped at the end if the run started it."""
    config = request.config
    if config.getoption('--couchdb-launcher'):
        launcher, nodes = config.getoption('--couchdb-launcher'), config.getoption('--couchdb-nodes')
        server = servers.LaunchedCouch(launcher, tmp_path_factory.mktemp('couchdb'), nodes)
    elif config.getoption('--couch-url'):
        server = servers.ExternalCouch(config.getoption('--couch-url'))
    else:
        server = EmbeddedCouch(PROJECT_DIR, tmp_path_factory.mktemp('couchdb'), free_port())
        server.kind = servers.POUCHDB
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope='session')
def couch_kind(couch_server):
    """'pouchdb' or 'couchdb': what the run's server is."""
    return couch_server.kind


@pytest.fixture
def couch_cluster(couch_server):
    """The run's 3-node cluster, whose nodes a test may kill and start again
    (tests marked ``cluster`` only). Every node is up again after the test."""
    yield couch_server
    for n in range(1, couch_server.nodes + 1):
        if not servers.node_answers(couch_server.node_url(n)):
            couch_server.start_node(n)


@pytest.fixture(scope='session')
def couch_url(couch_server, request):
    """Where the code under test reaches CouchDB: the server itself, or with
    --couch-proxy a cluster-like proxy in front of it."""
    if not request.config.getoption('--couch-proxy'):
        yield couch_server.url
        return
    if couch_server.kind != servers.POUCHDB:
        raise pytest.UsageError("--couch-proxy turns pouchdb-server's integer seqs into opaque "
                                "ones: a CouchDB's are opaque already")
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
