"""Per-doc-type counts of both databases, from the couchapps ``all_docs/by_doc_type`` view."""
from corehq.couch import CouchNotFound, DatabaseMissing
from corehq.doctypemigrations.errors import StatsViewMissing
from corehq.couch.indexing import catch_up
from corehq.doctypemigrations.selection import BY_DOC_TYPE


def doc_type_counts(db):
    """{doc_type: count of live docs}; a reduce over the view, not a scan."""
    rows = _query(db, group_level=1)
    return {row['key'][0]: row['value'] for row in rows}


def doc_types_total(db, doc_types):
    """Live docs of ``doc_types``, reducing only their key ranges (pouchdb-server
    reduces by reading the rows, so the whole view would cost far more)."""
    return sum(row['value'] for doc_type in doc_types
               for row in _query(db, startkey=[doc_type], endkey=[doc_type, {}]))


def _query(db, **params):
    try:
        catch_up(db, *BY_DOC_TYPE)  # a reduce query would wait for it with a read timeout
        return db.view(*BY_DOC_TYPE, **params)['rows']
    except DatabaseMissing:
        raise
    except CouchNotFound:
        raise StatsViewMissing(
            f"{db.display_url} has no _design/{BY_DOC_TYPE[0]} view {BY_DOC_TYPE[1]}: run "
            f"`./manage.py sync_couch_views` to put the couchapps views on it") from None
