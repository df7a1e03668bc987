"""Waiting for a view's index: progress while it builds, no read timeout to end it."""
import logging
import re

import pytest

from corehq.couch import indexing
from corehq.doctypemigrations import stats
from corehq.couch import CouchDB, CouchNotFound, CouchUnreachable, PhaseBudget
from corehq.couch.indexing import (
    IndexNotReady, describe, indexer_progress, throttled, wait_for_view_index,
)
from corehq.doctypemigrations.selection import migrating_leaves, scan_doc_type_view

DDOC = {'language': 'javascript', 'views': {'v': {'map': "function (doc) { emit(doc.n, null); }"}}}
# Building an index over these takes seconds on pouchdb-server, about one on a
# CouchDB node: far longer than the read timeout and the polls below.
DOCS = 3000
VIEW_PATH = r'/_design/slow/_view/v'


def add_docs(db, doc_type='Thing', count=DOCS):
    for start in range(0, count, 1000):
        docs = [{'_id': f"{doc_type}-{n:05d}", 'doc_type': doc_type, 'n': n}
                for n in range(start, min(count, start + 1000))]
        assert db.bulk_docs(docs) == []


@pytest.fixture
def slow_db(source_db):
    add_docs(source_db)
    source_db.put(dict(DDOC, _id='_design/slow'))
    return source_db


@pytest.fixture
def proxied(couch_proxy, db_prefix, slow_db):
    """(The proxy, the url of ``slow_db`` through it.)"""
    return couch_proxy, f"{couch_proxy.url}/{db_prefix}"


def impatient(url):
    """A client whose requests give up after 0.05 s without an answer, and are not retried."""
    return CouchDB(url, timeout=(5, 0.05), budget=PhaseBudget(retries=0))


# The proxy holds the view's queries until the wait has shown what the test
# needs: the build lasts as long as that, however fast the server builds.

def test_the_wait_outlasts_a_read_timeout_far_shorter_than_the_build(slow_db, proxied):
    proxy, url = proxied
    seen = []
    # held: the plain query, then the wait's
    with proxy.holding(VIEW_PATH, until=lambda: proxy.held == 2 and len(seen) >= 3):
        with pytest.raises(CouchUnreachable, match='timed out'):  # what a plain query of the view does
            impatient(url).view('slow', 'v', reduce=False, limit=0)
        took = wait_for_view_index(impatient(url), 'slow', 'v', on_progress=seen.append, poll_seconds=0.05)
    # Released at the third, it may go on reporting while the server ends its build.
    assert len(seen) >= 3 and proxy.held == 2
    assert took >= seen[-1].elapsed > 0.05
    assert {(p.ddoc, p.view) for p in seen} == {('slow', 'v')}
    assert [p.elapsed for p in seen] == sorted(p.elapsed for p in seen)
    assert slow_db.view('slow', 'v', stale='ok', limit=0)['total_rows'] == DOCS


@pytest.mark.pouchdb_only("pouchdb-server lists no indexer in _active_tasks; CouchDB lists one per shard")
def test_pouchdb_server_lists_no_indexer_so_progress_is_the_time_spent(proxied):
    proxy, url = proxied
    seen = []
    with proxy.holding(VIEW_PATH, until=lambda: len(seen) >= 2):
        wait_for_view_index(CouchDB(url), 'slow', 'v', on_progress=seen.append, poll_seconds=0.05)
    assert len(seen) >= 2 and proxy.held == 1
    assert {(p.changes_done, p.total_changes, p.tasks) for p in seen} == {(None, None, 0)}
    assert describe(seen[-1]).startswith('slow/v: building (the server shows no indexer progress), ')


