"""A CouchDB HTTP client: one database, one pooled session, one retry policy, clear errors.

Works against CouchDB 3, Cloudant and pouchdb-server. Seqs are passed through
untouched: on clusters they are opaque strings.
"""
import logging
import random
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from urllib.parse import quote, unquote, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from corehq.couch import deepjson
from corehq.couch.credentials import mask_password, split_credentials

DEFAULT_TIMEOUT = (10, 300)

log = logging.getLogger('corehq.couch')

# Answers that say "not now" rather than "no": a busy or restarting cluster.
# 501 (Not Implemented) and 505 (HTTP Version Not Supported) are excluded:
# they are about the request itself (a method or protocol this server does
# not speak), not the server's state, so asking again gets the same answer.
TRANSIENT_STATUSES = frozenset({429} | set(range(500, 600)) - {501, 505})
# The issue's own words, so that an operator can search the log for them.
RATE_LIMITED = 'rate limited by the server, slowing down (429)'
DEFAULT_PORTS = {'http': 80, 'https': 443}


class CouchError(Exception):
    """Any failure talking to CouchDB; the message never holds a password."""


class CouchUnreachable(CouchError):
    pass


class CouchUnauthorized(CouchError):
    pass


class CouchNotFound(CouchError):
    pass


class DatabaseMissing(CouchNotFound):
    pass


class RequestTooLarge(CouchError):
    pass


class CouchHTTPError(CouchError):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class PhaseBudget:
    """How long one phase keeps trying, shared by every request it makes.

    A phase gives up after ``give_up_after`` seconds of failing without one
    success in between (None: never, for --continuous through a night-long
    outage). Before a server's first answer in the phase, a failed
    connection to it gives up after ``first_contact_retries``: a wrong url or
    a server that is down should be said at once, not after minutes. That is
    counted per server (see server_of): the source answering says nothing
    about a mistyped target.

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

    def __init__(self, give_up_after=300, first_contact_retries=2):
        self.give_up_after = give_up_after
        self.first_contact_retries = first_contact_retries
        self._answered_by = set()  # servers (see server_of) that answered this phase
        self.failing_since = None
        self.interval = 0.0
        self.factor = 1.0
        self._next_at = 0.0
        self._halved_at = None
        self._lock = threading.Lock()

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
    Retry-After handling are urllib3's own.

    Transient: failed connections, responses cut off, 5xx and 429 (Cloudant
    sends no Retry-After). Everything else (400, 401, 403, 404, 409, 412,
    413...) is an answer and is never retried.

    The defaults keep trying for about 3 minutes (12 retries, waiting
    0.25 s as CouchDB's replicator does, doubling up to 30 s, plus jitter)
    before giving up: long enough for
    a remote cluster to shed load or finish a restart. Of those, failing to
    connect at all gets 2, as that is more often a wrong url or a server that
    is down than a busy one (--continuous waits out outages in its own loop),
    and a connection lost after the request went out, a read timeout included,
    gets 5. A Retry-After is honoured up to 5 minutes.
    Every request this client makes is safe to repeat: reads, and writes with
    new_edits=false or explicit revs, which CouchDB answers idempotently.

    ``label`` (a url without password) starts the line logged to
    ``corehq.couch`` before each wait; ``server`` (see server_of) is the one
    whose first contact the budget's ``first_contact_retries`` applies to.
    """

    def __init__(self, total=12, connect=2, read=5, *, backoff_factor=0.25, backoff_max=30,
                 backoff_jitter=0.25, retry_after_max=300, status_forcelist=TRANSIENT_STATUSES,
                 allowed_methods=None, raise_on_status=False, label=None, budget=None, server=None,
                 **kwargs):
        super().__init__(
            total=total, connect=connect, read=read, backoff_factor=backoff_factor,
            backoff_max=backoff_max, backoff_jitter=backoff_jitter, retry_after_max=retry_after_max,
            status_forcelist=status_forcelist, allowed_methods=allowed_methods,
            raise_on_status=raise_on_status, **kwargs)
        self.label = label
        self.budget = budget
        self.server = server

    def new(self, **kw):
        kw.setdefault('label', self.label)
        kw.setdefault('budget', self.budget)
        kw.setdefault('server', self.server)
        return super().new(**kw)

    @classmethod
    def for_phase(cls, budget, **kwargs):
        """Retries bounded by the phase's time budget instead of a count."""
        return cls(total=None, connect=budget.first_contact_retries, read=None, budget=budget, **kwargs)

    def increment(self, *args, **kwargs):
        if self.budget is not None:
            self.budget.failed()
        return super().increment(*args, **kwargs)

    def is_exhausted(self):
        if self.budget is None:
            return super().is_exhausted()
        if not self.budget.has_answered(self.server) and self.connect is not None and self.connect < 0:
            return True
        return self.budget.exhausted()

    def is_retry(self, method, status_code, has_retry_after=False):
        # urllib3 would also retry a 413 that carries Retry-After: a request too
        # large stays too large.
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
        delay = self.get_retry_after(response) if response is not None and self.respect_retry_after_header \
            else None
        if not delay:
            delay = self.get_backoff_time()
        if response is not None:
            cause = RATE_LIMITED if response.status == 429 else f"the server answered {response.status}"
            if response.status == 429 and self.budget is not None:
                self.budget.rate_limited()
        if cause:
            log.warning("%s: %s: retrying in %.1fs", self.label or 'CouchDB', cause, delay)
        time.sleep(delay)


