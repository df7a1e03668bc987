"""Sending one request to CouchDB: a pooled session, the phase's retry policy,
pacing, and the failures turned into the client's errors (see retry.classify).
"""
import threading
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ProtocolError

from corehq.couch import deepjson
from corehq.couch.credentials import BadCouchUrl, mask_password, normalize_url, split_credentials
from corehq.couch.errors import (
    CouchError, CouchHTTPError, CouchNotFound, CouchStopping, CouchUnauthorized, CouchUnreachable,
    DatabaseMissing, RequestTooLarge,
)
from corehq.couch.retry import STATUSES_READ_FOR_ERROR, PhaseBudget, RetryPolicy, classify

DEFAULT_TIMEOUT = (10, 300)
# (connect, read) seconds of a question answered quickly or not at all (see Connection.quick)
QUICK_TIMEOUT = (3, 15)
DEFAULT_PORTS = {'http': 80, 'https': 443}
POOL_SIZE = 16  # room for every request a phase keeps in flight

_stop = threading.Event()


def stop_requests():
    """From now on every request, and every retry's wait, raises CouchStopping.

    For a process told to stop (Ctrl-C, SIGTERM): it abandons the requests in
    flight rather than wait for the slowest of them (a large attachment, a
    stalled response), so nothing new may start either. A result is recorded
    as progress only once it has arrived, so what was recorded stays right."""
    _stop.set()


def allow_requests():
    """Requests may start again (a process that goes on after a stopped
    command, such as a test); work abandoned by the stop stays abandoned."""
    global _stop
    _stop = threading.Event()


def stop_event():
    """The event stop_requests sets, for work that must know whether it was
    abandoned, even after allow_requests."""
    return _stop


def stopping():
    return _stop.is_set()


class _Adapter(HTTPAdapter):
    """Lets a call start urllib3's retries from a state of its own (see
    Connection._send): requests hands urllib3 ``max_retries`` as the start
    state, read at each send (tests/couch/test_transport.py pins that)."""

    def __init__(self, **kwargs):
        self._call = threading.local()
        super().__init__(**kwargs)

    @property
    def max_retries(self):
        retry = getattr(self._call, 'retry', None)
        return self._policy if retry is None else retry

    @max_retries.setter
    def max_retries(self, retry):
        self._policy = retry

    @contextmanager
    def retrying_from(self, retry):
        self._call.retry = retry
        try:
            yield
        finally:
            self._call.retry = None


