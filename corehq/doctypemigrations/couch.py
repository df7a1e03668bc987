"""A small CouchDB HTTP client: one database, one pooled session, clear errors.

Works against CouchDB 3, Cloudant and pouchdb-server. Seqs are passed through
untouched: on clusters they are opaque strings.
"""
import time
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from corehq.couchsettings import mask_password

DEFAULT_TIMEOUT = (10, 300)


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


def make_session(retries=3, pool_size=4):
    """A session that reuses connections and retries transient failures.

    Every request this client makes is safe to repeat: reads, and writes with
    new_edits=false or explicit revs, which CouchDB answers idempotently.
    """
    retry = Retry(
        total=retries, connect=retries, read=retries, status=retries,
        backoff_factor=0.2, status_forcelist=(500, 502, 503, 504),
        allowed_methods=None, raise_on_status=False, respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    return session


def split_credentials(url):
    """(url without user:password, (user, password) or None)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else '')
    auth = (unquote(parts.username), unquote(parts.password or ''))
    return urlunsplit(parts._replace(netloc=netloc)), auth


def doc_path(doc_id):
    if doc_id.startswith('_design/'):
        return '_design/' + quote(doc_id[len('_design/'):], safe='')
    return quote(doc_id, safe='')


def dumps(obj):
    return orjson.dumps(obj)


# Failures of the connection itself, as opposed to answers from CouchDB.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


MID_BODY_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


class CouchDB:
    """One database. ``url`` may carry credentials; they go to the session's auth,
    never into messages."""

    def __init__(self, url, session=None, timeout=DEFAULT_TIMEOUT):
        self.display_url = mask_password(url.rstrip('/'))
        bare_url, auth = split_credentials(url.rstrip('/'))
        self.url = bare_url
        self.server_url, name = bare_url.rsplit('/', 1)
        self.name = unquote(name)
        self.session = session or make_session()
        if auth:
            self.session.auth = auth
        self.timeout = timeout

    def __repr__(self):
        return f"CouchDB({self.display_url!r})"

    # -- transport -------------------------------------------------------

    def request(self, method, path='', *, params=None, body=None, timeout=None,
                stream=False, server_level=False):
        url = self.server_url if server_level else self.url
        if path:
            url = f"{url}/{path}"
        headers = {'Accept': 'application/json'}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else dumps(body)
            headers['Content-Type'] = 'application/json'
        try:
            response = self._send(method, url, params, data, headers, timeout, stream)
        except requests.exceptions.RetryError as e:
            raise CouchUnreachable(f"{self.display_url}: the server kept failing ({_reason(e)})") from None
        except TRANSPORT_ERRORS as e:
            raise CouchUnreachable(f"Cannot reach {self.display_url}: {_reason(e)}") from None
        if response.status_code >= 400:
            self._raise_for(response, method, path)
        return response

    def _send(self, method, url, params, data, headers, timeout, stream, attempts=5):
        """The session retries failed connections and 5xx; this retries a
        response cut off mid-body, which happens after the session's retries."""
        for attempt in range(attempts):
            try:
                return self.session.request(
                    method, url, params=_encode_params(params), data=data, headers=headers,
                    timeout=timeout or self.timeout, stream=stream)
            except MID_BODY_ERRORS:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * 2 ** attempt)

    def _raise_for(self, response, method, path):
        try:
            payload = response.json()
            error, reason = payload.get('error', ''), payload.get('reason', '')
        except ValueError:
            error, reason = '', response.text[:200]
        where = f"{method} {self.display_url}/{path}".rstrip('/')
        status = response.status_code
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

    def json(self, method, path='', **kwargs):
        response = self.request(method, path, **kwargs)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise CouchUnreachable(
                f"{self.display_url}: incomplete or invalid response to {method} {path}") from None

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
        """Block until the feed has a change after ``since`` or ``max_wait`` seconds pass.

        A longpoll with heartbeats: pouchdb-server ignores longpoll's ``timeout``,
        so the wait is bounded here, and the heartbeat newlines let the read
        timeout tell a dead connection from a quiet feed.
        """
        params = {'feed': 'longpoll', 'since': since, 'limit': 1, 'heartbeat': heartbeat_ms,
                  'timeout': int(max_wait * 1000)}
        read_timeout = heartbeat_ms / 1000 * 3 + 5
        deadline = time.monotonic() + max_wait
        response = self.request('GET', '_changes', params=params, stream=True,
                                timeout=(self.timeout[0], read_timeout))
        body = b''
        try:
            for chunk in response.iter_content(chunk_size=None):
                body += chunk
                if time.monotonic() > deadline:
                    return False
        except TRANSPORT_ERRORS as e:
            raise CouchUnreachable(f"Lost {self.display_url} while waiting for changes: {_reason(e)}") from None
        finally:
            response.close()
        try:
            return bool(orjson.loads(body)['results'])
        except (orjson.JSONDecodeError, KeyError):
            raise CouchUnreachable(f"{self.display_url}: incomplete _changes response") from None

    def changes_for_ids(self, doc_ids):
        """Every leaf rev of the given docs, via the ``_doc_ids`` filter."""
        if not doc_ids:
            return []
        result = self.json('POST', '_changes', params={'filter': '_doc_ids', 'style': 'all_docs'},
                           body={'doc_ids': list(doc_ids)})
        return result['results']

    def update_view_index(self, ddoc, view):
        """Bring a view's index up to date now: any query indexes what changed,
        and one without rows or a reduce costs nothing else (pouchdb-server
        computes a reduce by reading every row, even for ``limit=0``)."""
        self.view(ddoc, view, reduce=False, limit=0)

    def view(self, ddoc, view, keys=None, **params):
        params = {k: _bool(v) for k, v in params.items()}
        path = f"_design/{quote(ddoc, safe='')}/_view/{quote(view, safe='')}"
        if keys is not None:
            return self.json('POST', path, params=params, body={'keys': list(keys)})
        return self.json('GET', path, params=params)


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
