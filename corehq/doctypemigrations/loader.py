"""Writing revisions into the target with ``_bulk_docs`` and ``new_edits=false``.

Such writes are idempotent: a revision already there is accepted again, so a
batch can be resent after any failure.
"""
import base64
from collections import namedtuple

from corehq.couch import CouchHTTPError, RequestTooLarge, deepjson

DocError = namedtuple('DocError', 'id rev error reason')


def bulk_body(raw_docs):
    return b'{"new_edits":false,"docs":[' + b','.join(raw_docs) + b']}'


def write_raw(target, raw_docs):
    """Write JSON-encoded docs; a 413 splits the batch until each part fits.

    Returns the per-doc errors (the server's 201 can hold some), never drops them.
    """
    if not raw_docs:
        return []
    try:
        rows = target.bulk_docs(bulk_body(raw_docs))
    except RequestTooLarge:
        if len(raw_docs) == 1:
            return write_large(target, deepjson.loads(raw_docs[0]))
        middle = len(raw_docs) // 2
        return write_raw(target, raw_docs[:middle]) + write_raw(target, raw_docs[middle:])
    return _doc_errors(rows)


def write_large(target, doc):
    """One revision too large for ``_bulk_docs``: its inline attachments go
    as binary parts of a multipart PUT, as CouchDB's replicator sends them."""
    inline = {name: att for name, att in doc.get('_attachments', {}).items() if 'data' in att}
    if not inline:
        return [_too_large(doc)]
    stubs = dict(doc['_attachments'])
    parts = []
    for name, att in inline.items():
        data = base64.b64decode(att['data'])
        stubs[name] = _follows(att, len(data))
        parts.append((name, att.get('content_type'), data))
    try:
        target.put_replicated(dict(doc, _attachments=stubs), parts)
    except RequestTooLarge:
        return [_too_large(doc)]
    except CouchHTTPError as e:
        return [DocError(doc.get('_id'), doc.get('_rev'), str(e.status), str(e))]
    return []


def _follows(att, length):
    """The stub of an attachment sent as a part. ``revpos`` stays the
    source's (the server would take the doc's generation: --continuous sends
    attachments by it); the digest is left to the server, since it covers the
    data as stored, which may be compressed."""
    stub = {'content_type': att.get('content_type'), 'length': length, 'follows': True}
    if 'revpos' in att:
        stub['revpos'] = att['revpos']
    return stub


def _too_large(doc):
    return DocError(doc.get('_id'), doc.get('_rev'), 'too_large',
                    'the document alone is larger than the server accepts, even with its '
                    'attachments sent as binary parts')


def delete_revs(db, id_revs):
    """Delete the given leaves (normal edits); returns the per-doc errors.

    A conflict is no error when the leaf is gone anyway: that is what a
    retried request looks like when its first attempt went through.
    """
    deletions = [{'_id': doc_id, '_rev': rev, '_deleted': True} for doc_id, rev in id_revs]
    if not deletions:
        return []
    errors = _doc_errors(db.bulk_docs(deletions))
    conflicted = {e.id for e in errors if e.error == 'conflict'}
    wanted_gone = set(id_revs)
    still_live = [DocError(doc_id, rev, 'conflict', 'the revision is still live')
                  for doc_id in conflicted for rev in live_leaf_revs(db, doc_id)
                  if (doc_id, rev) in wanted_gone]
    return [e for e in errors if e.error != 'conflict'] + still_live


def live_leaf_revs(db, doc_id):
    return [leaf['ok']['_rev'] for leaf in db.open_revs(doc_id)
            if 'ok' in leaf and not leaf['ok'].get('_deleted')]


def _doc_errors(rows):
    return [DocError(row.get('id'), row.get('rev'), row.get('error'), row.get('reason')) for row in rows]


def write_docs(target, docs):
    return write_raw(target, [deepjson.dumps(doc) for doc in docs])
