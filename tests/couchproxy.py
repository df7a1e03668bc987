"""A fault-injecting HTTP proxy for tests, in front of a real CouchDB-compatible server.

Nothing here imitates CouchDB: every request that is not refused goes to the
real server, and the proxy only changes what crosses the wire, to make
pouchdb-server behave like the harder servers production meets:

- ``opaque_seqs``: seqs look like a CouchDB 3 cluster's (``"12-g1AAAAA..."``),
  and seqs the client sends back are turned into pouchdb's integers again;
- ``replay_changes``: ``_changes`` pages repeat rows from before ``since``
  (a cluster's at-least-once delivery after a shard moves);
- ``drop_after_bytes``: a response is cut off mid-body, after the upstream
  server has done the work (a write that succeeded but was never confirmed);
- ``stall_after_bytes``: a response stops mid-body without the connection
  closing, until the client gives up on it (a server or link that hangs);
- ``max_request_bytes``: 413 like CouchDB's ``max_http_request_size``;
- ``latency``: every request waits before it is forwarded, as over a link to
  a remote cluster (``max_in_flight`` tells how many the client kept open);
- ``rate_limit_probability``: a random share of requests is answered 429
  ``too_many_requests`` without a Retry-After header, as Cloudant does over
  its rate limit; the request never reaches the server;
- ``fail_status``: a chosen share or count of requests is answered with that
  status, a 5xx as from a busy cluster or a gateway in front of it (500, 502,
  503, 504); the request never reaches the server;
- ``require_auth``: Basic auth in front of pouchdb-server's admin party;
- ``inject_doc_errors``: chosen docs of a ``_bulk_docs`` are rejected per doc
  (a ``validate_doc_update`` saying ``forbidden``) and never reach the server;
- ``hold_paths``: matching requests wait before they are forwarded until
  ``release()``, as a query waits behind an index build that lasts for hours;
- ``pause()``/``resume()``: the server goes away and comes back on the same port.

And it records: ``record_bodies`` keeps the requests it matches, with their
headers and bodies as the client sent them, in ``bodies``, to check what a
client sends where the server does not show what it keeps.

Usage::

    proxy = CouchProxy(couch_server.url, opaque_seqs=True).start()
    requests.get(f"{proxy.url}/db/_changes")
    proxy.stop()
"""
import base64
import http.client
from http import HTTPStatus
import json
import random
import re
import select
import socket
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from corehq.couch import deepjson
from tests.waiting import wait_for

LOOPBACK = '127.0.0.1'
UPSTREAM_TIMEOUT = 300  # long enough for any longpoll a test makes; stop() cuts the rest
READ_SIZE = 64 * 1024
RECENT_REQUESTS = 1000
HOLD_LIMIT_SECONDS = 60  # how long holding() waits at most for the state to release at

# The fault switches, all off: a transparent proxy.
FAULT_DEFAULTS = {
    'opaque_seqs': False,         # CouchDB-3-style opaque seqs out, pouchdb's integers in
    'replay_changes': False,      # _changes pages since S also repeat rows up to S ...
    'replay_probability': 1.0,    # ... on this share of the pages (drawn from replay_seed) ...
    'replay_rows': 2,             # ... this many of them at most
    'drop_after_bytes': None,     # cut matching responses after this many body bytes ...
    'drop_paths': None,           # ... matching: a regex searched in "METHOD /path?query" ...
    'drop_count': None,           # ... for the next N of them (None: every one)
    'stall_after_bytes': None,    # as drop_after_bytes, the same paths and count, but the rest is
                                  # held back and the connection kept open until the client hangs up
    'max_request_bytes': None,    # larger request bodies get 413 and are not forwarded
    'latency': 0.0,               # seconds each request waits before it is forwarded (a remote link)
    'rate_limit_probability': 0.0,  # this share of requests gets 429 (drawn from rate_limit_seed) ...
    'rate_limit_paths': None,     # ... among those matching: a regex searched in "METHOD /path?query"
    'fail_status': None,          # answer matching requests with this status (503...) unforwarded ...
    'fail_paths': None,           # ... matching: a regex searched in "METHOD /path?query" ...
    'fail_count': None,           # ... the next N of them (None: every one) ...
    'fail_probability': 1.0,      # ... on this share of them (drawn from fail_seed)
    'require_auth': None,         # (user, password) for Basic auth, stripped before forwarding
    'inject_doc_errors': None,    # {doc_id: (error, reason)} or callable(doc) -> (error, reason) | None
    'hold_paths': None,           # requests matching this regex (searched in "METHOD /path?query")
                                  # wait before they are forwarded until release()
    'record_bodies': None,        # keep the requests matching this regex (searched in
                                  # "METHOD /path?query") as RecordedRequest in ``bodies``
}

