"""How the client keeps trying: which failures are worth another try (the
one table, ``classify``), how long a phase keeps trying (``PhaseBudget``) and
how it waits in between (``RetryPolicy``, urllib3's Retry configured).
"""
import logging
import random
import socket
import threading
import time
from typing import NamedTuple

import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from corehq.couch import deepjson, tls
from corehq.couch.errors import (
    CouchError, CouchHTTPError, CouchNotFound, CouchStopping, CouchUnauthorized, CouchUnreachable,
    DatabaseMissing, RequestTooLarge,
)

# Seconds of failing without one success in between before a phase gives up:
# long enough for a remote cluster to shed load or finish a restart.
DEFAULT_GIVE_UP_AFTER = 600
QUICK_RETRIES = 1  # PhaseBudget.quick(): one more try, for a question a person waits on

log = logging.getLogger('corehq.couch')

# The issue's own words, so that an operator can search the log for them.
RATE_LIMITED = 'rate limited by the server, slowing down (429)'
CUT_OFF = 'the response was cut off'
STALLED = 'the response stalled past the read timeout'
INVALID_BODY = 'the response was incomplete or invalid'
NOT_A_URL = 'not a CouchDB url'
NODE_DOWN = 'a node of the cluster is down or rejoining (412 nodedown)'


class Outcome(NamedTuple):
    """What a failure is: the error it is raised as (once the retries are
    spent, when ``transient``), whether asking again may get another answer,
    a short reason without the url, and whether the phase slows down for it."""
    error: type
    transient: bool
    reason: str = ''
    slow_down: bool = False


ANSWERED = Outcome(None, False)

# -- the table: the only place that says what a status or an exception is ------------

_STATUSES = {
    # Credentials refused, unless CouchDB says 'forbidden' (a validate_doc_update refusal).
    401: Outcome(CouchUnauthorized, False),
    403: Outcome(CouchUnauthorized, False),
    404: Outcome(CouchNotFound, False),
    # urllib3 would retry a 413 that carries Retry-After: a request too large stays too large.
    413: Outcome(RequestTooLarge, False),
    # Cloudant meters requests per second (and sends no Retry-After): not now rather than no.
    429: Outcome(CouchUnreachable, True, RATE_LIMITED, slow_down=True),
    # Not Implemented, HTTP Version Not Supported: about the request itself (a
    # method or protocol this server does not speak), not the server's state,
    # so asking again gets the same answer.
    501: Outcome(CouchHTTPError, False),
    505: Outcome(CouchHTTPError, False),
}
# Statuses whose meaning is in CouchDB's error, keyed (status, error). A
# cluster's _changes (a page or a longpoll) answers 412 nodedown "progress
# not possible" when the node serving a shard range's copy dies mid-request or
# is still rejoining (seen on CouchDB 3.5, 3 nodes, n=3): the other copies
# answer the next request. Every other 412 (a database that exists on PUT db,
# a missing If-Match) is a final answer.
_ERRORS = {
    (412, 'nodedown'): Outcome(CouchUnreachable, True, NODE_DOWN),
}
# The transport reads the body of these before it decides to retry (urllib3 sees the status only).
STATUSES_READ_FOR_ERROR = frozenset(status for status, _error in _ERRORS)

_SERVER_TROUBLE = Outcome(CouchUnreachable, True)  # any other 5xx: a busy or restarting cluster
_OTHER_ANSWER = Outcome(CouchHTTPError, False)  # 400, 409, 412...: an answer, never retried
# Below 400 is an answer, 202 included: a cluster accepted the write on fewer
# copies than its write quorum (a node down), so it is durable on at least one
# copy and the cluster's internal replication brings it to the others. It is
# a success, as for CouchDB's own replicator: the doc is acknowledged, reads
# may miss it only until the copies converge, and --verify reads it again.

