"""What --continuous sends the target for a batch of changes: only the leaf
revisions it lacks, and of their attachments only those it does not hold yet.

This is CouchDB's replicator's ``revs_diff`` + ``atts_since``, done on the
client so it works on every server (pouchdb-server ignores ``atts_since`` and
gives no ``possible_ancestors``): an attachment whose ``revpos`` is at or
below the newest ancestor the target already has goes as a stub, so an edit
of a doc with a large photo does not send the photo again.
"""
from corehq.couch import CouchHTTPError, doc_path
from corehq.doctypemigrations.attachments import BUDGET, groups, with_inline_data
from corehq.doctypemigrations.inflight import DEFAULT_WORKERS, ordered
from corehq.doctypemigrations.loader import write_docs
from corehq.doctypemigrations.selection import leaf_pairs


def copy_missing(source, target, changes, budget=BUDGET, workers=DEFAULT_WORKERS):
    """Write the leaf revisions of ``changes`` the target lacks, with
    new_edits=false; returns (the docs written, as read with attachment stubs;
    the errors; (id, rev) pairs the source no longer has).

    Attachment data is read and sent in groups of at most ``budget`` bytes,
    so a batch of users with large photos is never in memory at once. The
    attachments of a group are read with up to ``workers`` requests in
    flight: each is a GET of its own, and over a link to a remote cluster a
    doc with many changed attachments would otherwise cost a round trip each."""
    lacking = target.revs_diff(_leaves_by_id(changes))
    pairs = [(doc_id, rev) for doc_id, entry in lacking.items() for rev in entry['missing']]
    return copy_revisions(source, target, pairs, budget, workers)


def copy_revisions(source, target, pairs, budget=BUDGET, workers=DEFAULT_WORKERS):
    """Write these (id, rev) revisions with their history, new_edits=false, as
    copy_missing does; returns the same."""
    docs, gone = source.bulk_get(pairs, attachments=False)
    held = _newest_held_ancestors(target, [doc for doc in docs if doc.get('_attachments')])
    errors = []
    for group in groups(docs, budget, lambda doc: _bytes_to_send(doc, held)):
        errors += _write_group(source, target, group, held, workers)
    return docs, errors, gone


def _write_group(source, target, group, held, workers):
    """The group's revisions, their changed attachments with data. A stub the
    target cannot match sends the revisions again with every attachment's
    data, as CouchDB's replicator does: CouchDB matches a stub by name and
    revpos against the ancestor it holds, and gives an attachment written
    with a doc recreated over a tombstone revpos 1, whatever the doc's
    generation (so revpos no longer says what the ancestor holds)."""
    try:
        errors = write_docs(target, _with_attachments_to_send(source, group, held, workers))
    except CouchHTTPError as e:  # _bulk_docs refuses the whole batch for one stub
        if not _missing_stub(e.status, str(e)):
            raise
        return write_docs(target, _with_attachments_to_send(source, group, {}, workers))
    unmatched = {(e.id, e.rev) for e in errors if _missing_stub(e.error, e.reason)}
    if not unmatched:
        return errors
    again = [doc for doc in group if (doc['_id'], doc['_rev']) in unmatched]
    return [e for e in errors if (e.id, e.rev) not in unmatched] + write_docs(
        target, _with_attachments_to_send(source, again, {}, workers))


def _missing_stub(error, reason):
    # a 412 of the whole request, or a row's (or a multipart PUT's) error
    return 'missing_stub' in f"{error} {reason}"


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
    lacking = target.revs_diff({doc_id: sorted(revs) for doc_id, revs in ancestors.items()})
    result = {}
    for doc in docs:
        missing = set(lacking.get(doc['_id'], {}).get('missing', ()))
        held = [int(rev.split('-', 1)[0]) for rev in history(doc)[1:] if rev not in missing]
        result[(doc['_id'], doc['_rev'])] = max(held, default=0)
    return result


def _to_send(doc, held):
    """The attachments of ``doc`` changed after the newest ancestor the target
    holds: those get their data; the rest stay stubs, which the target
    resolves from that ancestor."""
    generation = held.get((doc['_id'], doc['_rev']), 0)
    attachments = doc.get('_attachments') or {}
    return [name for name, att in attachments.items() if att.get('revpos', 0) > generation]


def _bytes_to_send(doc, held):
    return sum(doc['_attachments'][name].get('length', 0) for name in _to_send(doc, held))


def _with_attachments_to_send(source, docs, held, workers):
    """Copies of ``docs`` with the data of the attachments to send inline."""
    wanted = [(doc, name) for doc in docs for name in _to_send(doc, held)]
    fetched = ordered(wanted, lambda pair: _attachment_data(source, *pair), workers, source.budget, ahead=0)
    inline = {}
    for (doc, name), data in fetched:
        stub = doc['_attachments'][name]
        inline.setdefault((doc['_id'], doc['_rev']), {})[name] = with_inline_data(stub, data)
    return [_inlined(doc, inline.get((doc['_id'], doc['_rev']))) for doc in docs]


def _attachment_data(source, doc, name):
    path = f"{doc_path(doc['_id'])}/{doc_path(name)}"
    return source.request('GET', path, params={'rev': doc['_rev']}).content


def _inlined(doc, attachments):
    return dict(doc, _attachments=dict(doc['_attachments'], **attachments)) if attachments else doc
