"""Attachment data read in bounded amounts.

A page of docs read with attachments inline holds every attachment of the
page at once: a thousand users with a 5 MB photo each would be 6.7 GB of
base64 in one response. So docs are read with stubs first (a stub gives the
attachment's ``length``), and those with attachments are read again with their
data in groups of at most a byte budget; a doc larger than the budget is a
group of its own, so memory is bounded by the budget or the largest doc.
"""
import base64
from collections import namedtuple

from corehq.doctypemigrations.selection import leaf_pairs

BUDGET = 8 * 1024 * 1024

# What a copy of an attachment must keep (see attachment_summary).
AttachmentSummary = namedtuple('AttachmentSummary', 'revpos digest length content_type')


def fetch_bounded(db, changes, budget=BUDGET):
    """Every leaf revision of ``changes``, with ``_revisions``:
    (docs complete with their attachments, groups of docs still to read with
    with_data(), (id, rev) pairs the server no longer has).

    The attachment data of a fetch within the budget is read here at once; a
    fetch over it leaves its groups to the caller, to read one at a time."""
    docs, missing = db.bulk_get(leaf_pairs(changes), attachments=False)
    complete = [doc for doc in docs if not doc.get('_attachments')]
    pending = list(groups([doc for doc in docs if doc.get('_attachments')], budget))
    if len(pending) == 1:
        filled, gone = with_data(db, pending.pop())
        complete += filled
        missing += gone
    return complete, pending, missing


def with_data(db, docs):
    """``docs`` (read with stubs) read again with their attachments inline: (docs, gone)."""
    return db.bulk_get([(doc['_id'], doc['_rev']) for doc in docs], attachments=True)


def groups(docs, budget, size_of=None):
    """``docs`` in consecutive groups of at most ``budget`` attachment bytes
    each (``size_of(doc)``; default: all of its attachments)."""
    size_of = size_of or attachment_bytes
    group, size = [], 0
    for doc in docs:
        length = size_of(doc)
        if group and size + length > budget:
            yield group
            group, size = [], 0
        group.append(doc)
        size += length
    if group:
        yield group


def attachment_bytes(doc):
    return sum(att.get('length', 0) for att in (doc.get('_attachments') or {}).values())


def with_inline_data(stub, data):
    """The attachment of ``stub`` with its ``data`` inline, as ``_bulk_docs``
    takes it. It keeps the source's ``revpos``: CouchDB takes an inline
    attachment's revpos from the JSON (0 without it), and a target whose
    revpos is too low later gets stubs from any replicator or migration
    that decides by revpos what the peer already holds. Digest and length
    are the server's to compute from the data."""
    attachment = {'content_type': stub.get('content_type'), 'data': base64.b64encode(data).decode()}
    if 'revpos' in stub:
        attachment['revpos'] = stub['revpos']
    return attachment


def attachment_summary(doc):
    """{name: AttachmentSummary(revpos, digest, length, content_type)} of a
    doc's attachments, as a copy must keep them. Read from stubs; an
    attachment with its data inline has no length field, so it is the
    data's."""
    return {name: AttachmentSummary(att.get('revpos'), att.get('digest'), _length(att),
                                    att.get('content_type'))
            for name, att in (doc.get('_attachments') or {}).items()}


def _length(att):
    if 'length' in att or 'data' not in att:
        return att.get('length')
    return len(base64.b64decode(att['data']))
