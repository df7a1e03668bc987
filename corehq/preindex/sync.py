"""Push design docs to their databases and build their indexes."""
from collections import defaultdict

from corehq.doctypemigrations.couch import CouchHTTPError
from corehq.preindex.designdocs import design_doc_changed

UPDATED, CREATED, UNCHANGED = 'updated', 'created', 'unchanged'


def group_by_db(placements):
    by_db = defaultdict(list)
    for placement in placements:
        by_db[placement.db_name].append(placement)
    return by_db


def push_design_doc(db, doc_id, ddoc):
    """Create or update one design doc, leaving an identical one alone."""
    existing = db.get(doc_id)
    if not design_doc_changed(existing, ddoc):
        return UNCHANGED
    doc = dict(ddoc)
    if existing is not None:
        doc['_rev'] = existing['_rev']
    try:
        db.put(doc)
    except CouchHTTPError as e:
        # A conflict after a retried PUT whose first attempt went through is a success.
        if e.status != 409 or design_doc_changed(db.get(doc_id), ddoc):
            raise
    return CREATED if existing is None else UPDATED


def build_indexes(db, doc_id, ddoc):
    """Query each view once so its index is built now, not by the first user."""
    ddoc_name = doc_id[len('_design/'):]
    for view_name in ddoc.get('views', {}):
        db.update_view_index(ddoc_name, view_name)


def sync_database(db, placements, build=True, on_doc=None):
    """Push every placement's design doc to ``db``; returns {doc_id: outcome}."""
    db.create()
    outcomes = {}
    for placement in placements:
        outcome = push_design_doc(db, placement.doc_id, placement.ddoc)
        if build:
            build_indexes(db, placement.doc_id, placement.ddoc)
        outcomes[placement.doc_id] = outcome
        if on_doc:
            on_doc(placement, outcome)
    return outcomes