# Headers that describe one hop, not the message: each side of the proxy sets its own.
HOP_BY_HOP = frozenset({
    'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer',
    'upgrade', 'proxy-authenticate', 'proxy-authorization', 'content-length',
})
# Never forwarded upstream: Host is the upstream's own; Expect was answered here;
# Accept-Encoding because compression would buffer heartbeats and hide JSON to rewrite.
NOT_FORWARDED = HOP_BY_HOP | {'host', 'expect', 'accept-encoding'}

_DB = r'/(?!_)[^/?]+'
CHANGES_PATH = re.compile(rf'^{_DB}/_changes$')
BULK_DOCS_PATH = re.compile(rf'^{_DB}/_bulk_docs$')
SEQ_BEARING_PATH = re.compile(
    rf'^{_DB}(/?|/_changes|/_all_docs|/_design_docs|/_local_docs|/_design/[^/]+/_view/[^/]+)$')
PUBLIC_PATH = re.compile(r'^/(_up)?$')  # CouchDB answers these without credentials
RATE_LIMIT_REASON = "You've exceeded your current limit of requests per second. Please try later."
SEEDS = ('replay_seed', 'rate_limit_seed', 'fail_seed')

SEQ_KEYS = ('seq', 'last_seq', 'update_seq', 'purge_seq')
OPAQUE_MARK = 'g1AAAAA'
OPAQUE_SEQ = re.compile(rf'^"?(?:\d+-)?{OPAQUE_MARK}([A-Za-z0-9_-]+)"?$')
OPAQUE_NODE = 'node1'


# -- opaque seqs -----------------------------------------------------------

class BadSeq(ValueError):
    pass


def _endpoint(request):
    """The path's last part: ``_bulk_get``, ``_bulk_docs``, a doc id..."""
    return request.target.split('?', 1)[0].rstrip('/').rsplit('/', 1)[-1]


def encode_seq(n):
    """A CouchDB-3-looking seq for pouchdb's integer ``n``: a number prefix that
    clients must not do arithmetic on, then base64 that really carries ``n``."""
    token = base64.urlsafe_b64encode(f"{OPAQUE_NODE}:{n}".encode()).decode().rstrip('=')
    return f"{n}-{OPAQUE_MARK}{token}"


def decode_seq(value):
    """pouchdb's seq (an int, or ``'now'``) behind a seq a client sent back.

    Like CouchDB 3, only ``0``, ``now`` and seqs the server handed out are
    accepted; the number prefix is ignored, so a client that edits it is not
    rescued. Anything else raises BadSeq.
    """
    if value in (0, '0'):
        return 0
    if value == 'now':
        return 'now'
    match = OPAQUE_SEQ.match(value) if isinstance(value, str) else None
    if not match:
        raise BadSeq(value)
    token = match[1] + '=' * (-len(match[1]) % 4)
    try:
        node, _, number = base64.urlsafe_b64decode(token).decode().partition(':')
    except (ValueError, UnicodeDecodeError):
        raise BadSeq(value) from None
    if node != OPAQUE_NODE or not number.isdigit():
        raise BadSeq(value)
    return int(number)


def encode_seqs(payload):
    """Make every integer seq of a response (or continuous-feed row) opaque."""
    if not isinstance(payload, dict):
        return payload
    for key in SEQ_KEYS:
        if _is_int(payload.get(key)):
            payload[key] = encode_seq(payload[key])
    for row in payload.get('results') or ():
        if isinstance(row, dict) and _is_int(row.get('seq')):
            row['seq'] = encode_seq(row['seq'])
    return payload


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# -- the proxy -------------------------------------------------------------

class _Seed:
    """A fault's seed: setting it reseeds the random choices of that fault
    (held in the proxy's attribute ``rng``), so the same seed gives the
    same choices."""

    def __init__(self, rng, doc):
        self.rng, self.__doc__ = rng, doc

    def __set_name__(self, owner, name):
        self.attribute = f"_{name}"

    def __get__(self, proxy, owner=None):
        return self if proxy is None else getattr(proxy, self.attribute)

    def __set__(self, proxy, seed):
        setattr(proxy, self.attribute, seed)
        getattr(proxy, self.rng).seed(seed)