@pytest.mark.couchdb_only("CouchDB lists its indexers in _active_tasks; pouchdb-server lists none")
def test_couchdb_lists_an_indexer_per_shard_so_progress_is_the_changes_indexed(slow_db):
    # The indexer shows only while the server builds it, and holding the query
    # at the proxy does not make the server build longer: the docs to index
    # double until a poll has seen it, so that a fast server does not fail this.
    added = DOCS
    for attempt in range(5):
        seen = []
        wait_for_view_index(slow_db, 'slow', 'v', on_progress=seen.append, poll_seconds=0.05)
        shown = [p for p in seen if p.tasks]
        if shown:
            break
        if attempt < 4:
            add_docs(slow_db, f"More{attempt}", count=added)
            added *= 2
    assert shown, seen
    # CouchDB's counts are its indexers' estimates: done may pass the total for a moment
    assert all(p.changes_done >= 0 and 0 < p.total_changes <= added + 1 for p in shown), shown
    assert max(p.changes_done for p in shown) > 0
    assert re.fullmatch(r"slow/v: \d+% \(\d+ of \d+ changes, \d+ indexer tasks?\), \d+ s so far",
                        describe(shown[-1]))


def test_an_up_to_date_index_reports_nothing(slow_db):
    wait_for_view_index(slow_db, 'slow', 'v')
    seen = []
    # A poll far longer than a query of an up-to-date index takes on any machine.
    wait_for_view_index(slow_db, 'slow', 'v', on_progress=seen.append, poll_seconds=30)
    assert seen == []


def test_a_limit_gives_up_while_the_server_goes_on_building(slow_db, proxied):
    proxy, url = proxied
    gave_up = []
    with proxy.holding(VIEW_PATH, until=lambda: gave_up):  # (and the wait's query held)
        with pytest.raises(IndexNotReady, match='still being built'):
            wait_for_view_index(CouchDB(url), 'slow', 'v', poll_seconds=0.05, limit_seconds=0.2)
        gave_up.append(True)
    assert proxy.held == 1
    wait_for_view_index(slow_db, 'slow', 'v')
    assert slow_db.view('slow', 'v', stale='ok', limit=0)['total_rows'] == DOCS


def test_a_build_query_cut_off_is_sent_again_by_the_client_policy_alone(slow_db, couch_proxy, db_prefix):
    url = f"{couch_proxy.url}/{db_prefix}"
    couch_proxy.drop_after_bytes, couch_proxy.drop_paths = 5, VIEW_PATH
    couch_proxy.drop_count = 2
    wait_for_view_index(CouchDB(url, budget=PhaseBudget(retries=2, backoff_factor=0.01)), 'slow', 'v')
    assert (couch_proxy.drops, couch_proxy.count('GET', VIEW_PATH)) == (2, 3)
    couch_proxy.drop_count = 2
    with pytest.raises(CouchUnreachable, match='cut off'):
        wait_for_view_index(CouchDB(url, budget=PhaseBudget(retries=1, backoff_factor=0.01)), 'slow', 'v')
    assert couch_proxy.count('GET', VIEW_PATH) == 5  # no retries of its own on top of the policy's


def test_a_build_query_cut_off_for_longer_than_the_budget_waits_while_the_server_answers(
        slow_db, couch_proxy, db_prefix):
    budget = PhaseBudget(give_up_after=0.3, backoff_factor=0.1, backoff_jitter=0)
    db = CouchDB(f"{couch_proxy.url}/{db_prefix}", budget=budget)
    couch_proxy.fail_status, couch_proxy.fail_paths = 401, '_active_tasks'  # as CouchDB to a non-admin
    couch_proxy.drop_after_bytes, couch_proxy.drop_paths = 5, VIEW_PATH
    couch_proxy.drop_count = 4  # re-sent after 0.1, 0.2, 0.4 and 0.8 s: 1.5 s of failing queries
    wait_for_view_index(db, 'slow', 'v', poll_seconds=0.05)
    assert couch_proxy.drops == 4 and couch_proxy.failures == 1
    assert couch_proxy.count('GET', rf'^/{db_prefix}$') > 4  # what kept the budget fresh


def test_a_missing_view_is_not_found(source_db):
    with pytest.raises(CouchNotFound):
        wait_for_view_index(source_db, 'nope', 'v', poll_seconds=0.05)


