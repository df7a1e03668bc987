"""Push design docs to their databases and build their indexes.

A changed design doc is not replaced in place: every query of it would then
wait for its whole index to be rebuilt, hours on a big database. As in
CommCare's preindex, the new version is saved as ``_design/<name>-tmp``, its
index is built while the old version keeps answering, and then the same
content is saved over ``_design/<name>`` and the temporary doc deleted.

The copy costs no rebuild because a server keeps one index per view
definition, not per design doc: CouchDB shares an index between design docs
with the same signature (views, language, options), and pouchdb-server 4.2.0
between views with the same map and reduce (measured: a copy answers in
milliseconds where the build took seconds). One pouchdb-server quirk: it
records which design docs use an index when it first opens it, so until a
restart the shared index is on record under the temporary doc's name only,
and a ``_view_cleanup`` then deletes it: the next query rebuilds it.

A design doc that did not change is neither written nor rebuilt; its views are
only brought up to date. ``build=False`` (``--no-build``) saves a changed
design doc in place, as asked: nothing is built then, so there is nothing to
wait for.
"""
from collections import defaultdict

from corehq.couch import CouchError, CouchHTTPError
from corehq.couch.indexing import wait_for_view_index
from corehq.preindex.designdocs import design_doc_changed

UPDATED, CREATED, UNCHANGED = 'updated', 'created', 'unchanged'
TMP_SUFFIX = '-tmp'


def group_by_db(placements):
    by_db = defaultdict(list)
    for placement in placements:
        by_db[placement.db_name].append(placement)
    return by_db


def tmp_doc_id(doc_id):
    return f"{doc_id}{TMP_SUFFIX}"


def push_design_doc(db, doc_id, ddoc):
    """Create or update one design doc in place, leaving an identical one alone."""
    existing = db.get(doc_id)
    if not design_doc_changed(existing, ddoc):
        return UNCHANGED
    doc = dict(ddoc, _id=doc_id)
    if existing is not None:
        doc['_rev'] = existing['_rev']
    try:
        db.put(doc)
    except CouchHTTPError as e:
        # A conflict after a retried PUT whose first attempt went through is a success.
        if e.status != 409 or design_doc_changed(db.get(doc_id), ddoc):
            raise
    return CREATED if existing is None else UPDATED


def build_indexes(db, doc_id, ddoc, on_progress=None, poll_seconds=None):
    """Wait until every view's index is built, so that no user query waits for it."""
    ddoc_name = doc_id[len('_design/'):]
    for view_name in ddoc.get('views', {}):
        wait_for_view_index(db, ddoc_name, view_name, on_progress=on_progress, poll_seconds=poll_seconds)


def swap_design_doc(db, doc_id, ddoc, on_progress=None, poll_seconds=None):
    """Build ``ddoc``'s indexes under the temporary id, then save it over ``doc_id``.

    A temporary doc left by a run that was stopped is reused: the part of its
    index built so far is kept where the content did not change again.
    """
    tmp_id = tmp_doc_id(doc_id)
    push_design_doc(db, tmp_id, ddoc)
    build_indexes(db, tmp_id, ddoc, on_progress, poll_seconds)
    push_design_doc(db, doc_id, ddoc)
    # Opens the shared index for the real id before the temporary doc, the
    # other holder of the index, goes.
    build_indexes(db, doc_id, ddoc, on_progress, poll_seconds)
    delete_design_doc(db, tmp_id)


def delete_design_doc(db, doc_id):
    """Delete ``doc_id`` if it is there."""
    existing = db.get(doc_id)
    if existing is None:
        return
    errors = db.bulk_docs([{'_id': doc_id, '_rev': existing['_rev'], '_deleted': True}])
    # A conflict after a retried request whose first attempt went through is a success.
    if errors and db.get(doc_id) is not None:
        raise CouchError(f"{db.display_url}: could not delete {doc_id}: {errors[0]}")


def sync_design_doc(db, doc_id, ddoc, build=True, on_progress=None, poll_seconds=None):
    """Put ``ddoc`` at ``doc_id`` (and, with ``build``, its indexes up to date); returns the outcome."""
    existing = db.get(doc_id)
    if not design_doc_changed(existing, ddoc):
        outcome = UNCHANGED
    elif existing is not None and build:
        swap_design_doc(db, doc_id, ddoc, on_progress, poll_seconds)
        return UPDATED
    else:
        # A new design doc has no old version to keep answering, and
        # without ``build`` nothing is built to wait for.
        outcome = push_design_doc(db, doc_id, ddoc)
    if build:
        build_indexes(db, doc_id, ddoc, on_progress, poll_seconds)
    # Left by a run stopped after its copy: the real id already holds its content.
    delete_design_doc(db, tmp_doc_id(doc_id))
    return outcome


def sync_database(db, placements, build=True, on_doc=None, on_progress=None, poll_seconds=None):
    """Sync every placement's design doc to ``db``; returns {doc_id: outcome}.

    ``on_progress(placement, IndexProgress)`` hears from index builds that
    take longer than ``poll_seconds``; ``on_doc(placement, outcome)`` from
    each design doc once it is done.
    """
    db.create()
    outcomes = {}
    for placement in placements:
        report = (lambda progress, p=placement: on_progress(p, progress)) if on_progress else None
        outcome = sync_design_doc(db, placement.doc_id, placement.ddoc, build, report, poll_seconds)
        outcomes[placement.doc_id] = outcome
        if on_doc:
            on_doc(placement, outcome)
    return outcomes
