"""The migrator's peers on the same server and data: what a copy costs at the least.

The raw loops are plain and serial on purpose (one request at a time, no
checkpoints, no dump file): they are the floor the migrator's own bookkeeping
is measured against, not a competing design. They ask for uncompressed
responses: gzip only costs the single-threaded server CPU on a loopback or
LAN copy, and a floor should not pay for it.
"""
import time
from dataclasses import dataclass

import orjson

from bench.couchclient import Server

PAGE_SIZE = 1000


@dataclass
class CopyResult:
    seconds: float
    docs: int        # docs whose winner was copied
    revs: int        # leaf revisions written (conflicts and deleted leaves included)

    def as_dict(self):
        return dict(self.__dict__)


def _copy_leaves(source, target, id_revs):
    """The two calls a copy needs per page: fetch each leaf with its history,
    write it as is (``new_edits=false`` keeps the source's rev tree)."""
    if not id_revs:
        return 0
    docs = source.bulk_get(id_revs)
    target.bulk_docs([orjson.dumps(doc) for doc in docs], new_edits=False)
    return len(docs)


def prepare_target(target, design_docs):
    """A fresh target holding the same design docs as the migrator's: on
    pouchdb-server every written doc pays for the target's design docs (its
    validation plugin reads them all per doc), so peers get the same target."""
    target.recreate()
    for ddoc in design_docs:
        target.put({k: v for k, v in ddoc.items() if k != '_rev'})


def uncompressed(db):
    """The same database through a session that asks for identity encoding."""
    server = Server(db.server.url)
    server.session.headers['Accept-Encoding'] = 'identity'
    return server.db(db.name)


def view_leaves(source, doc_types, page_size=PAGE_SIZE):
    """Pages of (view rows, [(id, leaf rev)]) of the ``all_docs/by_doc_type``
    view, one doc type at a time.

    The view's rows give the ids and, as their value, the live leaf revs (the
    couchapps map emits them), so no doc body is read twice; each leaf rev is
    asked for explicitly (pouchdb's ``_bulk_get`` with a bare id returns just
    the winner). Deleted losing leaves are not visible this way, so a copy of
    these does slightly less than a full copy: a conservative floor.
    """
    for doc_type in sorted(doc_types):
        startkey = [doc_type]
        skip = 0
        while True:
            rows = source.view('all_docs', 'by_doc_type', reduce=False, startkey=startkey,
                               endkey=[doc_type, {}], limit=page_size, skip=skip)['rows']
            yield rows, [(row['id'], rev) for row in rows for rev in row['value']]
            if len(rows) < page_size:
                break
            startkey, skip = rows[-1]['key'], 1


def copy_via_view(source, target, doc_types, page_size=PAGE_SIZE):
    """Enumerate with the ``all_docs/by_doc_type`` view (see view_leaves)."""
    source, target = uncompressed(source), uncompressed(target)
    started = time.monotonic()
    docs = revs = 0
    for rows, id_revs in view_leaves(source, doc_types, page_size):
        revs += _copy_leaves(source, target, id_revs)
        docs += len(rows)
    return CopyResult(time.monotonic() - started, docs, revs)


def copy_via_changes(source, target, doc_types, page_size=PAGE_SIZE):
    """Enumerate with the whole ``_changes`` feed (``style=all_docs``,
    ``include_docs``), filtering on the winner's doc_type like the migrator."""
    wanted_types = frozenset(doc_types)
    source, target = uncompressed(source), uncompressed(target)
    started = time.monotonic()
    docs = revs = 0
    since = 0
    while True:
        page = source.changes(style='all_docs', include_docs='true', limit=page_size, since=since)
        rows = page['results']
        since = page['last_seq']
        wanted = [row for row in rows if not row['id'].startswith('_design/')
                  and (row.get('doc') or {}).get('doc_type') in wanted_types]
        id_revs = [(row['id'], change['rev']) for row in wanted for change in row['changes']]
        revs += _copy_leaves(source, target, id_revs)
        docs += len(wanted)
        if len(rows) < page_size:
            break
    return CopyResult(time.monotonic() - started, docs, revs)


FILTER_DDOC = '_design/bench_replication'
REPLICATION_TIMEOUT_MS = 600_000


def filter_design_doc(doc_types):
    """A JS filter selecting the migrating doc types, as a CouchDB replication would use."""
    types = orjson.dumps(sorted(doc_types)).decode()
    return {'_id': FILTER_DDOC, 'filters': {'by_doc_type': (
        f"function (doc, req) {{ return {types}.indexOf(doc.doc_type) !== -1; }}")}}


def install_replication_filter(source, doc_types):
    ddoc = filter_design_doc(doc_types)
    existing = source.get(FILTER_DDOC)
    if existing:
        ddoc['_rev'] = existing['_rev']
    source.put(ddoc)


def replicate(server, source, target, doc_types, source_url=None, selector=False):
    """The server's own one-shot ``_replicate`` selecting the doc types, into
    the existing target: with a JS filter function (a design doc's), or with
    a Mango ``selector`` on doc_type (CouchDB 2+; evaluated in Erlang, no JS).

    The design doc holding the filter is installed first (a source write; it
    does not pass its own filter, so it is not copied). With ``source_url``
    (the source's full url through a proxy) the replicator reads the source
    over HTTP through it, as a remote peer pulling from the cluster would.
    """
    body = {'source': source_url or server.replication_endpoint(source.name),
            'target': server.replication_endpoint(target.name)}
    if server.is_couchdb():
        # A filter run on a busy machine can be silent longer than the
        # default 30 s, and the replication fails (changes_reader_died).
        body['connection_timeout'] = REPLICATION_TIMEOUT_MS
    if selector:
        body['selector'] = {'doc_type': {'$in': sorted(doc_types)}}
    else:
        install_replication_filter(source, doc_types)
        body['filter'] = 'bench_replication/by_doc_type'
    started = time.monotonic()
    result = server.json('POST', '_replicate', body=body, timeout=3600)
    seconds = time.monotonic() - started
    # pouchdb-server answers the counts at the top; CouchDB in the session's history entry
    counts = dict(result, **(result.get('history') or [{}])[0])
    if not result.get('ok', False) or counts.get('doc_write_failures'):
        raise RuntimeError(f"_replicate failed: {_without_history(result)}")
    return CopyResult(seconds, target.info()['doc_count'], counts.get('docs_written', 0))


def _without_history(result):
    return {k: v for k, v in result.items() if k != 'history'}
