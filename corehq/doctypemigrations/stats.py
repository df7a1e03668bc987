"""Per-doc-type counts of both databases, from the couchapps ``all_docs/by_doc_type`` view."""
from corehq.doctypemigrations.couch import CouchNotFound, DatabaseMissing

VIEW = ('all_docs', 'by_doc_type')


class StatsViewMissing(Exception):
    pass


def doc_type_counts(db):
    """{doc_type: count of live docs}; a reduce over the view, not a scan."""
    try:
        rows = db.view(*VIEW, group_level=1)['rows']
    except DatabaseMissing:
        raise
    except CouchNotFound:
        raise StatsViewMissing(
            f"{db.display_url} has no _design/{VIEW[0]} view {VIEW[1]}: run "
            f"`./manage.py sync_couch_views` to put the couchapps views on it") from None
    return {row['key'][0]: row['value'] for row in rows}


def count_table(doc_types, source_counts, target_counts):
    """Lines of the guide's table: doc_type, Source, Target, sorted by doc type."""
    width = max([32] + [len(t) + 2 for t in doc_types])  # the guide's layout
    lines = [f"{'doc_type':^{width - 1}} {'Source':<8}Target"]
    for doc_type in sorted(doc_types):
        lines.append(f"{doc_type:<{width}}{source_counts.get(doc_type, 0):<8}"
                     f"{target_counts.get(doc_type, 0)}")
    return lines
