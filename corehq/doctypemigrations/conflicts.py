"""Resolve conflicts of migrating docs in the source by keeping each winner."""
from collections import namedtuple

from corehq.doctypemigrations.loader import delete_revs
from corehq.doctypemigrations.selection import DocTypeSelection, scan_changes

ConflictResult = namedtuple('ConflictResult', 'docs leaves_deleted errors')


def delete_doc_conflicts(source, doc_types, page_size=1000):
    """Delete the losing live leaves of every conflicted doc of ``doc_types``."""
    selection = DocTypeSelection(doc_types)
    docs_fixed, leaves, errors = 0, 0, []
    for changes, _seq in scan_changes(source, page_size, conflicts=True):
        conflicted = [c.doc for c in changes if selection.wants(c) and c.doc.get('_conflicts')]
        losers = [(doc['_id'], rev) for doc in conflicted for rev in doc['_conflicts']]
        errors.extend(delete_revs(source, losers))
        docs_fixed += len(conflicted)
        leaves += len(losers)
    return ConflictResult(docs_fixed, leaves, errors)
