"""Credentials in CouchDB urls: kept out of everything printed or logged."""
from urllib.parse import unquote, urlsplit, urlunsplit


def mask_password(url):
    """The url with its password replaced by ****, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def split_credentials(url):
    """(url without user:password, (user, password) or None)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else '')
    auth = (unquote(parts.username), unquote(parts.password or ''))
    return urlunsplit(parts._replace(netloc=netloc)), auth
