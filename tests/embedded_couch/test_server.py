import socket

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.embedded_couch.server import EmbeddedCouch, free_port
from tests.conftest import PROJECT_DIR


@pytest.fixture
def server_settings(settings, tmp_path):
    settings.COUCH_EMBEDDED_PORT = free_port()
    settings.COUCH_EMBEDDED_DATA_DIR = tmp_path / 'couch'
    yield settings
    EmbeddedCouch(PROJECT_DIR, settings.COUCH_EMBEDDED_DATA_DIR, settings.COUCH_EMBEDDED_PORT).stop()


def run(*args):
    from io import StringIO
    out = StringIO()
    call_command('couchserver', *args, stdout=out)
    return out.getvalue()


def test_start_status_stop(server_settings):
    port = server_settings.COUCH_EMBEDDED_PORT
    assert 'not running' in run('status')
    assert 'started' in run('start')
    assert requests.get(f'http://127.0.0.1:{port}/').json()['express-pouchdb'] == 'Welcome!'
    assert (server_settings.COUCH_EMBEDDED_DATA_DIR / 'pouchdb-server.pid').exists()
    assert 'already running' in run('start')
    assert 'is running' in run('status')
    assert 'stopped' in run('stop')
    with pytest.raises(requests.ConnectionError):
        requests.get(f'http://127.0.0.1:{port}/', timeout=2)
    assert 'was not running' in run('stop')


def test_port_in_use_is_a_clear_error(server_settings):
    with socket.socket() as blocker:
        blocker.bind(('127.0.0.1', server_settings.COUCH_EMBEDDED_PORT))
        blocker.listen()
        with pytest.raises(CommandError, match='already in use'):
            run('start')
    assert 'not running' in run('status')
