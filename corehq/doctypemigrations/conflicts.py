"""Resolve conflicts of migrating docs in the source by keeping each winner."""
from collections import namedtuple

from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.loader import delete_revs
from corehq.doctypemigrations.selection import live_migrating, migrating_leaves

ConflictResult = namedtuple('ConflictResult', 'docs leaves_deleted errors')
STAGE = 'Deleting conflicts'


def run_delete_doc_conflicts(migrator, source, target, page_size=1000, events=None):
    """The delete_doc_conflicts entry point: its gate (after --initial: it
    belongs to the cleanup), then the deletions in the source."""
    states.check('delete_doc_conflicts', states.open_state(migrator, source, target), migrator.slug)
    return delete_doc_conflicts(source, migrator.all_doc_types, page_size, events)


def delete_doc_conflicts(source, doc_types, page_size=1000, events=None):
    """Delete the losing live leaves of every conflicted doc of ``doc_types``.

    Which leaf wins is decided on the doc read again from every copy, never
    on the listing: a copy that has not caught up could show a leaf winning
    that has lost since (deleting the real winner would delete the doc)."""
    events = events or Events()
    docs_fixed, leaves, errors = 0, 0, []
    events.stage(STAGE, unit='docs scanned')
    try:
        for listed, scanned in migrating_leaves(source, doc_types, page_size, events):
            conflicted = [doc_id for doc_id, revs in listed if len(revs) > 1]
            page = live_migrating(source, doc_types, conflicted).items()
            losers = [(doc_id, rev) for doc_id, revs in page for rev in revs[1:]]
            errors.extend(delete_revs(source, losers))
            docs_fixed += sum(len(revs) > 1 for _doc_id, revs in page)
            leaves += len(losers)
            events.advanced(STAGE, scanned)
    finally:
        events.stage_done(STAGE)
    return ConflictResult(docs_fixed, leaves, errors)
