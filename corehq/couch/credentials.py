"""Credentials in CouchDB urls: read from any way an operator writes them,
kept out of everything printed or logged.

Operators paste passwords into urls as they are, so a password may hold
``/``, ``#``, ``?``, ``@`` or ``:`` unencoded, where a strict url parser
(urlsplit, and the couch libraries built on it) ends the host early or fails.
Here the credentials end at the url's last ``@`` (a CouchDB url has none
elsewhere: database names cannot hold one) and the user ends at the first
``:``; percent-encoded characters are decoded, so ``%2F`` and ``/`` are the
same. A user holding ``:`` must encode it (``%3A``), as Basic auth requires.
"""
from collections import namedtuple
from urllib.parse import quote, unquote

SCHEMES = ('http', 'https')
MASK = '****'
URL_FORM = "http(s)://[user:password@]host[:port][/path]"

CouchUrl = namedtuple('CouchUrl', 'scheme user password host port path')


class BadCouchUrl(ValueError):
    """A url that is not a CouchDB url; the message holds it masked."""


def parse_url(url):
    """The parts of a CouchDB url (user and password decoded, None when
    absent); BadCouchUrl when it is not one."""
    scheme, userinfo, hostpart = _split(url)

    def bad(why):
        return BadCouchUrl(f"{mask_password(url)} is not a CouchDB url ({why}): it needs to be {URL_FORM}")
    if scheme is None:
        raise bad("it has no http:// or https://")
    if scheme.lower() not in SCHEMES:
        raise bad(f"{scheme}:// is not http:// or https://")
    user = password = None
    if userinfo is not None:
        user, colon, password = userinfo.partition(':')
        user, password = unquote(user), unquote(password) if colon else None
    host, port, path = _host_port_path(hostpart, bad)
    return CouchUrl(scheme.lower(), user, password, host, port, path)


def normalize_url(url):
    """The url as every url parser reads it: its credentials percent-encoded.
    BadCouchUrl when it is not a CouchDB url."""
    parts = parse_url(url)
    return _unparse(parts, parts.user, parts.password)


def mask_password(url):
    """The url with its password replaced by ****, safe to print or log,
    whatever the url's shape (a url that is not a CouchDB url included)."""
    scheme, userinfo, hostpart = _split(url)
    if userinfo is None or ':' not in userinfo:
        return url
    user = userinfo.partition(':')[0]
    return f"{'' if scheme is None else scheme + '://'}{user}:{MASK}@{hostpart}"


def split_credentials(url):
    """(url without user:password, (user, password) or None), the url
    normalized; BadCouchUrl when it is not a CouchDB url."""
    parts = parse_url(url)
    bare = _unparse(parts, None, None)
    if parts.user is None:
        return bare, None
    return bare, (parts.user, parts.password or '')


def _split(url):
    """(scheme or None, userinfo or None, the rest: host, port and path), as written."""
    scheme, sep, rest = url.partition('://')
    if not sep or not scheme or not scheme.replace('+', '').replace('-', '').replace('.', '').isalnum():
        scheme, rest = None, url
    userinfo, at, hostpart = rest.rpartition('@')
    return scheme, (userinfo if at else None), hostpart


def _host_port_path(hostpart, bad):
    authority, slash, path = hostpart.partition('/')
    if '?' in authority or '#' in authority or '?' in path or '#' in path:
        raise bad("a server url has no ? or #; encode them in a password as %3F and %23")
    if authority.startswith('['):
        host, bracket, port_text = authority[1:].partition(']')
        if not bracket or not host or (port_text and not port_text.startswith(':')):
            raise bad("an IPv6 host is written [address]:port")
        port_text, host = port_text[1:], f"[{host}]"
    else:
        host, _colon, port_text = authority.partition(':')
        if ':' in port_text:
            raise bad("an IPv6 host is written in brackets, [address]:port")
    if not host:
        raise bad("it has no host")
    if port_text and not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise bad(f"the port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text) if port_text else None, slash + path


def _unparse(parts, user, password):
    credentials = ''
    if user is not None:
        credentials = quote(user, safe='')
        if password is not None:
            credentials += ':' + quote(password, safe='')
        credentials += '@'
    port = '' if parts.port is None else f":{parts.port}"
    return f"{parts.scheme}://{credentials}{parts.host}{port}{parts.path}"