# Failures of the connection itself, as opposed to answers from CouchDB.
MID_BODY_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout) + MID_BODY_ERRORS
BAD_URL_ERRORS = (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                  requests.exceptions.InvalidURL)


def classify(failure, error='', reason='', whole_database=False):
    """The Outcome of a response status (ANSWERED below 400) or of an
    exception raised by requests while asking (None: not one of ours).

    For a status, ``error`` and ``reason`` are CouchDB's answer and
    ``whole_database`` says the request was for the database itself.
    Exceptions raised while a response is read (cut off, stalled, not whole)
    are transient: the client asks again. Those raised while sending come
    after urllib3 already retried them under the policy, so they are final.
    """
    if isinstance(failure, BaseException):
        return _classify_error(failure)
    status = failure
    if status < 400:
        return ANSWERED
    if (status, error) in _ERRORS:
        return _ERRORS[status, error]
    if status in (401, 403) and error == 'forbidden':
        return _OTHER_ANSWER
    if status == 404 and (whole_database or 'database' in str(reason).lower() or reason == 'no_db_file'):
        return Outcome(DatabaseMissing, False)
    if status in _STATUSES:
        return _STATUSES[status]
    return _SERVER_TROUBLE if 500 <= status < 600 else _OTHER_ANSWER


def _classify_error(exc):
    if isinstance(exc, BAD_URL_ERRORS):
        return Outcome(CouchError, False, NOT_A_URL)
    if isinstance(exc, deepjson.JSONDecodeError):
        return Outcome(CouchUnreachable, True, INVALID_BODY)
    if isinstance(exc, MID_BODY_ERRORS):
        return Outcome(CouchUnreachable, True, CUT_OFF)
    if isinstance(exc, requests.ConnectionError) and stalled_midway(exc):
        return Outcome(CouchUnreachable, True, STALLED)
    if isinstance(exc, (requests.exceptions.RetryError,) + TRANSPORT_ERRORS):
        return Outcome(CouchUnreachable, False, describe(exc))
    return None


TRANSIENT_STATUSES = frozenset(status for status in range(400, 600) if classify(status).transient)


def stalled_midway(exc):
    """Whether a ConnectionError raised while reading a body is the read
    timeout: requests wraps urllib3's ReadTimeoutError in a ConnectionError
    there, unlike before the response, where it is a Timeout."""
    return bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)


def describe(exc):
    """A short reason for a failed connection, without the url (which could
    carry credentials), from the exceptions requests and urllib3 chain."""
    cause = exc.args[0] if exc.args else None
    inner = getattr(cause, 'reason', None)  # a MaxRetryError's last error
    if isinstance(inner, tls.TLSMismatch):
        return str(inner)
    if isinstance(exc, requests.exceptions.SSLError):
        return f"the TLS handshake failed ({inner if inner is not None else cause})"
    for error in (inner, cause, exc):
        # NameResolutionError is a NewConnectionError, which is a ConnectTimeoutError: most specific first
        if isinstance(error, NameResolutionError) \
                or isinstance(getattr(error, '__cause__', None), socket.gaierror):
            return 'host name could not be resolved'
        if isinstance(error, NewConnectionError):
            if isinstance(error.__cause__, ConnectionRefusedError):
                return 'connection refused'
            if isinstance(error.__cause__, TimeoutError):
                return 'timed out'
            break
        if isinstance(error, (Urllib3Timeout, requests.Timeout, TimeoutError)):
            return 'timed out'
    if isinstance(exc, MID_BODY_ERRORS):
        return CUT_OFF
    return exc.__class__.__name__


# -- how long, and how fast ----------------------------------------------------------

