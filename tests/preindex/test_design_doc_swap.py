"""A changed design doc is built under a temporary id and then copied over the
real one, so its old version keeps answering while the new index builds."""
import re
from io import StringIO

import pytest
from django.core.management import call_command

from corehq.couch import indexing
from corehq.couch import CouchDB
from corehq.couch.indexing import wait_for_view_index
from corehq.couchsettings import CouchSettingsHelper
from corehq.preindex.registry import DesignDocPlacement
from corehq.preindex.sync import CREATED, UNCHANGED, UPDATED, sync_database

DOC_ID, TMP_ID = '_design/swap', '_design/swap-tmp'
OLD = {'language': 'javascript', 'views': {'numbers': {'map': "function (doc) { emit(doc.n, null); }"}}}
NEW = {'language': 'javascript',
       'views': {'numbers': {'map': "function (doc) { emit('new-' + doc.n, null); }"}}}
# Enough docs that building an index takes seconds on pouchdb-server, far
# longer than the polls of these tests.
DOCS = 3000
# A query answered from the index as it is, never building it.
NO_BUILD = {'stale': 'ok'}


@pytest.fixture
def db(source_db):
    for start in range(0, DOCS, 1000):
        docs = [{'_id': f"doc-{n:05d}", 'doc_type': 'Thing', 'n': n} for n in range(start, start + 1000)]
        assert source_db.bulk_docs(docs) == []
    return source_db


def placement(ddoc):
    return DesignDocPlacement(None, 'swapapp', DOC_ID, dict(ddoc, _id=DOC_ID))


def first_key(db, ddoc_name='swap'):
    return db.view(ddoc_name, 'numbers', limit=1)['rows'][0]['key']


def ever_written(db, doc_id):
    # Deleted docs too: the feed keeps their tombstones.
    return db.changes_for_ids([doc_id]) != []


def test_the_old_version_answers_while_the_new_one_builds_under_a_temporary_id(db, couch_proxy):
    assert sync_database(db, [placement(OLD)]) == {DOC_ID: CREATED}
    seen = []

    def during_the_build(_placement, progress):
        real = db.get(DOC_ID)
        seen.append((progress.ddoc, real['views'], first_key(db), db.get(TMP_ID) is not None))

    # The new index's queries are held until the build has been looked at twice.
    with couch_proxy.holding(r'/_design/swap-tmp/_view/', until=lambda: len(seen) >= 2):
        outcomes = sync_database(CouchDB(f"{couch_proxy.url}/{db.name}"), [placement(NEW)],
                                 on_progress=during_the_build, poll_seconds=0.05)
    assert outcomes == {DOC_ID: UPDATED}
    assert len(seen) >= 2 and couch_proxy.held >= 1
    for building, real_views, key, tmp_exists in seen:
        assert building == 'swap-tmp'
        assert real_views == OLD['views']
        assert key == 0  # the old view's row, from the old index
        assert tmp_exists
    assert db.get(DOC_ID)['views'] == NEW['views']
    assert first_key(db) == 'new-0'
    assert db.get(TMP_ID) is None
    assert ever_written(db, TMP_ID)


def test_an_unchanged_design_doc_is_neither_written_nor_rebuilt(db):
    sync_database(db, [placement(NEW)])
    rev = db.get(DOC_ID)['_rev']
    progress = []
    outcomes = sync_database(db, [placement(NEW)], on_progress=lambda *a: progress.append(a), poll_seconds=1)
    assert outcomes == {DOC_ID: UNCHANGED}
    assert db.get(DOC_ID)['_rev'] == rev
    assert not ever_written(db, TMP_ID)
    assert progress == []


def test_a_temporary_doc_left_by_a_stopped_run_is_reused_or_removed(db):
    sync_database(db, [placement(OLD)])
    # stopped before its copy: the temporary doc holds the new version
    db.put(dict(NEW, _id=TMP_ID))
    assert sync_database(db, [placement(NEW)]) == {DOC_ID: UPDATED}
    assert db.get(TMP_ID) is None
    # stopped after its copy: the real id already holds it
    db.put(dict(NEW, _id=TMP_ID))
    rev = db.get(DOC_ID)['_rev']
    assert sync_database(db, [placement(NEW)]) == {DOC_ID: UNCHANGED}
    assert db.get(TMP_ID) is None
    assert db.get(DOC_ID)['_rev'] == rev


def test_no_build_saves_a_changed_design_doc_in_place(db):
    sync_database(db, [placement(OLD)], build=False)
    assert sync_database(db, [placement(NEW)], build=False) == {DOC_ID: UPDATED}
    assert db.get(DOC_ID)['views'] == NEW['views']
    assert not ever_written(db, TMP_ID)


def test_the_server_shares_one_index_between_identical_design_docs(db):
    """What the copy relies on, shown on the server the tests run against
    (pouchdb-server keys an index by its views' map and reduce, CouchDB by
    their signature): a query that must not build finds the index whole."""
    db.put(dict(NEW, _id='_design/first'))
    wait_for_view_index(db, 'first', 'numbers')
    db.put(dict(NEW, _id='_design/second'))
    unbuilt = db.view('second', 'numbers', limit=1, **NO_BUILD)
    assert (unbuilt['total_rows'], unbuilt['rows'][0]['key']) == (DOCS, 'new-0')


def test_sync_couch_views_shows_progress_of_a_long_build(couch_settings, couch_proxy, settings, monkeypatch):
    monkeypatch.setattr(indexing, 'POLL_SECONDS', 0.05)
    monkeypatch.setattr(indexing, 'LOG_EVERY_SECONDS', 0)
    sync_output()
    main = CouchDB(couch_settings.db_url(None))
    docs = [{'_id': f"user-{n:05d}", 'doc_type': 'CommCareUser', 'username': f"u{n}", 'domain': 'd'}
            for n in range(1000)]
    assert main.bulk_docs(docs) == []
    stale = main.get('_design/users')
    stale['views'] = {'old': {'map': 'function (doc) {}'}}
    main.put(stale)
    # 'building' where the server lists no indexer (pouchdb-server), else the share indexed (CouchDB,
    # which builds every view of the design doc at once: the first view waited for is named)
    progress = re.compile(r"_design/users \(users\): users-tmp/\w+: (building|\d+%)")
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(
        f"{couch_proxy.url}/{main.name}", settings.COUCHDB_APPS, [settings.NEW_USERS_GROUPS_DB])
    out = StringIO()
    # The new index's queries are held until its progress was shown.
    with couch_proxy.holding(r'/_design/users-tmp/_view/', until=lambda: progress.search(out.getvalue())):
        call_command('sync_couch_views', stdout=out)
    output = out.getvalue()
    assert progress.search(output) and couch_proxy.held >= 1, output
    assert '_design/users (users): updated' in output
    assert main.get('_design/users-tmp') is None
    assert len(main.view('users', 'by_username', limit=5)['rows']) == 5


def sync_output(*args):
    out = StringIO()
    call_command('sync_couch_views', *args, stdout=out)
    return out.getvalue()