def test_progress_of_a_clusters_indexers_is_summed_over_this_databases_shards():
    # Rows as CouchDB 3 lists them: one indexer per shard being built.
    tasks = [
        {'type': 'indexer', 'database': 'shards/00000000-7fffffff/cchq.1700000000', 'design_document':
         '_design/all_docs', 'changes_done': 300, 'total_changes': 1000, 'progress': 30},
        {'type': 'indexer', 'database': 'shards/80000000-ffffffff/cchq.1700000000', 'design_document':
         '_design/all_docs', 'changes_done': 500, 'total_changes': 1000, 'progress': 50},
        {'type': 'indexer', 'database': 'shards/80000000-ffffffff/cchq__users.1700000001',
         'design_document': '_design/all_docs', 'changes_done': 9, 'total_changes': 10},
        {'type': 'indexer', 'database': 'shards/00000000-7fffffff/cchq.1700000000',
         'design_document': '_design/users', 'changes_done': 9, 'total_changes': 10},
        {'type': 'view_compaction', 'database': 'shards/00000000-7fffffff/cchq.1700000000',
         'design_document': '_design/all_docs', 'changes_done': 1, 'total_changes': 10},
    ]
    assert indexer_progress(tasks, 'cchq', 'all_docs') == (800, 2000, 2)
    assert indexer_progress([dict(tasks[0], database='cchq')], 'cchq', 'all_docs') == (300, 1000, 1)
    assert indexer_progress(tasks, 'other', 'all_docs') == (None, None, 0)
    progress = indexing.IndexProgress('all_docs', 'by_doc_type', 42.4, 800, 2000, 2)
    assert describe(progress) == ('all_docs/by_doc_type: 40% (800 of 2000 changes, 2 indexer tasks), '
                                  '42 s so far')


def test_reports_are_throttled_per_wait():
    said = []
    say = throttled(lambda progress, *context: said.append((progress.elapsed, context)), 10)
    for elapsed in (1, 5, 11, 15, 22):
        say(indexing.IndexProgress('d', 'v', elapsed, None, None, 0), 'x')
    say(indexing.IndexProgress('d', 'v', 2, None, None, 0), 'y')  # a new wait for the same view
    assert said == [(1, ('x',)), (11, ('x',)), (22, ('x',)), (2, ('y',))]


# -- the migration phases catch up with the by_doc_type view this way -------------

@pytest.fixture
def behind(migration_dbs, couch_proxy, monkeypatch, caplog):
    """A source whose by_doc_type index is thousands of docs behind, reached
    through the proxy, which holds the view's queries until a wait was logged."""
    source, _target = migration_dbs
    add_docs(source, 'CommCareUser')
    monkeypatch.setattr(indexing, 'POLL_SECONDS', 0.05)
    monkeypatch.setattr(indexing, 'LOG_EVERY_SECONDS', 0)
    caplog.set_level(logging.WARNING, logger='corehq.indexing')
    with couch_proxy.holding(r'/_design/all_docs/_view/by_doc_type', until=lambda: waits_logged(caplog)):
        yield CouchDB(f"{couch_proxy.url}/{source.name}")
    assert couch_proxy.held  # the phase's queries went through the proxy, and waited


def waits_logged(caplog):
    # what follows is the progress each server shows (see describe)
    wait = 'waiting for the index: all_docs/by_doc_type: '
    return [r.getMessage() for r in caplog.records if r.name == 'corehq.indexing' and wait in r.getMessage()]


def test_stats_waits_for_the_view_with_progress(behind, caplog):
    assert stats.doc_type_counts(behind) == {'CommCareUser': DOCS}
    assert waits_logged(caplog)


def test_initial_waits_for_the_view_with_progress(behind, caplog):
    changes, _position = next(scan_doc_type_view(behind, ['CommCareUser'], 10))
    assert len(changes) == 10
    assert waits_logged(caplog)


def test_cleanup_waits_for_the_view_with_progress(behind, caplog):
    page, scanned = next(migrating_leaves(behind, ['CommCareUser'], 10))
    assert (len(page), scanned) == (10, 10)
    assert waits_logged(caplog)
