from corehq.couch.indexing import catch_up
from corehq.doctypemigrations.selection import BY_DOC_TYPE, scan_doc_type_view
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import make_conflicted

OLD_MAP = "function (doc) { if (doc.doc_type) { emit([doc.doc_type, doc._id], null); } }"


def leaves_by_id(db, doc_types, **kwargs):
    return {c.id: c.leaf_revs
            for changes, _ in scan_doc_type_view(db, doc_types, 3, **kwargs) for c in changes}


def test_the_view_lists_each_docs_live_leaves_winner_first(migration_dbs):
    source, _ = migration_dbs
    winner, loser = make_conflicted(source, 'c', {'doc_type': 'Group'})
    plain = source.put({'_id': 'p', 'doc_type': 'Group'})['rev']
    source.put({'_id': 'other', 'doc_type': 'Domain'})
    assert leaves_by_id(source, ['Group']) == {'c': [winner, loser], 'p': [plain]}


def test_paging_resumes_after_a_position_without_repeating_or_skipping(migration_dbs):
    source, _ = migration_dbs
    migrating, _ = seed(source)
    pages = list(scan_doc_type_view(source, ['CommCareUser', 'Group'], 2))
    first_half = [c.id for changes, _ in pages[:3] for c in changes]
    resumed = [c.id for changes, _ in scan_doc_type_view(source, ['CommCareUser', 'Group'], 2, pages[2][1])
               for c in changes]
    everything = [c.id for changes, _ in pages for c in changes]
    assert first_half + resumed == everything and len(set(everything)) == len(everything)


def test_a_view_that_emits_no_revs_is_read_with_its_docs(migration_dbs):
    source, _ = migration_dbs
    winner, loser = make_conflicted(source, 'c', {'doc_type': 'Group'})
    ddoc = source.get('_design/all_docs')
    ddoc['views']['by_doc_type']['map'] = OLD_MAP
    source.put(ddoc)
    [[change], _] = next(iter(scan_doc_type_view(source, ['Group'], 10)))
    assert change.leaf_revs == [winner, loser] and change.doc['doc_type'] == 'Group'


def test_a_stale_read_sees_only_what_the_last_refresh_indexed(migration_dbs):
    source, _ = migration_dbs
    source.put({'_id': 'early', 'doc_type': 'Group'})
    catch_up(source, *BY_DOC_TYPE)
    source.put({'_id': 'late', 'doc_type': 'Group'})
    assert set(leaves_by_id(source, ['Group'], stale=True)) == {'early'}
    catch_up(source, *BY_DOC_TYPE)
    assert set(leaves_by_id(source, ['Group'], stale=True)) == {'early', 'late'}


def test_feed_pages_read_with_docs_are_bounded_by_bytes_not_by_a_count_of_rows(proxied_dbs):
    import os
    from corehq.doctypemigrations.selection import scan_changes
    proxy, source, _target = proxied_dbs
    ids = [f"big{i:03}" for i in range(120)]
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser', 'notes': os.urandom(5_000).hex()}
                      for doc_id in ids])  # 10 kB each
    proxy.reset()
    seen = [change.id for page, _seq in scan_changes(source, 40, max_bytes=40_000) for change in page]
    assert set(ids) <= set(seen)
    # 40 rows a page would be 400 kB: the first page is 16 rows, then about 4
    assert proxy.largest_response['_changes'] < 250_000
    assert proxy.count('GET', '_changes') > 20