class CouchProxy:
    """Forwards loopback HTTP to ``upstream_url``, injecting the faults that are switched on.

    Fault switches are plain attributes, safe to change while requests flow;
    they can also be given as keyword arguments. See the module docstring.
    """

    replay_seed = _Seed('_rng', "Which pages replay rows.")
    rate_limit_seed = _Seed('_rate_rng', "Which requests get a 429.")
    fail_seed = _Seed('_fail_rng', "Which requests fail_status answers.")

    def __init__(self, upstream_url, listen_host=LOOPBACK, **faults):
        """``listen_host``: the loopback address to listen on (``::1`` for IPv6)."""
        parts = urlsplit(upstream_url)
        self.listen_host = listen_host
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_prefix = parts.path.rstrip('/')
        # A real CouchDB has no admin party: the proxy signs in for a client that
        # sent no credentials of its own (the proxy's url carries none).
        self.upstream_auth = (_basic_auth(unquote(parts.username), unquote(parts.password or ''))
                              if parts.username else None)
        self.port = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self._hold_ended = threading.Condition(self._lock)
        self._pauses = 0  # how many times pause() (or stop()) ran
        self._live_sockets = set()
        self._rng = random.Random()
        self._rate_rng = random.Random()
        self._fail_rng = random.Random()
        self.replay_seed = 0
        self.rate_limit_seed = 0
        self.fail_seed = 0
        self.clear_faults()
        self.reset()
        for name, value in faults.items():
            if name not in FAULT_DEFAULTS and name not in SEEDS:
                raise TypeError(f"CouchProxy has no fault switch {name!r}")
            setattr(self, name, value)

    @property
    def url(self):
        host = f"[{self.listen_host}]" if ':' in self.listen_host else self.listen_host
        return f"http://{host}:{self.port}"

    # -- switches and counters -------------------------------------------

    def clear_faults(self):
        """Back to a transparent proxy (FAULT_DEFAULTS)."""
        for name, value in FAULT_DEFAULTS.items():
            setattr(self, name, value)

    def reset(self):
        """Zero the counters (the fault switches stay as they are)."""
        with self._lock:
            self._requests = []
            self.recent = deque(maxlen=RECENT_REQUESTS)
            self.bytes_received = 0
            self.bytes_sent = 0
            self.largest_response = {}  # the largest body per endpoint, each way
            self.largest_request = {}
            self.in_flight = 0
            self.max_in_flight = 0  # the most requests the client had open at once
            self._in_flight_at = {}
            self.max_in_flight_at = {}  # the same per endpoint (see _endpoint)
            self.drops = 0
            self.stalls = 0
            self.failures = 0  # requests answered with fail_status
            self.replayed_rows = 0
            self.injected_errors = 0
            self.rate_limited = 0
            self.held = 0  # requests that waited for release()
            self.bodies = []  # RecordedRequest, see record_bodies

    def count(self, method=None, path=None):
        """How many requests came in: ``method`` exactly, ``path`` a regex searched
        in the path with its query string."""
        with self._lock:
            seen = list(self._requests)
        return sum(
            1 for m, target in seen
            if (method is None or m == method.upper()) and (path is None or re.search(path, target))
        )

    def in_flight_at(self, endpoint):
        """How many requests to ``endpoint`` (see _endpoint) are open now."""
        with self._lock:
            return self._in_flight_at.get(endpoint, 0)

    def _record(self, request):
        with self._lock:
            self._requests.append((request.method, request.target))
            self.recent.append(request.line)
            self.bytes_received += len(request.body)
            endpoint = _endpoint(request)
            self.largest_request[endpoint] = max(len(request.body), self.largest_request.get(endpoint, 0))
            if self.record_bodies is not None and re.search(self.record_bodies, request.line):
                self.bodies.append(RecordedRequest(
                    request.line, {k.lower(): v for k, v in request.headers}, request.body))

    @contextmanager
    def _open_request(self, request):
        endpoint = _endpoint(request)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._in_flight_at[endpoint] = self._in_flight_at.get(endpoint, 0) + 1
            self.max_in_flight_at[endpoint] = max(self.max_in_flight_at.get(endpoint, 0),
                                                  self._in_flight_at[endpoint])
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
                self._in_flight_at[endpoint] -= 1

    def release(self):
        """Forward the held requests, and hold no more (hold_paths back to None)."""
        with self._lock:
            self.hold_paths = None
            self._hold_ended.notify_all()

    @contextmanager
    def holding(self, paths, until, limit=HOLD_LIMIT_SECONDS):
        """Hold the requests matching ``paths`` (see hold_paths) until one was
        held and ``until()`` holds, then forward them; on leaving, whatever
        happened, they are forwarded and no more are held. Past ``limit``
        seconds they are forwarded too, and the block fails on leaving: a
        test must fail, not hang, when the state it waits for never comes."""
        self.hold_paths = paths
        leaving = threading.Event()
        timed_out = []

        def release_once_true():
            try:
                wait_for(lambda: leaving.is_set() or (self.held and until()), limit=limit)
            except AssertionError:
                timed_out.append(True)
            finally:
                self.release()
        watcher = threading.Thread(target=release_once_true, name='couchproxy-hold', daemon=True)
        watcher.start()
        try:
            yield self
        finally:
            leaving.set()
            watcher.join()
            self.release()
        assert not timed_out, f"{paths!r}: held {self.held} requests for {limit} s, never released"

    def _hold(self, request):
        """False when the proxy was paused or stopped while the request was held."""
        with self._lock:
            if self.hold_paths is None or not re.search(self.hold_paths, request.line):
                return True
            self.held += 1
            # A pause, even one resumed at once, ends the hold: the client saw its request cut off.
            pauses = self._pauses
            self._hold_ended.wait_for(lambda: self.hold_paths is None or self._pauses != pauses)
            return self._pauses == pauses

    def _add(self, counter, amount):
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def _note_response(self, request, size):
        """The largest response body per endpoint (see _endpoint)."""
        endpoint = _endpoint(request)
        with self._lock:
            self.largest_response[endpoint] = max(size, self.largest_response.get(endpoint, 0))

    def _count_sent(self, amount):
        self._add('bytes_sent', amount)

    # -- life cycle -------------------------------------------------------

    def start(self):
        """Listen on a free loopback port; returns the proxy."""
        self._listen(0)
        return self

    def stop(self):
        """Stop listening and cut every open connection."""
        self.pause()

    def pause(self):
        """Make the server go away: the port is closed, so new connections are
        refused (``requests`` raises ConnectionError), and every open connection,
        idle or mid-response, is cut. pouchdb-server itself keeps running."""
        with self._lock:
            server, self._server = self._server, None
            self._pauses += 1
            self._hold_ended.notify_all()  # a held request ends with its connection
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5)
        self._abort_live_sockets()

    def resume(self):
        """Listen again on the same port (so ``url`` stays valid)."""
        if self._server is None:
            self._listen(self.port)

    def _listen(self, port):
        self._server = _Server((self.listen_host, port), self)
        self.port = self._server.server_address[1]
        # A short poll interval: pause() and stop() wait for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={'poll_interval': 0.05},
            name=f"couchproxy-{self.port}", daemon=True)
        self._thread.start()

    def _track(self, sock):
        with self._lock:
            self._live_sockets.add(sock)

    def _untrack(self, sock):
        with self._lock:
            self._live_sockets.discard(sock)

    def _abort_live_sockets(self):
        # shutdown() rather than close(): it wakes threads blocked reading them.
        with self._lock:
            sockets, self._live_sockets = self._live_sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- what happens to one request ----------------------------------------

    def _prepare(self, request):
        """Refuse the request (raises _Answer), or adjust it in place for the
        upstream server and return the rewrites its response needs."""
        self._check_size(request)
        self._check_auth(request)
        self._check_rate(request)
        self._check_fail(request)
        if self.upstream_auth and not request.has_header('Authorization'):
            request.headers.append(('Authorization', self.upstream_auth))
        rewrites = []
        if BULK_DOCS_PATH.match(request.path) and request.method == 'POST':
            rewrites += self._inject_bulk_errors(request)
        if CHANGES_PATH.match(request.path):
            if self.opaque_seqs:
                _decode_request_seqs(request)
            rewrites += self._replay(request)
        if self.opaque_seqs and SEQ_BEARING_PATH.match(request.path):
            rewrites.append(encode_seqs)
        return rewrites

    def _check_size(self, request):
        limit = self.max_request_bytes
        if limit is not None and len(request.body) > limit:
            raise _Answer(413, 'too_large', 'the request entity is too large')

    def _check_auth(self, request):
        if self.require_auth is None:
            return
        given = request.pop_header('Authorization')
        if PUBLIC_PATH.match(request.path):
            return
        if given is None:
            raise _Answer(401, 'unauthorized', 'You are not authorized to access this db.')
        if given != _basic_auth(*self.require_auth):
            raise _Answer(401, 'unauthorized', 'Name or password is incorrect.')

    def _check_rate(self, request):
        # Every matching request draws, so the same seed gives the same choices.
        if not self.rate_limit_probability or not _matches(self.rate_limit_paths, request.line):
            return
        with self._lock:
            if self._rate_rng.random() >= self.rate_limit_probability:
                return
            self.rate_limited += 1
        raise _Answer(429, 'too_many_requests', RATE_LIMIT_REASON)

    def _check_fail(self, request):
        if self.fail_status is None or not _matches(self.fail_paths, request.line):
            return
        with self._lock:
            if self.fail_count is not None and self.fail_count <= 0:
                return
            # Every matching request draws, so the same seed gives the same choices.
            if self._fail_rng.random() >= self.fail_probability:
                return
            if self.fail_count is not None:
                self.fail_count -= 1
            self.failures += 1
        status = HTTPStatus(self.fail_status)
        raise _Answer(status.value, status.phrase.lower().replace(' ', '_'), status.description)

    def _inject_bulk_errors(self, request):
        """Take the docs to reject out of the body; their error rows go into the response."""
        if not self.inject_doc_errors:
            return []
        body = _json_or_none(request.body)
        if not isinstance(body, dict) or not isinstance(body.get('docs'), list):
            return []
        kept, rejected = [], {}
        for index, doc in enumerate(body['docs']):
            error = self._doc_error(doc)
            if error is None:
                kept.append(doc)
            else:
                rejected[index] = _error_row(doc, *error)
        if not rejected:
            return []
        request.body = _json_text({**body, 'docs': kept})

        def merge(rows):
            if not isinstance(rows, list):
                return rows
            self._add('injected_errors', len(rejected))
            return _merge_bulk_rows(body['docs'], rejected, rows)
        return [merge]

    def _doc_error(self, doc):
        rule = self.inject_doc_errors
        if not isinstance(doc, dict):
            return None
        if callable(rule):
            return rule(doc)
        return rule.get(doc.get('_id'))

    def _replay(self, request):
        """At-least-once delivery: a page since S may also repeat rows up to S."""
        if not self.replay_changes:
            return []
        params = dict(_query_pairs(request.query))
        since = params.get('since', '0')
        if not since.isdigit() or int(since) == 0 or params.get('feed') == 'continuous' \
                or params.get('descending') == 'true':
            return []
        with self._lock:
            if self._rng.random() >= self.replay_probability:
                return []
        since, limit = int(since), params.get('limit')

        def add_old_rows(page):
            if not isinstance(page, dict) or not isinstance(page.get('results'), list):
                return page
            old = self._rows_up_to(request, since, _replay_budget(self.replay_rows, limit))
            self._add('replayed_rows', len(old))
            return _with_replayed_rows(page, old, since, limit)
        return [add_old_rows]

    def _rows_up_to(self, request, since, count):
        """The last ``count`` rows at or before ``since``, as the same request would show them."""
        if count <= 0:
            return []
        query = _set_query_params(
            request.query, since=str(max(0, since - count)), limit=str(count),
            feed=None, heartbeat=None, timeout=None)
        page = self._fetch_json(request.method, request.path, query, request.headers, request.body)
        rows = page.get('results', []) if isinstance(page, dict) else []
        return [row for row in rows if _is_int(row.get('seq')) and row['seq'] <= since][-count:]

    def _fetch_json(self, method, path, query, headers, body):
        """One request of the proxy's own, on a connection of its own."""
        conn = self._connect()
        try:
            response = _send(conn, method, self.upstream_prefix + _target(path, query), headers, body)
            return _json_or_none(response.read())
        finally:
            conn.close()

    def _connect(self):
        return http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=UPSTREAM_TIMEOUT)

    def _drop_limit(self, request):
        """(Body bytes this response may send before it is cut off or stalls, or
        None; whether it stalls rather than being cut off)."""
        stall = self.stall_after_bytes is not None
        limit = self.stall_after_bytes if stall else self.drop_after_bytes
        if limit is None or not _matches(self.drop_paths, request.line):
            return None, False
        return limit, stall

    def _take_drop(self):
        """Whether a response that reached its limit is cut now.

        One-shot drops are counted here, at the cut, rather than when the
        response starts: a response that fits under the limit must not use one
        up, and the client must see the count right once its response ends.
        """
        with self._lock:
            if self.drop_count is None:
                return True
            if self.drop_count <= 0:
                return False
            self.drop_count -= 1
            return True


