"""Credentials in CouchDB urls of every shape: read right, never shown, and
accepted by a real server behind Basic auth (the fault proxy's require_auth)."""
from urllib.parse import quote

import pytest
from django.core.exceptions import ImproperlyConfigured

from corehq.couch import CouchDB, CouchError, CouchUnauthorized, PhaseBudget
from corehq.couch.credentials import BadCouchUrl, mask_password, normalize_url, parse_url, split_credentials
from corehq.couchsettings import checked_server_url
from tests.couchproxy import CouchProxy

PASSWORD = 'S3/cr#t?x@y:z'  # every character that ends a part of a url

# (url, user, password, host, port, path) as the operator meant them
SHAPES = [
    (f"http://admin:{PASSWORD}@couch.example:5984", 'admin', PASSWORD, 'couch.example', 5984, ''),
    (f"http://admin:{quote(PASSWORD, safe='')}@couch.example:5984", 'admin', PASSWORD, 'couch.example',
     5984, ''),
    (f"https://ad@m/n#?:{PASSWORD}@couch.example/couch", 'ad@m/n#?', PASSWORD, 'couch.example', None,
     '/couch'),
    (f"http://ad%3Amin:{PASSWORD}@[::1]:5984/couch/", 'ad:min', PASSWORD, '[::1]', 5984, '/couch/'),
    ("http://admin:plain@127.0.0.1:5984/commcarehq", 'admin', 'plain', '127.0.0.1', 5984, '/commcarehq'),
    ("http://127.0.0.1:5984", None, None, '127.0.0.1', 5984, ''),
]


@pytest.mark.parametrize('url, user, password, host, port, path', SHAPES)
def test_every_shape_is_read_as_meant(url, user, password, host, port, path):
    parts = parse_url(url)
    assert parts[1:] == (user, password, host, port, path)
    bare, auth = split_credentials(url)
    assert auth == (None if user is None else (user, password))
    assert bare == f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{path}"
    # what the couch libraries get: a url every parser reads the same way
    assert parse_url(normalize_url(url)) == parts
    assert normalize_url(normalize_url(url)) == normalize_url(url)


@pytest.mark.parametrize('url', [shape[0] for shape in SHAPES] + [
    f"admin:{PASSWORD}@couch.example:5984",  # no scheme
    f"admin:{PASSWORD}@couch.example:59x4",  # no scheme, bad port
    f"http//admin:{PASSWORD}@couch.example",  # a typo in the scheme
    f"ftp://admin:{PASSWORD}@couch.example",
    f"http://admin:{PASSWORD}@",
    f"http://admin:{PASSWORD}@[::1:5984",
    f"http://admin:{PASSWORD}@::1:5984",
    f"http://admin:{PASSWORD}@host:99999",
])
def test_no_shape_shows_the_password(url):
    for secret in (PASSWORD, quote(PASSWORD, safe=''), 'plain'):
        assert secret not in mask_password(url)
    try:
        normalize_url(url)
    except BadCouchUrl as e:
        message = str(e)
        assert 'is not a CouchDB url' in message and '****' in message
        for secret in (PASSWORD, quote(PASSWORD, safe='')):
            assert secret not in message


def test_a_url_without_credentials_is_unchanged():
    assert mask_password('http://127.0.0.1:5984/db') == 'http://127.0.0.1:5984/db'
    assert mask_password('https://token@host/db') == 'https://token@host/db'  # a user, no password


@pytest.mark.parametrize('url, why', [
    ('admin:pw@host:5984', 'no http://'),
    ('ftp://admin:pw@host', 'ftp:// is not'),
    ('http://admin:pw@', 'no host'),
    ('http://admin:pw@[::1:5984', 'IPv6'),
    ('http://admin:pw@::1:5984', 'IPv6'),
    ('http://admin:pw@host:0', "port '0'"),
    ('http://admin:pw@host:5984/db?x=1', 'no \\? or #'),
])
def test_a_url_that_is_not_a_couchdb_url_says_why_in_one_line(url, why):
    with pytest.raises(ImproperlyConfigured, match=why) as raised:
        checked_server_url(url)
    message = str(raised.value)
    assert message.startswith('COUCH_SERVER_URL: ') and '\n' not in message
    assert 'pw' not in message.replace('password', '')
    with pytest.raises(CouchError, match='is not a CouchDB url') as raised:
        CouchDB(f"{url}/db")
    assert 'pw' not in str(raised.value).replace('password', '')


@pytest.fixture
def auth_proxy(couch_server, request):
    """The real server behind Basic auth, on IPv4 or IPv6 loopback."""
    user, password, host = request.param
    proxy = CouchProxy(couch_server.url, listen_host=host, require_auth=(user, password)).start()
    yield proxy, user, password
    proxy.stop()


def _with_credentials(url, user, password):
    scheme, rest = url.split('://')
    return f"{scheme}://{user}:{password}@{rest}"


@pytest.mark.parametrize('auth_proxy', [('admin', PASSWORD, '127.0.0.1'), ('ad@m/n#?', PASSWORD, '::1'),
                                        ('ad:min', PASSWORD, '127.0.0.1')], indirect=True)
@pytest.mark.parametrize('encode', [False, True])
def test_the_server_accepts_the_credentials_of_every_shape(auth_proxy, db_prefix, encode):
    proxy, user, password = auth_proxy
    if encode or ':' in user:
        user, password = quote(user, safe=''), quote(password, safe='')
    db = CouchDB(f"{_with_credentials(proxy.url, user, password)}/{db_prefix}")
    db.create()
    assert db.info()['db_name'] == db_prefix
    assert PASSWORD not in db.display_url and quote(PASSWORD, safe='') not in db.display_url
    wrong = CouchDB(f"{_with_credentials(proxy.url, user, 'N0t/' + password)}/{db_prefix}",
                    budget=PhaseBudget(retries=0))
    with pytest.raises(CouchUnauthorized) as refused:
        wrong.info()
    assert PASSWORD not in str(refused.value) and quote(PASSWORD, safe='') not in str(refused.value)
