import pytest

from corehq.doctypemigrations.stats import StatsViewMissing, doc_type_counts, doc_types_total
from tests.doctypemigrations.data import seed


def test_counts_per_doc_type_and_the_total_of_some(migration_dbs):
    source, _ = migration_dbs
    seed(source)
    counts = doc_type_counts(source)
    live = [row['doc'] for row in source.all_docs(include_docs=True) if not row['id'].startswith('_design/')]
    assert counts['CommCareUser'] == sum(doc['doc_type'] == 'CommCareUser' for doc in live)
    assert doc_types_total(source, ['CommCareUser', 'Group', 'NoSuchType']) == \
        counts['CommCareUser'] + counts['Group']
    # only the asked doc types' key ranges: the same counts, and 0 for one with no docs
    assert doc_type_counts(source, ['Group', 'NoSuchType']) == {'Group': counts['Group'], 'NoSuchType': 0}


def test_a_database_without_the_view_says_how_to_get_it(migration_dbs):
    source, _ = migration_dbs
    ddoc = source.get('_design/all_docs')
    source.bulk_docs([{'_id': ddoc['_id'], '_rev': ddoc['_rev'], '_deleted': True}])
    with pytest.raises(StatsViewMissing, match='sync_couch_views'):
        doc_types_total(source, ['Group'])


def test_each_doc_type_counted_is_reported_through_the_phase_events(migration_dbs):
    from tests.doctypemigrations.helpers import RecordedEvents
    source, _ = migration_dbs
    seed(source)
    events = RecordedEvents()
    doc_type_counts(source, ['CommCareUser', 'Group', 'WebUser'], events)
    assert events.stages == {f"Counting in {source.name}": [3, 3, True]}
