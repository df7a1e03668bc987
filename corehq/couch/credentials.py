"""Credentials in CouchDB urls: kept out of everything printed or logged."""
from urllib.parse import unquote, urlsplit, urlunsplit


def mask_password(url):
    """The url with its password replaced by ****, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username}:****@{_host_port(parts)}"))


def split_credentials(url):
    """(url without user:password, (user, password) or None)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = _host_port(parts)
    auth = (unquote(parts.username), unquote(parts.password or ''))
    return urlunsplit(parts._replace(netloc=netloc)), auth


def _host_port(parts):
    # As written: urlsplit's hostname and port are None or raise for a url
    # that is malformed there, and the caller still needs a printable url.
    return parts.netloc.rpartition('@')[2]