class _Adapter(HTTPAdapter):
    """Lets a call start urllib3's retries from a state of its own (see
    CouchDB._send): requests hands urllib3 ``max_retries`` as the start state."""

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


def make_session(retries=None, pool_size=16):  # room for every request a phase keeps in flight
    """A session that reuses connections and retries under ``retries`` (a
    Retry, a number of retries, or None for the default RetryPolicy); a
    CouchDB using it puts its own ``retry`` in their place."""
    if not isinstance(retries, Retry):
        retries = RetryPolicy() if retries is None else RetryPolicy(total=retries)
    session = requests.Session()
    adapter = _Adapter(max_retries=retries, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    return session


def doc_path(doc_id):
    if doc_id.startswith('_design/'):
        return '_design/' + quote(doc_id[len('_design/'):], safe='')
    return quote(doc_id, safe='')


def dumps(obj):
    """JSON bytes of any depth (see deepjson): a doc is never too deep to send."""
    return deepjson.dumps(obj)


# Failures of the connection itself, as opposed to answers from CouchDB.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


BAD_URL_ERRORS = (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                  requests.exceptions.InvalidURL)

MID_BODY_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
STALLED = 'the response stalled past the read timeout'


class CouchDB:
    """One database. ``url`` may carry credentials; they go to the session's auth,
    never into messages."""

    def __init__(self, url, session=None, timeout=DEFAULT_TIMEOUT, retry=None):
        """``retry``: how long to keep trying, a PhaseBudget (shared by the
        phase's databases), a RetryPolicy or a number of retries (default:
        RetryPolicy(), about 3 minutes). It governs every
        call, unless ``session`` is not one of make_session()'s: such a session
        keeps its own retries for what fails before a response arrives."""
        self.display_url = mask_password(url.rstrip('/'))
        bare_url, auth = split_credentials(url.rstrip('/'))
        self.url = bare_url
        self.server_url, name = bare_url.rsplit('/', 1)
        self.name = unquote(name)
        if isinstance(retry, PhaseBudget):
            retry = RetryPolicy.for_phase(retry)
        elif not isinstance(retry, RetryPolicy):
            retry = RetryPolicy() if retry is None else RetryPolicy(total=retry)
        self.retry = retry.new(label=self.display_url, server=server_of(bare_url))
        self.budget = self.retry.budget
        self.session = session or make_session(self.retry)
        if auth:
            self.session.auth = auth
        self.timeout = timeout

    def __repr__(self):
        return f"CouchDB({self.display_url!r})"

    # -- transport -------------------------------------------------------

    def request(self, method, path='', *, params=None, body=None, timeout=None,
                stream=False, server_level=False, headers=None):
        """The response, its body read unless ``stream``; an error status raises."""
        return self._call(method, path, params, body, timeout, stream, server_level, headers)[0]

    def json(self, method, path='', *, params=None, body=None, timeout=None, server_level=False):
        return self._call(method, path, params, body, timeout, False, server_level, None, decode=True)[1]

    def _call(self, method, path, params, body, timeout, stream, server_level, extra_headers,
              decode=False):
        url = self.server_url if server_level else self.url
        if path:
            url = f"{url}/{path}"
        headers = {'Accept': 'application/json', **(extra_headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else dumps(body)
            headers.setdefault('Content-Type', 'application/json')
        request = dict(method=method, url=url, params=_encode_params(params), data=data,
                       headers=headers, timeout=timeout or self.timeout)
        if self.budget is not None:
            self.budget.pace()
        try:
            response, payload, spent = self._send(request, stream, decode, f"{method} {path}".rstrip())
        except requests.exceptions.RetryError as e:
            raise CouchUnreachable(f"{self.display_url}: the server kept failing ({_reason(e)})") from None
        except TRANSPORT_ERRORS as e:
            raise CouchUnreachable(f"Cannot reach {self.display_url}: {_reason(e)}") from None
        except BAD_URL_ERRORS:
            raise CouchError(f"{self.display_url} is not a CouchDB url: it needs to be "
                             f"http(s)://[user:password@]host[:port]/database") from None
        if self.budget is not None and response.status_code not in TRANSIENT_STATUSES:
            self.budget.answered(self.retry.server)
        if response.status_code >= 400:
            self._raise_for(response, method, path, spent)
        return response, payload

    def _send(self, request, stream, decode, what):
        """Send until there is a whole response, under one retry budget.

        urllib3 retries what fails before a response arrives (connections,
        5xx, 429). A body cut off or stalled after that is retried here, and urllib3's
        next try goes on from the state it left: one Retry is carried through
        the whole call, so the backoff goes on growing and the call gives up
        once the budget is spent, whichever layer spent it.
        Returns (response, decoded body, the Retry state at the end).
        """
        retry = self.retry
        while True:
            adapter = self.session.get_adapter(request['url'])
            ours = isinstance(adapter, _Adapter)
            with adapter.retrying_from(retry) if ours else nullcontext():
                response = self.session.request(**request, stream=True)
            if ours:
                retry = response.raw.retries
            if stream:
                return response, None, retry
            try:
                content = response.content
                if decode and response.status_code < 400:
                    return response, deepjson.loads(content), retry
                return response, None, retry
            except MID_BODY_ERRORS:
                cause = 'the response was cut off'
            except requests.ConnectionError as e:
                if not stalled_midway(e):
                    raise
                cause = STALLED
            except deepjson.JSONDecodeError:
                cause = 'the response was incomplete or invalid'
            response.close()
            try:
                retry = retry.increment(request['method'], request['url'], error=ProtocolError(cause))
            except MaxRetryError:
                raise CouchUnreachable(
                    f"{self.display_url}: {cause} ({what}): gave up after {len(retry.history)} retries"
                ) from None
            retry.sleep(cause=cause)

    def _raise_for(self, response, method, path, spent):
        try:
            payload = response.json()
            error, reason = payload.get('error', ''), payload.get('reason', '')
        except ValueError:
            error, reason = '', response.text[:200]
        where = f"{method} {self.display_url}/{path}".rstrip('/')
        status = response.status_code
        # A transient status still here is one the retries could not get past.
        if status == 429:
            raise CouchUnreachable(
                f"{where}: rate limited by the server: gave up after {len(spent.history)} retries")
        if status in TRANSIENT_STATUSES:
            raise CouchUnreachable(f"{where}: the server kept failing ({status} {error} {reason}".rstrip()
                                   + f"): gave up after {len(spent.history)} retries")
        if status in (401, 403) and error != 'forbidden':
            raise CouchUnauthorized(
                f"{self.display_url}: the server refused the credentials ({status} {error}: {reason})")
        if status == 404:
            if not path or 'database' in str(reason).lower() or reason == 'no_db_file':
                raise DatabaseMissing(f"The database {self.display_url} does not exist")
            raise CouchNotFound(f"{where}: not found ({reason})")
        if status == 413:
            raise RequestTooLarge(f"{where}: request too large")
        raise CouchHTTPError(f"{where}: {status} {error} {reason}".rstrip(), status)

    # -- database --------------------------------------------------------

    def info(self):
        return self.json('GET')

    def exists(self):
        try:
            self.info()
        except DatabaseMissing:
            return False
        return True

    def create(self):
        """Create the database; harmless when it exists."""
        try:
            self.request('PUT')
        except CouchHTTPError as e:
            if e.status != 412:
                raise

    def delete_database(self):
        try:
            self.request('DELETE')
        except DatabaseMissing:
            pass

    def update_seq(self):
        return self.info()['update_seq']

    # -- documents -------------------------------------------------------

    def get(self, doc_id, **params):
        """The document, or None when it does not exist (or is deleted)."""
        try:
            return self.json('GET', doc_path(doc_id), params=params)
        except DatabaseMissing:
            raise
        except CouchNotFound:
            return None

    def put(self, doc):
        return self.json('PUT', doc_path(doc['_id']), body=doc)

    def put_replicated(self, doc, attachments):
        """Write one revision with its history as CouchDB's replicator does for
        docs too large for a JSON request: ``PUT ?new_edits=false`` as
        ``multipart/related``, the attachments as binary parts instead of
        base64 inside the JSON (a third smaller, and no JSON size limit on them).

        ``doc['_attachments']`` names each attachment with ``follows``;
        ``attachments`` is [(name, content_type, bytes)] in that order.
        CouchDB, Cloudant and pouchdb-server (which needs each part's
        Content-Disposition) all take this form.
        """
        boundary = uuid.uuid4().hex
        parts = [_part(boundary, {'Content-Type': 'application/json'}, dumps(doc))]
        for name, content_type, data in attachments:
            parts.append(_part(boundary, {
                'Content-Disposition': f'attachment; filename="{_quoted_filename(name)}"',
                'Content-Type': content_type or 'application/octet-stream',
                'Content-Length': str(len(data))}, data))
        body = b''.join(parts) + f'--{boundary}--'.encode()
        return self.request('PUT', doc_path(doc['_id']), params={'new_edits': 'false'}, body=body,
                            headers={'Content-Type': f'multipart/related; boundary="{boundary}"'})

    def open_revs(self, doc_id, revs='all'):
        """Every requested leaf of a doc with its history, as ``[{'ok': doc} | {'missing': rev}]``."""
        value = revs if revs == 'all' else dumps(list(revs)).decode()
        return self.json('GET', doc_path(doc_id), params={'open_revs': value, 'revs': 'true'})

    def bulk_get(self, id_revs, attachments=True):
        """Fetch exact revisions with their ``_revisions`` history.

        ``id_revs`` is an iterable of (doc_id, rev). Returns (docs, missing),
        missing being the (doc_id, rev) pairs the server no longer has
        (compacted away since they were listed).
        """
        body = {'docs': [{'id': doc_id, 'rev': rev} for doc_id, rev in id_revs]}
        if not body['docs']:
            return [], []
        params = {'revs': 'true', 'attachments': 'true' if attachments else 'false'}
        result = self.json('POST', '_bulk_get', params=params, body=body)
        docs, missing = [], []
        for entry in result['results']:
            for item in entry['docs']:
                if 'ok' in item:
                    docs.append(item['ok'])
                else:
                    error = item.get('error', {})
                    missing.append((entry['id'], error.get('rev')))
        return docs, missing

    def bulk_docs(self, docs, new_edits=True):
        """Write docs; returns the per-doc error rows (empty when all went in)."""
        body = docs if isinstance(docs, (bytes, str)) else {'docs': docs, 'new_edits': new_edits}
        rows = self.json('POST', '_bulk_docs', body=body)
        return [row for row in rows if 'error' in row]

    def all_docs(self, keys=None, **params):
        params = {k: _bool(v) for k, v in params.items()}
        if keys is None:
            return self.json('GET', '_all_docs', params=params)['rows']
        if not keys:
            return []
        return self.json('POST', '_all_docs', params=params, body={'keys': list(keys)})['rows']

    def live_ids(self, doc_ids):
        """The ids among ``doc_ids`` whose winning revision is live: the doc has
        at least one live leaf (CouchDB picks a live leaf over any deleted one).

        Asked with ``_bulk_get`` by id, which answers a deleted or missing doc
        without a body (CouchDB: an error, pouchdb-server: an empty entry) and
        reads less than ``_all_docs`` with keys on pouchdb-server.
        """
        if not doc_ids:
            return set()
        body = {'docs': [{'id': doc_id} for doc_id in doc_ids]}
        result = self.json('POST', '_bulk_get', params={'revs': 'false', 'attachments': 'false'}, body=body)
        return {entry['id'] for entry in result['results'] for item in entry['docs']
                if 'ok' in item and not item['ok'].get('_deleted')}

    def winning_revs(self, doc_ids):
        """{doc_id: (winning rev, deleted)} for the ids that exist, deleted or not."""
        return {
            row['id']: (row['value']['rev'], bool(row['value'].get('deleted')))
            for row in self.all_docs(keys=doc_ids)
            if 'value' in row
        }

    def revs_diff(self, revs_by_id):
        if not revs_by_id:
            return {}
        return self.json('POST', '_revs_diff', body=revs_by_id)

    # -- feeds and views -------------------------------------------------

    def changes(self, since=None, limit=None, include_docs=False, timeout=None, **params):
        """One page of ``_changes`` with every leaf rev of each doc (style=all_docs)."""
        query = {'style': 'all_docs', **params}
        if since is not None:
            query['since'] = since
        if limit is not None:
            query['limit'] = limit
        if include_docs:
            query['include_docs'] = 'true'
        return self.json('GET', '_changes', params=query, timeout=timeout)

    def wait_for_change(self, since, max_wait, heartbeat_ms=5000):
        """Block until the feed has a change after ``since`` (True) or ``max_wait``
        seconds pass (False: a quiet feed is not a failure).

        A longpoll with heartbeats: pouchdb-server ignores longpoll's ``timeout``,
        so the wait is bounded here, and the heartbeat newlines let the read
        timeout tell a dead connection from a quiet feed. They are asked for
        uncompressed: a gzipped feed holds them back until the response ends.
        """
        params = {'feed': 'longpoll', 'since': since, 'limit': 1, 'heartbeat': heartbeat_ms,
                  'timeout': int(max_wait * 1000)}
        read_timeout = heartbeat_ms / 1000 * 3 + 5
        deadline = time.monotonic() + max_wait
        response = self.request('GET', '_changes', params=params, stream=True,
                                timeout=(self.timeout[0], read_timeout),
                                headers={'Accept-Encoding': 'identity'})
        body = b''
        try:
            for chunk in response.iter_content(chunk_size=None):
                body += chunk
                if time.monotonic() > deadline:
                    return False
        except TRANSPORT_ERRORS as e:
            return self._feed_cut_off(_reason(e), deadline)
        finally:
            response.close()
        try:
            return bool(orjson.loads(body)['results'])
        except (orjson.JSONDecodeError, KeyError):
            return self._feed_cut_off('incomplete response', deadline)

    def _feed_cut_off(self, reason, deadline):
        """A longpoll cut off is not a failure of the phase: the next read of
        the feed goes through the retry policy, which waits for a server that
        is really gone. A short pause keeps a feed that keeps breaking from
        turning the wait into a busy loop."""
        log.info("%s: the changes feed was cut off while waiting (%s)", self.display_url, reason)
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
        return False

    def changes_for_ids(self, doc_ids):
        """Every leaf rev of the given docs, via the ``_doc_ids`` filter."""
        if not doc_ids:
            return []
        result = self.json('POST', '_changes', params={'filter': '_doc_ids', 'style': 'all_docs'},
                           body={'doc_ids': list(doc_ids)})
        return result['results']

    def view(self, ddoc, view, keys=None, **params):
        params = {k: _bool(v) for k, v in params.items()}
        path = f"_design/{quote(ddoc, safe='')}/_view/{quote(view, safe='')}"
        if keys is not None:
            return self.json('POST', path, params=params, body={'keys': list(keys)})
        return self.json('GET', path, params=params)


def server_of(url):
    """(scheme, host, port) of a url, the server a PhaseBudget counts first contact per."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a malformed url: requests says so when it is used
        port = None
    return scheme, parts.hostname, port or DEFAULT_PORTS.get(scheme)


def stalled_midway(exc):
    """Whether a ConnectionError raised while reading a body is the read
    timeout: requests wraps urllib3's ReadTimeoutError in a ConnectionError
    there, unlike before the response, where it is a Timeout."""
    return bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)


def _part(boundary, headers, data):
    head = ''.join(f"{key}: {value}\r\n" for key, value in headers.items())
    return f"--{boundary}\r\n{head}\r\n".encode() + data + b'\r\n'


def _quoted_filename(name):
    return name.replace('\\', '\\\\').replace('"', '\\"')


def _bool(value):
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
            value = dumps(value).decode()
        elif isinstance(value, bool):
            value = _bool(value)
        elif isinstance(value, (list, dict)):
            value = dumps(value).decode()
        encoded[key] = value
    return encoded


def _reason(exc):
    """A short reason without the url (which could carry credentials)."""
    text = str(exc.args[0]) if exc.args else exc.__class__.__name__
    inner = getattr(exc.args[0], 'reason', None) if exc.args else None
    if inner is not None:
        text = str(inner)
    if 'Name or service not known' in text or 'nodename nor servname' in text \
            or 'Temporary failure in name resolution' in text:
        return 'host name could not be resolved'
    if 'Connection refused' in text:
        return 'connection refused'
    if 'timed out' in text.lower():
        return 'timed out'
    if isinstance(exc, MID_BODY_ERRORS):
        return 'the response was cut off'
    return exc.__class__.__name__