def _basic_auth(user, password):
    return 'Basic ' + base64.b64encode(f"{user}:{password}".encode()).decode()


def _matches(pattern, text):
    return pattern is None or re.search(pattern, text) is not None


def _error_row(doc, error, reason):
    row = {'id': doc.get('_id')}
    if doc.get('_rev'):
        row['rev'] = doc['_rev']
    row.update(error=error, reason=reason)
    return row


def _merge_bulk_rows(docs, rejected, rows):
    """The response as if the server had seen every doc, its rows in body order.

    Rows are matched to docs by id, not position: pouchdb-server has been seen
    to answer out of order, and with new_edits=false only failures have rows.
    Docs without an ``_id`` take the rows of ids the server made up, in order.
    """
    named = {doc.get('_id') for doc in docs if isinstance(doc, dict)}
    by_id, made_up = {}, deque()
    for row in rows:
        if row.get('id') in named:
            by_id.setdefault(row['id'], deque()).append(row)
        else:
            made_up.append(row)
    merged = []
    for index, doc in enumerate(docs):
        doc_id = doc.get('_id') if isinstance(doc, dict) else None
        queue = made_up if doc_id is None else by_id.get(doc_id, deque())
        if index in rejected:
            merged.append(rejected[index])
        elif queue:
            merged.append(queue.popleft())
    return merged + list(made_up)


