"""Telling a TLS mismatch from a server that is down or busy.

``https://`` to a port that speaks plain HTTP fails every TLS handshake
(pouchdb-server answers the handshake with an HTTP 400; CouchDB answers
nothing, so the handshake times out), and ``http://`` to a TLS port has its
requests cut off: to a retry policy both look like a server in trouble, and a
phase would retry them for minutes. When a server's first request fails that
way, one probe of the port in the other protocol says which it is, and the
failure is said as such at once.
"""
import socket
import ssl

from urllib3.exceptions import HTTPError, ProtocolError, SSLError, TimeoutError as Urllib3Timeout

PROBE_TIMEOUT = 5


class TLSMismatch(HTTPError):
    """Not worth retrying: the url's scheme is not what the port speaks, or its
    certificate is not trusted. The message is safe to show (no url)."""


def _plain_http_port():
    return TLSMismatch("https:// to a port that speaks plain HTTP, not TLS: use http://")


def problem(error, scheme, host, port):
    """A TLSMismatch for a first request to (scheme, host, port) that failed
    with the urllib3 ``error``, or None when it is no such thing."""
    host = host.strip('[]')  # an IPv6 address, as a socket takes it
    if scheme == 'https' and isinstance(error, SSLError):
        cause = error.args[0] if error.args else None
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TLSMismatch(f"the server's TLS certificate is not trusted ({cause.verify_message})")
        if speaks_plain_http(host, port):
            return _plain_http_port()
    # A first request can also time out on a busy TLS server, or on a TLS port
    # that answers plain HTTP too (nginx's 400): only a port that answers plain
    # HTTP and completes no TLS handshake is a mismatch.
    if scheme == 'https' and isinstance(error, Urllib3Timeout) \
            and speaks_plain_http(host, port) and not speaks_tls(host, port):
        return _plain_http_port()
    if scheme == 'http' and isinstance(error, ProtocolError) and speaks_tls(host, port):
        return TLSMismatch("http:// to a port that speaks TLS: use https://")
    return None


def speaks_tls(host, port, timeout=PROBE_TIMEOUT):
    """Whether a TLS handshake with the port succeeds (any certificate: only
    the protocol is asked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def speaks_plain_http(host, port, timeout=PROBE_TIMEOUT):
    """Whether the port answers a plain HTTP request with an HTTP status line."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False
