"""No password in any output, log line or file, whatever shape COUCH_SERVER_URL
has: real commands in processes of their own, against the real server behind
Basic auth (the fault proxy's require_auth)."""
import json
from urllib.parse import quote

import pytest

from corehq.couch import CouchDB
from tests.couchproxy import CouchProxy
from tests.doctypemigrations.helpers import manage_py, state_db_ready

SLUG = 'user_db_migration'
SECRET = 'S3/cr#t?x@y:z'  # every character that ends a part of a url
WRONG = 'Wr0ng/p#ss?w@rd'
SECRETS = (SECRET, quote(SECRET, safe=''), WRONG, quote(WRONG, safe=''))
USERS = {'raw': 'admin', 'encoded': 'admin', 'reserved user': 'ad@m/n#?', 'ipv6': 'admin'}


@pytest.fixture
def auth_proxy(couch_server, request):
    host = '::1' if request.param == 'ipv6' else '127.0.0.1'
    proxy = CouchProxy(couch_server.url, listen_host=host,
                       require_auth=(USERS[request.param], SECRET)).start()
    yield request.param, proxy
    proxy.stop()


def _url(proxy, user, password, path=''):
    return f"http://{user}:{password}@{proxy.url.split('://')[1]}{path}"


def _assert_nothing_shows_a_password(result, *more):
    for text in (result.stdout, result.stderr) + more:
        for secret in SECRETS:
            assert secret not in text, f"a password in the output:\n{text}"


def _assert_no_file_holds_a_password(folder):
    for path in folder.rglob('*'):
        if path.is_file():
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{path} holds a password"


@pytest.mark.parametrize('auth_proxy', list(USERS), indirect=True)
def test_no_command_shows_the_password(auth_proxy, couch_server, subprocess_env, db_prefix, tmp_path):
    shape, proxy = auth_proxy
    user, password = USERS[shape], SECRET
    if shape == 'encoded':
        password = quote(SECRET, safe='')
    for name in (db_prefix, f"{db_prefix}__users"):
        CouchDB(f"{couch_server.url}/{name}").create()
    source = CouchDB(f"{couch_server.url}/{db_prefix}")
    source.put({'_id': 'u1', 'doc_type': 'CommCareUser', 'password': 'hash'})
    env = dict(subprocess_env, COUCH_SERVER_URL=_url(proxy, user, password), LOG_LEVEL='INFO')
    state_db_ready(env, tmp_path)

    def command(*args, code=0):
        result = manage_py(env, *args, cwd=tmp_path, timeout=300)
        assert result.returncode == code, result.stdout + result.stderr
        _assert_nothing_shows_a_password(result)
        return result

    command('sync_couch_views')
    stats = command('run_doctype_migration', SLUG, '--stats')
    assert ':****@' in stats.stdout
    initial = command('run_doctype_migration', SLUG, '--initial', '--keep-dump')
    assert initial.stdout.startswith('Dumping http://') and ':****@' in initial.stdout
    command('run_doctype_migration', SLUG, '--continuous', '--until-caught-up')
    command('run_doctype_migration', SLUG, '--verify')
    # 1: no follower runs, which needs attention
    assert ':****@' in command('run_doctype_migration', SLUG, '--status', code=1).stdout
    report = command('run_doctype_migration', SLUG, '--status', '--json', code=1).stdout
    assert ':****@' in json.dumps(json.loads(report))
    command('delete_doc_conflicts', SLUG)

    env['COUCH_SERVER_URL'] = _url(proxy, user, WRONG)
    refused = command('run_doctype_migration', SLUG, '--stats', code=1)
    assert 'refused the credentials' in refused.stderr and ':****@' in refused.stderr
    env['COUCH_SERVER_URL'] = _url(proxy, user, password, '/couch')  # a path prefix
    missing = command('run_doctype_migration', SLUG, '--stats', code=1)
    assert '/couch/' in missing.stderr and ':****@' in missing.stderr
    _assert_no_file_holds_a_password(tmp_path)


@pytest.mark.parametrize('url', [
    f"admin:{SECRET}@127.0.0.1:5984",
    f"admin:{quote(SECRET, safe='')}@127.0.0.1:5984",
    f"ftp://admin:{SECRET}@127.0.0.1:5984",
    f"http://admin:{SECRET}@127.0.0.1:59x4",
    f"http://admin:{SECRET}@[::1:5984",
])
@pytest.mark.parametrize('args', [
    ('run_doctype_migration', SLUG, '--stats'), ('run_doctype_migration', SLUG, '--initial'),
    ('run_doctype_migration', SLUG, '--status'), ('run_doctype_migration', SLUG, '--status', '--json'),
    ('migrate',),
])
def test_a_url_that_cannot_be_read_is_one_masked_line_at_start_up(url, args, subprocess_env, tmp_path):
    env = dict(subprocess_env, COUCH_SERVER_URL=url, LOG_LEVEL='INFO')
    result = manage_py(env, *args, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert result.stdout == ''
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
    assert result.stderr.startswith('ImproperlyConfigured: COUCH_SERVER_URL: ')
    assert 'is not a CouchDB url' in result.stderr and ':****@' in result.stderr
    _assert_nothing_shows_a_password(result)
