"""Fixtures for tests that need faults between the client and the real server
(tests/conftest.py loads them for every test)."""
import pytest
from django.core.management import call_command

from corehq.couchsettings import CouchSettingsHelper
from corehq.couch import CouchDB
from tests.conftest import bind_couchdbkit
from tests.couchproxy import CouchProxy


@pytest.fixture
def couch_proxy(couch_server):
    """A transparent CouchProxy in front of ``couch_server``; switch faults on
    through its attributes. Stopped (every connection cut) after the test."""
    proxy = CouchProxy(couch_server.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied_dbs(couch_proxy, db_prefix, settings, db, tmp_path, monkeypatch):
    """users_migration's databases reached through the fault proxy."""
    helper = CouchSettingsHelper(f"{couch_proxy.url}/{db_prefix}", settings.COUCHDB_APPS, ['users'])
    settings.COUCH_SETTINGS_HELPER = helper
    bind_couchdbkit(helper.get_couchdb_databases())
    monkeypatch.chdir(tmp_path)
    call_command('sync_couch_views', verbosity=0)
    return couch_proxy, CouchDB(helper.db_url(None)), CouchDB(helper.db_url('users'))
