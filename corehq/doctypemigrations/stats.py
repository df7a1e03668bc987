"""Per-doc-type counts of both databases, from the couchapps ``all_docs/by_doc_type`` view."""
from contextlib import contextmanager

from corehq.couch import CouchNotFound, DatabaseMissing
from corehq.doctypemigrations.errors import StatsViewMissing
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.indexwait import catch_up
from corehq.doctypemigrations.selection import BY_DOC_TYPE, doc_type_range


def doc_type_counts(db, doc_types=None, events=None):
    """{doc_type: count of live docs}; a reduce over the view, not a scan.

    Given ``doc_types``, only their key ranges are reduced: pouchdb-server
    computes a reduce at query time by reading each row in range, so counting
    a few doc types of a big database costs their rows only (CouchDB keeps
    reduce values in its index and answers either at once). On pouchdb-server
    that is still about a minute per million rows, so each doc type counted
    is reported to ``events``."""
    with _view_needed(db):
        catch_up(db, *BY_DOC_TYPE, events)  # a reduce query would wait for it with a read timeout
        if doc_types is None:
            return _counted_at_once(db)
        return _counted_one_by_one(db, doc_types, events or Events())


def _counted_at_once(db):
    """Every doc type's count in one reduce. A doc_type that is not a string
    (a list, an object, a number) is no doc type: a by_doc_type view synced
    before the couchapps view emitted strings only still has such keys."""
    rows = db.view(*BY_DOC_TYPE, group_level=1)['rows']
    return {row['key'][0]: row['value'] for row in rows if isinstance(row['key'][0], str)}


def _counted_one_by_one(db, doc_types, events):
    stage = f"Counting in {db.name}"
    counts = {}
    events.stage(stage, total=len(doc_types), unit='doc types')
    try:
        for doc_type in doc_types:
            counts[doc_type] = sum(row['value'] for row in db.view(
                *BY_DOC_TYPE, **doc_type_range(doc_type))['rows'])
            events.advanced(stage, 1)
    finally:
        events.stage_done(stage)
    return counts


def doc_types_total(db, doc_types):
    """Live docs of ``doc_types`` (see doc_type_counts)."""
    return sum(doc_type_counts(db, doc_types).values())


@contextmanager
def _view_needed(db):
    try:
        yield
    except DatabaseMissing:
        raise
    except CouchNotFound:
        raise StatsViewMissing(
            f"{db.display_url} has no _design/{BY_DOC_TYPE[0]} view {BY_DOC_TYPE[1]}: run "
            f"`./manage.py sync_couch_views` to put the couchapps views on it") from None