def _replay_budget(replay_rows, limit):
    # Under a limit at least one new row must fit, or a client paging with
    # that limit would be handed the same page for ever.
    if limit is not None and limit.isdigit():
        return min(replay_rows, int(limit) - 1)
    return replay_rows


def _with_replayed_rows(page, old, since, limit):
    """Old rows first, then as many new ones as the limit leaves room for;
    last_seq stays the seq of the last new row sent."""
    new = page['results']
    if limit is not None and limit.isdigit():
        new = new[:max(0, int(limit) - len(old))]
        if len(new) < len(page['results']):
            page['last_seq'] = new[-1]['seq'] if new else since
    page['results'] = old + new
    return page


def _decode_request_seqs(request):
    """Turn the opaque seqs a client sends back into pouchdb's integers."""
    try:
        request.query = _map_query_params(request.query, ('since', 'last-event-id'), _plain_seq)
        event_id = request.pop_header('Last-Event-ID')
        if event_id is not None:
            request.headers.append(('Last-Event-ID', _plain_seq(event_id)))
        body = _json_or_none(request.body) if request.method == 'POST' else None
        if isinstance(body, dict) and 'since' in body:
            body['since'] = decode_seq(body['since'])
            request.body = json.dumps(body).encode()
    except BadSeq:
        raise _Answer(400, 'bad_request', "Malformed sequence supplied in 'since' parameter.") from None


