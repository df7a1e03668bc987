"""What --continuous sends the target for a batch of changes: only the leaf
revisions it lacks, and of their attachments only those it does not hold yet.

This is CouchDB's replicator's ``revs_diff`` + ``atts_since``, done on the
client so it works on every server (pouchdb-server ignores ``atts_since`` and
gives no ``possible_ancestors``): an attachment whose ``revpos`` is at or
below the newest ancestor the target already has goes as a stub, so an edit
of a doc with a large photo does not send the photo again.
"""
import base64

from corehq.couch import doc_path
from corehq.doctypemigrations.selection import leaf_pairs


def fetch_missing(source, target, changes):
    """(docs to write with new_edits=false, (id, rev) pairs the source no longer has)."""
    lacking = target.revs_diff(_leaves_by_id(changes))
    pairs = [(doc_id, rev) for doc_id, entry in lacking.items() for rev in entry['missing']]
    docs, gone = source.bulk_get(pairs, attachments=False)
    with_atts = [doc for doc in docs if doc.get('_attachments')]
    held = _newest_held_ancestors(target, with_atts)
    for doc in with_atts:
        _inline_attachments_after(source, doc, held.get((doc['_id'], doc['_rev']), 0))
    return docs, gone


def _leaves_by_id(changes):
    leaves = {}
    for doc_id, rev in leaf_pairs(changes):
        leaves.setdefault(doc_id, []).append(rev)
    return leaves


def history(doc):
    """The doc's revision ids, newest first, as ``N-hash``."""
    revisions = doc['_revisions']
    return [f"{revisions['start'] - i}-{rev_hash}" for i, rev_hash in enumerate(revisions['ids'])]


def _newest_held_ancestors(target, docs):
    """{(id, rev): generation of the newest ancestor of it the target holds (0: none)}."""
    ancestors = {}
    for doc in docs:
        ancestors.setdefault(doc['_id'], set()).update(history(doc)[1:])
    lacking = target.revs_diff({doc_id: sorted(revs) for doc_id, revs in ancestors.items()}) if ancestors else {}
    result = {}
    for doc in docs:
        missing = set(lacking.get(doc['_id'], {}).get('missing', ()))
        held = [int(rev.split('-', 1)[0]) for rev in history(doc)[1:] if rev not in missing]
        result[(doc['_id'], doc['_rev'])] = max(held, default=0)
    return result


def _inline_attachments_after(source, doc, held_generation):
    """Attachments changed after ``held_generation`` get their data; the rest
    stay stubs, which the target resolves from the ancestor it holds."""
    for name, att in doc['_attachments'].items():
        if att.get('revpos', 0) > held_generation:
            data = source.request('GET', f"{doc_path(doc['_id'])}/{doc_path(name)}",
                                  params={'rev': doc['_rev']}).content
            doc['_attachments'][name] = {'content_type': att.get('content_type'),
                                         'data': base64.b64encode(data).decode()}
