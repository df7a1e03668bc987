"""The CouchDB database API: one database's documents, feeds and views.

Works against CouchDB 3, Cloudant and pouchdb-server. Seqs are passed through
untouched: on clusters they are opaque strings. How a request is sent, and
retried, is transport.py's and retry.py's.
"""
import logging
import time
import uuid
from urllib.parse import quote

import orjson
import requests

from corehq.couch import deepjson
from corehq.couch.errors import CouchHTTPError, CouchNotFound, CouchUnreachable, DatabaseMissing
from corehq.couch.retry import classify
from corehq.couch.transport import Connection, bool_param as _bool

log = logging.getLogger('corehq.couch')
LEAF_READ_TRIES = 10


def doc_path(doc_id):
    if doc_id.startswith('_design/'):
        return '_design/' + quote(doc_id[len('_design/'):], safe='')
    return quote(doc_id, safe='')


def dumps(obj):
    """JSON bytes of any depth (see deepjson): a doc is never too deep to send."""
    return deepjson.dumps(obj)


class CouchDB(Connection):
    """One database (see transport.Connection for ``url``, ``timeout`` and ``budget``)."""

    def __repr__(self):
        return f"CouchDB({self.display_url!r})"

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

    # -- reads every copy answers -----------------------------------------

    def copies(self):
        """How many copies of each document the server keeps: a CouchDB
        cluster's ``n`` (its db info says), 1 for a single server."""
        if getattr(self, '_copies', None) is None:
            self._copies = int(self.info().get('cluster', {}).get('n', 1))
        return self._copies

    def leaves(self, doc_ids):
        """{doc id: every leaf of the doc, deleted ones too, each with its body
        (attachment stubs) and ``_revisions``}, for the ids the db has.

        On a cluster a doc is read from every copy that answers, their
        revision trees merged (``_bulk_get`` by id with ``r`` = the number of
        copies: CouchDB waits for each live copy, and a down one does not hold
        it up): a copy that has not caught up (a node just back) can neither
        hide a leaf another copy holds nor show a leaf live that another copy
        has deleted. Every acknowledged write is on a majority of copies, so
        at least one answering copy has it while no more than one is down.
        pouchdb-server's ``_bulk_get`` by id answers the winner alone; it is
        one server, asked doc by doc.
        """
        doc_ids = list(dict.fromkeys(doc_ids))
        if not doc_ids:
            return {}
        if self.copies() == 1 and self.is_pouchdb():
            return {doc_id: found for doc_id in doc_ids if (found := self._open_all(doc_id))}
        found, unanswered = {}, doc_ids
        for attempt in range(LEAF_READ_TRIES):
            if attempt:
                time.sleep(0.5 * attempt)
            unanswered, error = self._read_leaves(unanswered, found)
            if not unanswered:
                return found
            # said, so that a phase waiting on a copy that does not answer is not silent
            log.warning("%s: %d docs not read from every copy (%s); asking again", self.display_url,
                        len(unanswered), error)
        raise CouchUnreachable(f"{self.display_url}: {len(unanswered)} docs could not be read from their "
                               f"copies ({error}), {LEAF_READ_TRIES} times")

    def _read_leaves(self, doc_ids, found):
        """One ``_bulk_get`` of ``leaves``, into ``found``; returns the ids
        answered with an error other than not found (a copy that died while
        it answered: ``nodedown``, ``timeout``), to ask again, and an error."""
        body = {'docs': [{'id': doc_id} for doc_id in doc_ids]}
        params = {'revs': 'true', 'attachments': 'false', 'r': self.copies()}
        result = self.json('POST', '_bulk_get', params=params, body=body)
        unanswered, error = [], None
        for entry in result['results']:
            failed = [item['error'] for item in entry['docs']
                      if 'error' in item and item['error'].get('error') != 'not_found']
            if failed:
                unanswered.append(entry['id'])
                error = f"{failed[0].get('error')} {failed[0].get('reason', '')}".strip()
                continue
            docs = [item['ok'] for item in entry['docs'] if 'ok' in item]
            if docs:
                found[entry['id']] = docs
        return unanswered, error

    def _open_all(self, doc_id):
        try:
            return [leaf['ok'] for leaf in self.open_revs(doc_id) if 'ok' in leaf]
        except CouchNotFound:
            return []

    def is_pouchdb(self):
        """Whether the server is pouchdb-server (express-pouchdb), from its welcome."""
        if getattr(self, '_pouchdb', None) is None:
            self._pouchdb = 'express-pouchdb' in self.json('GET', server_level=True)
        return self._pouchdb

    def revs_diff(self, revs_by_id):
        """The revs of each doc the db does not know. On a cluster the answer
        comes from the first copy that answers for each doc: "known" holds
        (some copy has the revision), "missing" may come from a copy that
        has not caught up; ``selection.missing_revs`` asks every copy."""
        if not revs_by_id:
            return {}
        return self.json('POST', '_revs_diff', body=revs_by_id)

    # -- feeds and views -------------------------------------------------

    def changes(self, since=None, limit=None, include_docs=False, timeout=None, body=None, **params):
        """One page of ``_changes`` with every leaf rev of each doc (style=all_docs);
        ``body`` goes with a filter that takes one (``_selector``, ``_doc_ids``)."""
        query = {'style': 'all_docs', **params}
        if since is not None:
            query['since'] = since
        if limit is not None:
            query['limit'] = limit
        if include_docs:
            query['include_docs'] = 'true'
        if body is not None:
            return self.json('POST', '_changes', params=query, body=body, timeout=timeout)
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
        except requests.RequestException as e:
            outcome = classify(e)
            if outcome is None or outcome.error is not CouchUnreachable:
                raise
            return self._feed_cut_off(outcome.reason, deadline)
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


def _part(boundary, headers, data):
    head = ''.join(f"{key}: {value}\r\n" for key, value in headers.items())
    return f"--{boundary}\r\n{head}\r\n".encode() + data + b'\r\n'


def _quoted_filename(name):
    return name.replace('\\', '\\\\').replace('"', '\\"')