def make_session(policy, pool_size=POOL_SIZE):
    """A session that reuses connections; each call starts from its own retry
    state (see _Adapter), ``policy`` is the one used otherwise."""
    session = requests.Session()
    adapter = _Adapter(max_retries=policy, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    return session


def server_of(url):
    """(scheme, host, port) of a url, the server a PhaseBudget counts first contact per."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a malformed url: requests says so when it is used
        port = None
    return scheme, parts.hostname, port or DEFAULT_PORTS.get(scheme)


class Connection:
    """One database's url and the session that reaches it. ``url`` may carry
    credentials; they go to the session's auth, never into messages."""

    def __init__(self, url, timeout=DEFAULT_TIMEOUT, budget=None):
        """``budget``: how long to keep trying, a PhaseBudget shared by the
        phase's databases (None: a PhaseBudget of its own, the default)."""
        try:
            url = normalize_url(url.rstrip('/'))
        except BadCouchUrl as e:  # said before the url can reach a library that prints it
            raise CouchError(str(e)) from None
        self.display_url = mask_password(url)
        bare_url, auth = split_credentials(url)
        self.url = bare_url
        self.server_url, name = bare_url.rsplit('/', 1)
        self.name = unquote(name)
        self.budget = PhaseBudget() if budget is None else budget
        self.retry = RetryPolicy.for_phase(self.budget, label=self.display_url, server=server_of(bare_url))
        self.session = make_session(self.retry)
        if auth:
            self.session.auth = auth
        self.timeout = timeout

    @classmethod
    def answering_quickly(cls, url):
        """The database at ``url``, asked with one retry and a short timeout:
        for a question whose answer may be "not now" (a node down, a server
        away), where waiting for it would hold up the work or the person
        asking (--status)."""
        return cls(url, timeout=QUICK_TIMEOUT, budget=PhaseBudget.quick())

    def quick(self):
        """This database, asked as ``answering_quickly`` does."""
        other = self.answering_quickly(self.url)
        other.session.auth = self.session.auth
        return other

    def request(self, method, path='', *, params=None, body=None, timeout=None,
                stream=False, server_level=False, headers=None):
        """The response, its body read unless ``stream``; an error status raises."""
        return self._call(method, path, params, body, timeout, stream, server_level, headers)[0]

    def json(self, method, path='', *, params=None, body=None, timeout=None, server_level=False):
        return self._call(method, path, params, body, timeout, False, server_level, None, decode=True)[1]

    def _call(self, method, path, params, body, timeout, stream, server_level, extra_headers,
              decode=False):
        if stopping():
            raise CouchStopping(f"{self.display_url}: not asked, the process is stopping")
        url = self.server_url if server_level else self.url
        if path:
            url = f"{url}/{path}"
        headers = {'Accept': 'application/json', **(extra_headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else deepjson.dumps(body)
            headers.setdefault('Content-Type', 'application/json')
        request = dict(method=method, url=url, params=_encode_params(params), data=data,
                       headers=headers, timeout=timeout or self.timeout)
        self.budget.pace()
        try:
            response, payload, spent = self._send(request, stream, decode, f"{method} {path}".rstrip())
        except requests.RequestException as e:
            error = self._error_for(e)
            if error is None:
                raise
            raise error from None
        if not classify(response.status_code).transient:
            self.budget.answered(self.retry.server)
        if response.status_code >= 400:
            raise self._error_for_status(response, method, path, spent)
        return response, payload

    def _send(self, request, stream, decode, what):
        """Send until there is a whole response, under one retry budget.

        urllib3 retries what fails before a response arrives (connections,
        5xx, 429). A body cut off or stalled after that, and an answer whose
        body says it is transient (a cluster's 412 nodedown), are retried here, and urllib3's
        next try goes on from the state it left: one Retry is carried through
        the whole call, so the backoff goes on growing and the call gives up
        once the budget is spent, whichever layer spent it.
        Returns (response, decoded body, the Retry state at the end).
        """
        retry = self.retry.new(stop=stop_event())
        while True:
            adapter = self.session.get_adapter(request['url'])
            with adapter.retrying_from(retry):
                response = self.session.request(**request, stream=True)
            retry = response.raw.retries
            try:
                cause = _transient_answer(response)
                if cause is None:
                    if stream:
                        return response, None, retry
                    content = response.content
                    if decode and response.status_code < 400:
                        return response, deepjson.loads(content), retry
                    return response, None, retry
            except (requests.RequestException, deepjson.JSONDecodeError) as e:
                outcome = classify(e)
                if outcome is None or not outcome.transient:
                    raise
                cause = outcome.reason
            response.close()
            try:
                retry = retry.increment(request['method'], request['url'], error=ProtocolError(cause))
            except MaxRetryError:
                raise CouchUnreachable(
                    f"{self.display_url}: {cause} ({what}): gave up after {len(retry.history)} retries"
                ) from None
            retry.sleep(cause=cause)

    def _error_for(self, exc):
        """The client's error for an exception requests raised while sending."""
        outcome = classify(exc)
        if outcome is None:
            return None
        if outcome.error is CouchError:
            return CouchError(f"{self.display_url} is not a CouchDB url: it needs to be "
                              f"http(s)://[user:password@]host[:port]/database")
        if isinstance(exc, requests.exceptions.RetryError):
            return CouchUnreachable(f"{self.display_url}: the server kept failing ({outcome.reason})")
        return CouchUnreachable(f"Cannot reach {self.display_url}: {outcome.reason}")

    def _error_for_status(self, response, method, path, spent):
        error, reason = couch_error(response)
        where = f"{method} {self.display_url}/{path}".rstrip('/')
        status = response.status_code
        outcome = classify(status, error, reason, whole_database=not path)
        # A transient status still here is one the retries could not get past.
        if outcome.transient and outcome.slow_down:
            return CouchUnreachable(
                f"{where}: rate limited by the server: gave up after {len(spent.history)} retries")
        if outcome.transient:
            return CouchUnreachable(f"{where}: the server kept failing ({status} {error} {reason}".rstrip()
                                    + f"): gave up after {len(spent.history)} retries")
        if outcome.error is CouchUnauthorized:
            return CouchUnauthorized(
                f"{self.display_url}: the server refused the credentials ({status} {error}: {reason})")
        if outcome.error is DatabaseMissing:
            return DatabaseMissing(f"The database {self.display_url} does not exist")
        if outcome.error is RequestTooLarge:
            return RequestTooLarge(f"{where}: request too large")
        if outcome.error is CouchNotFound:
            return CouchNotFound(f"{where}: not found ({reason})")
        return CouchHTTPError(f"{where}: {status} {error} {reason}".rstrip(), status)


def couch_error(response):
    """CouchDB's (error, reason) of an error response (the start of the body when it is not JSON)."""
    try:
        payload = response.json()
        return payload.get('error', ''), payload.get('reason', '')
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        return '', response.text[:200]


def _transient_answer(response):
    """Why to ask again when an answer's body makes it transient (see
    retry.STATUSES_READ_FOR_ERROR), else None. Reading the body may raise
    what a body cut off raises, which the caller retries as such."""
    if response.status_code not in STATUSES_READ_FOR_ERROR:
        return None
    error, reason = couch_error(response)
    outcome = classify(response.status_code, error, reason)
    return outcome.reason if outcome.transient else None


def bool_param(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return value


def _encode_params(params):
    """Query values CouchDB expects as JSON (keys, seqs that are not plain strings)."""
    if not params:
        return params
    encoded = {}
    for key, value in params.items():
        if key in ('key', 'keys', 'startkey', 'endkey', 'start_key', 'end_key'):
            value = deepjson.dumps(value).decode()
        elif isinstance(value, bool):
            value = bool_param(value)
        elif isinstance(value, (list, dict)):
            value = deepjson.dumps(value).decode()
        encoded[key] = value
    return encoded