class PhaseBudget:
    """How long one phase keeps trying, shared by every request it makes.

    A phase gives up after ``give_up_after`` seconds of failing without one
    success in between (None: never, for --continuous through a night-long
    outage); ``retries``, when given, also bounds the retries of each call
    (for a question that must be answered within seconds, see quick()).
    Before a server's first answer in the phase, a failed connection to it
    gives up after ``first_contact_retries``: a wrong url or a server that is
    down should be said at once, not after minutes. That is counted per
    server (see transport.server_of): the source answering says nothing
    about a mistyped target. Between tries it waits ``backoff_factor``
    seconds (0.25, as CouchDB's replicator does), doubling up to
    ``backoff_max``, plus up to ``backoff_jitter``.

    It also paces requests after a 429: Cloudant meters requests per second,
    so the whole phase slows down (each request waits ``interval`` after the
    previous one, growing by half on every 429) and speeds up again with each
    success (by a fifth: faster than it slows, so a server that refuses a
    steady share at random does not stall the phase), as CouchDB's replicator
    does. ``scale(n)`` shrinks batch sizes and requests in flight: halved on
    a 429, grown back by a sixteenth of the full size with each success. The
    429s of one second halve it once: Cloudant meters per second, so the
    requests in flight that all hit the same second's limit are one signal,
    not several (as TCP halves its window once per round trip).
    """

    MIN_INTERVAL, MAX_INTERVAL = 0.05, 10.0
    RATE_WINDOW = 1.0

    def __init__(self, give_up_after=DEFAULT_GIVE_UP_AFTER, first_contact_retries=2, *, retries=None,
                 backoff_factor=0.25, backoff_max=30, backoff_jitter=0.25):
        self.give_up_after = give_up_after
        self.first_contact_retries = first_contact_retries
        self.retries = retries
        self.backoff = dict(backoff_factor=backoff_factor, backoff_max=backoff_max,
                            backoff_jitter=backoff_jitter)
        self._answered_by = set()  # servers (see server_of) that answered this phase
        self.failing_since = None
        self.interval = 0.0
        self.factor = 1.0
        self._next_at = 0.0
        self._halved_at = None
        self._lock = threading.Lock()

    @classmethod
    def quick(cls):
        """Gives up after one more try: for a status a person or a monitor waits for."""
        return cls(retries=QUICK_RETRIES)

    def answered(self, server=None):
        with self._lock:
            self._answered_by.add(server)
            self.failing_since = None
            if self.interval:
                self.interval = self.interval * 0.8 if self.interval > self.MIN_INTERVAL else 0.0
            self.factor = min(1.0, self.factor + 1 / 16)

    def has_answered(self, server=None):
        with self._lock:
            return server in self._answered_by

    def failed(self):
        with self._lock:
            if self.failing_since is None:
                self.failing_since = time.monotonic()

    def rate_limited(self):
        with self._lock:
            self.interval = min(self.MAX_INTERVAL, max(self.MIN_INTERVAL, self.interval * 1.5))
            now = time.monotonic()
            if self._halved_at is None or now - self._halved_at >= self.RATE_WINDOW:
                self._halved_at = now
                self.factor = max(1 / 16, self.factor / 2)

    def exhausted(self):
        with self._lock:
            return (self.give_up_after is not None and self.failing_since is not None
                    and time.monotonic() - self.failing_since > self.give_up_after)

    def pace(self):
        """Wait for this request's turn while the phase is slowed down."""
        with self._lock:
            now = time.monotonic()
            wait = max(0.0, self._next_at - now)
            self._next_at = max(now, self._next_at) + self.interval
        if wait:
            time.sleep(wait)

    def scale(self, size):
        return max(1, int(size * self.factor))