def _plain_seq(value):
    return str(decode_seq(value))


# -- query strings: edited in place, so every other byte reaches the server as sent --

def _query_pairs(query):
    for part in query.split('&') if query else ():
        name, _, value = part.partition('=')
        yield unquote_plus(name), unquote_plus(value)


def _map_query_params(query, names, function):
    if not query:
        return query
    parts = []
    for part in query.split('&'):
        name, _, value = part.partition('=')
        if unquote_plus(name) in names:
            part = f"{name}={quote(function(unquote_plus(value)), safe='')}"
        parts.append(part)
    return '&'.join(parts)


def _set_query_params(query, **values):
    """Replace or (with None) remove parameters; new ones go at the end."""
    parts = [part for part in (query.split('&') if query else ())
             if unquote_plus(part.partition('=')[0]) not in values]
    parts += [f"{name}={quote(value, safe='')}" for name, value in values.items() if value is not None]
    return '&'.join(parts)


def _target(path, query):
    return f"{path}?{query}" if query else path


def _json_or_none(data):
    try:
        return json.loads(data)
    except RecursionError:  # a doc nested deeper than the stdlib's recursion: CouchDB stores any depth
        return _deep_json_or_none(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _deep_json_or_none(data):
    try:
        return deepjson.loads(data)
    except ValueError:
        return None


def _json_text(payload):
    try:
        return json.dumps(payload, separators=(',', ':')).encode()
    except RecursionError:
        return deepjson.dumps(payload)


# -- HTTP plumbing -------------------------------------------------------------

class _Answer(Exception):
    """A response the proxy gives itself, without asking the server."""

    def __init__(self, status, error, reason):
        super().__init__(reason)
        self.status = status
        self.body = json.dumps({'error': error, 'reason': reason}).encode()


class _Dropped(Exception):
    """The response was cut off on purpose."""


class _Stalled(Exception):
    """The response stopped on purpose, its connection left open."""


@dataclass
class RecordedRequest:
    """A request as the client sent it (see ``record_bodies``)."""
    line: str
    headers: dict  # lower-cased names
    body: bytes


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: list
    body: bytes

    def __post_init__(self):
        self.line = f"{self.method} {self.target}"  # as the client sent it, before any rewrite

    @property
    def target(self):
        return _target(self.path, self.query)

    def has_header(self, name):
        return any(key.lower() == name.lower() for key, _ in self.headers)

    def pop_header(self, name):
        """Remove a header; its (last) value, or None."""
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        self.headers = [(key, value) for key, value in self.headers if key.lower() != name.lower()]
        return found[-1] if found else None


def _send(conn, method, target, headers, body):
    conn.putrequest(method, target, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.putheader('Accept-Encoding', 'identity')
    if body or method in ('POST', 'PUT'):
        conn.putheader('Content-Length', str(len(body)))
    conn.endheaders(body or None)
    return conn.getresponse()


def _peer_closed(sock):
    # An idle keep-alive socket that reads as ready has been closed by the server.
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _body_chunks(response):
    while True:
        data = response.read1(READ_SIZE)
        if not data:
            # read1 never closes a Content-Length response that it read to the
            # end, and http.client refuses the next request until it is closed.
            response.close()
            return
        yield data


STRING_STOP = re.compile(rb'[\\"]')  # inside a JSON string: an escape or its end


class _JsonGaps:
    """Follows a JSON text chunk by chunk, to tell which chunks are only
    whitespace between tokens: pouchdb's heartbeats, safe to send at once."""

    def __init__(self):
        self.in_string = False
        self.escaped = False  # a backslash ended the last chunk

    def is_gap(self, chunk):
        gap = not self.in_string and not chunk.strip(b' \t\r\n')
        self._follow(chunk)
        return gap

    def _follow(self, chunk):
        pos = 0
        if self.escaped:
            pos, self.escaped = 1, False
        while pos < len(chunk):
            if not self.in_string:
                pos = chunk.find(b'"', pos)
                if pos < 0:
                    return
                self.in_string, pos = True, pos + 1
                continue
            match = STRING_STOP.search(chunk, pos)
            if match is None:
                return
            if match[0] == b'"':
                self.in_string, pos = False, match.end()
            elif match.end() == len(chunk):
                self.escaped = True
                return
            else:
                pos = match.end() + 1


class _BodyWriter:
    """Writes a response body to the client, chunked or raw, and cuts the
    connection (or, with ``stall``, stops writing) once ``limit`` body bytes
    are out, when there are more and ``may_cut()`` agrees."""

    def __init__(self, wfile, chunked, limit, may_cut, count_sent, stall=False):
        self.wfile = wfile
        self.chunked = chunked
        self.limit = limit
        self.stall = stall
        self.may_cut = may_cut
        self.count_sent = count_sent
        self.sent = 0

    def write(self, data):
        if not data:
            return
        cut = self.limit is not None and self.sent + len(data) > self.limit
        if cut and not self.may_cut():
            cut, self.limit = False, None
        part = data[:self.limit - self.sent] if cut else data
        # The chunk header announces the whole piece, so a cut lands mid-chunk.
        head = b'%x\r\n' % len(data) if self.chunked else b''
        tail = b'\r\n' if self.chunked and not cut else b''
        self.sent += len(part)
        self.count_sent(len(part))  # before the client can see the bytes, so counts are never late
        self.wfile.write(head + part + tail)
        if cut:
            raise _Stalled() if self.stall else _Dropped()

    def finish(self):
        if self.chunked:
            self.wfile.write(b'0\r\n\r\n')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, proxy):
        self.proxy = proxy
        self.address_family = socket.AF_INET6 if ':' in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        # A client or server that went away is part of the game here; a bug is not.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def setup(self):
        super().setup()
        # Head and body go out in separate writes: without this, Nagle's
        # algorithm meets the peer's delayed ACK and every request waits ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy = self.server.proxy
        self.proxy._track(self.connection)
        self.upstream = None
        self.upstream_sock = None

    def finish(self):
        self._close_upstream()
        self.proxy._untrack(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args):
        pass

    def _serve(self):
        request = self._read_request()
        self.proxy._record(request)
        # Counted open from arrival until the upstream answered, not while the
        # answer goes back: a client sending one request at a time must never
        # be seen with two open because the count lagged behind its reply.
        with self.proxy._open_request(request):
            if self.proxy.latency:
                time.sleep(self.proxy.latency)
            if not self.proxy._hold(request):
                self._cut_connection()
                return
            try:
                rewrites = self.proxy._prepare(request)
            except _Answer as answer:
                own = answer
            else:
                own, response = self._forward_or_own(request)
        if own is not None:
            self._send_own(own.status, own.body)
            return
        try:
            self._relay(request, response, rewrites)
        except _Dropped:
            self.proxy._add('drops', 1)
            self._cut_connection()
        except _Stalled:
            self.proxy._add('stalls', 1)
            self._wait_for_hang_up()
            self._cut_connection()
        except (OSError, http.client.HTTPException):
            self._cut_connection()

    def _forward_or_own(self, request):
        """(None, the upstream response), or (our own 502 answer, None)."""
        try:
            return None, self._forward(request)
        except (OSError, http.client.HTTPException) as e:
            self._close_upstream()
            return _Answer(502, 'bad_gateway', str(e)), None

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_COPY = do_OPTIONS = do_PATCH = _serve

    # -- the request --------------------------------------------------------

    def _read_request(self):
        path, _, query = self.path.partition('?')
        body = self._read_body()
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in NOT_FORWARDED]
        return _Request(self.command, path, query, headers, body)

    def _read_body(self):
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            return self._read_chunked_body()
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def _read_chunked_body(self):
        parts = []
        while True:
            size = int(self.rfile.readline().split(b';')[0].strip(), 16)
            if size == 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():
            pass  # trailers
        return b''.join(parts)

    # -- upstream -------------------------------------------------------------

    def _forward(self, request):
        target = self.proxy.upstream_prefix + request.target
        reused = self._upstream_connection()
        try:
            return _send(self.upstream, request.method, target, request.headers, request.body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
        # The server closed the idle connection just as it was reused: one fresh try.
        self._close_upstream()
        self._upstream_connection()
        return _send(self.upstream, request.method, target, request.headers, request.body)

    def _upstream_connection(self):
        """Make sure there is a connected upstream; True when it is a reused one."""
        if self.upstream is not None and self.upstream.sock is not None \
                and not _peer_closed(self.upstream.sock):
            return True
        self._close_upstream()
        self.upstream = self.proxy._connect()
        self.upstream.connect()
        self.upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream_sock = self.upstream.sock
        self.proxy._track(self.upstream_sock)
        return False

    def _close_upstream(self):
        if self.upstream is not None:
            self.upstream.close()
            self.proxy._untrack(self.upstream_sock)
        self.upstream = self.upstream_sock = None

    # -- the response ---------------------------------------------------------

    def _relay(self, request, response, rewrites):
        feed = dict(_query_pairs(request.query)).get('feed')
        rewrite = bool(rewrites) and 200 <= response.status < 300
        has_body = request.method != 'HEAD' and response.status not in (204, 304)
        reframe = has_body and (rewrite or response.getheader('Content-Length') is None)
        self._send_head(response, reframe, drop_etag=rewrite)
        if not has_body:
            response.read()  # marks the upstream connection free for the next request
            return
        limit, stall = self.proxy._drop_limit(request)
        writer = _BodyWriter(self.wfile, chunked=reframe and self._can_chunk(), limit=limit,
                             may_cut=self.proxy._take_drop, count_sent=self.proxy._count_sent, stall=stall)
        if not rewrite:
            self._copy(response, writer)
        elif feed == 'continuous':
            self._rewrite_lines(response, writer, rewrites)
        else:
            self._rewrite_document(response, writer, rewrites)
        writer.finish()
        self.proxy._note_response(request, writer.sent)
        if response.will_close:
            self._close_upstream()

    def _send_head(self, response, reframe, drop_etag):
        self.send_response_only(response.status, response.reason)
        skip = HOP_BY_HOP | ({'etag'} if drop_etag else set())
        for name, value in response.getheaders():
            if name.lower() not in skip:
                self.send_header(name, value)
        if reframe and self._can_chunk():
            self.send_header('Transfer-Encoding', 'chunked')
        elif not reframe and response.getheader('Content-Length') is not None:
            self.send_header('Content-Length', response.getheader('Content-Length'))
        if reframe and not self._can_chunk():
            self.close_connection = True  # an HTTP/1.0 client reads to the end of the connection
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()

    def _can_chunk(self):
        return self.request_version >= 'HTTP/1.1'

    def _copy(self, response, writer):
        for chunk in _body_chunks(response):
            writer.write(chunk)

    def _rewrite_document(self, response, writer, rewrites):
        """Hold the JSON until it is complete, but let heartbeat newlines through
        as they come: a longpoll client's read timeout depends on them."""
        gaps, held = _JsonGaps(), []
        for chunk in _body_chunks(response):
            if gaps.is_gap(chunk):
                writer.write(chunk)
            else:
                held.append(chunk)
        writer.write(_apply(rewrites, b''.join(held)))

    def _rewrite_lines(self, response, writer, rewrites):
        """A continuous feed is a row a line: rewrite each as it comes."""
        pending = b''
        for chunk in _body_chunks(response):
            *lines, pending = (pending + chunk).split(b'\n')
            for line in lines:
                writer.write(_apply(rewrites, line) + b'\n')
        writer.write(_apply(rewrites, pending))

    def _send_own(self, status, body):
        self.send_response_only(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.proxy._count_sent(len(body))
            self.wfile.write(body)

    def _wait_for_hang_up(self):
        """Send nothing more until the client closes the connection (its read
        timed out) or the proxy stops, which makes the socket readable."""
        deadline = time.monotonic() + UPSTREAM_TIMEOUT
        while not _peer_closed(self.connection) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _cut_connection(self):
        """Hang up as a crashed server would: no more bytes, just the end of the stream."""
        self.close_connection = True
        self._close_upstream()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _apply(rewrites, data):
    """``data`` with each rewrite applied to its JSON; anything else unchanged."""
    if not data.strip():
        return data
    payload = _json_or_none(data)
    if payload is None:
        return data
    for rewrite in rewrites:
        payload = rewrite(payload)
    return _json_text(payload)