class RetryPolicy(Retry):
    """The one retry policy of the client: urllib3's Retry, so its counting and
    Retry-After handling are urllib3's own, built from a PhaseBudget
    (``for_phase``), which decides when to give up.

    Transient is what ``classify`` says: failed connections, responses cut
    off, 5xx and 429 (here), and a cluster's 412 nodedown (read from the body
    by the transport, see STATUSES_READ_FOR_ERROR). Everything else (400,
    401, 403, 404, 409, another 412, 413...) is an answer and is never
    retried. A Retry-After is honoured up to 5 minutes. Every request this
    client makes is safe to repeat: reads, and writes with new_edits=false
    or explicit revs, which CouchDB answers idempotently.

    ``label`` (a url without password) starts the line logged to
    ``corehq.couch`` before each wait; ``server`` (see server_of) is the one
    whose first contact the budget's ``first_contact_retries`` applies to;
    ``stop`` is the event (see transport.stop_requests) that ends every wait.
    """

    def __init__(self, total=None, connect=None, read=None, *, backoff_factor=0.25, backoff_max=30,
                 backoff_jitter=0.25, retry_after_max=300, status_forcelist=TRANSIENT_STATUSES,
                 allowed_methods=None, raise_on_status=False, label=None, budget=None, server=None,
                 stop=None, **kwargs):
        super().__init__(
            total=total, connect=connect, read=read, backoff_factor=backoff_factor,
            backoff_max=backoff_max, backoff_jitter=backoff_jitter, retry_after_max=retry_after_max,
            status_forcelist=status_forcelist, allowed_methods=allowed_methods,
            raise_on_status=raise_on_status, **kwargs)
        self.label = label
        self.budget = budget
        self.server = server
        self.stop = stop

    def new(self, **kw):
        kw.setdefault('label', self.label)
        kw.setdefault('budget', self.budget)
        kw.setdefault('server', self.server)
        kw.setdefault('stop', self.stop)
        return super().new(**kw)

    @classmethod
    def for_phase(cls, budget, **kwargs):
        """Retries bounded by the phase's time budget (and its ``retries``, if any)."""
        return cls(total=budget.retries, connect=budget.first_contact_retries, read=None, budget=budget,
                   **budget.backoff, **kwargs)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None and _pool is not None and self._first_contact():
            mismatch = tls.problem(error, _pool.scheme, _pool.host, _pool.port)
            if mismatch is not None:
                raise MaxRetryError(_pool, url, mismatch) from error
        if self.budget is not None:
            self.budget.failed()
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def _first_contact(self):
        """Whether the server has not answered yet (in this phase, or this call)."""
        if self.budget is not None:
            return not self.budget.has_answered(self.server)
        return not self.history

    def is_exhausted(self):
        if self.budget is None:
            return super().is_exhausted()
        if self.total is not None and self.total < 0:
            return True
        if not self.budget.has_answered(self.server) and self.connect is not None and self.connect < 0:
            return True
        return self.budget.exhausted()

    def is_retry(self, method, status_code, has_retry_after=False):
        # urllib3 would also retry a status the table calls final when it carries Retry-After.
        return status_code in self.status_forcelist and self._is_method_retryable(method)

    def get_backoff_time(self):
        # urllib3 makes the first retry at once; a server that is shedding load
        # needs a moment even then.
        if not self.history:
            return 0
        # the exponent is capped: a night-long outage makes thousands of retries
        backoff = self.backoff_factor * 2 ** min(len(self.history) - 1, 32)
        return min(self.backoff_max, backoff + random.random() * self.backoff_jitter)

    def sleep(self, response=None, cause=None):
        """Wait before the next try: as the server's Retry-After says, or the backoff.
        Says why and for how long in one log line, except for failed connections,
        which urllib3 already logs."""
        if self.stop is not None and self.stop.is_set():
            raise CouchStopping(f"{self.label or 'CouchDB'}: not retried, the process is stopping")
        delay = self.get_retry_after(response) if response is not None and self.respect_retry_after_header \
            else None
        if not delay:
            delay = self.get_backoff_time()
        if response is not None:
            outcome = classify(response.status)
            cause = outcome.reason or f"the server answered {response.status}"
            if outcome.slow_down and self.budget is not None:
                self.budget.rate_limited()
        if cause:
            log.warning("%s: %s: retrying in %.1fs", self.label or 'CouchDB', cause, delay)
        time.sleep(delay)
