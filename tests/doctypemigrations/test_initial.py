import gzip
import json
import os
import stat

import pytest
from django.core.management.base import CommandError

from corehq.doctypemigrations import diskcheck, dumpfile, following_load, initial, state as states
from corehq.doctypemigrations.errors import NotEnoughDiskSpace
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import run, trees, visible_trees
from tests.doctypemigrations.test_resume import SMALL_PAGES, DieAfterTheDump, Killed, dying_progress
from tests.waiting import wait_for


def test_initial_copies_revision_trees_exactly(migration_dbs):
    source, target = migration_dbs
    migrating, staying = seed(source)
    output = run('user_db_migration', '--initial')
    assert 'Initial migration complete' in output
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
    conflicted = trees(target, ['conflicted'])['conflicted']
    assert len(conflicted['leaves']) == 2 and not conflicted['deleted']


def test_attachments_arrive_byte_for_byte(migration_dbs):
    source, target = migration_dbs
    seed(source)
    run('user_db_migration', '--initial')
    original = source.request('GET', 'with-attachment/photo.bin').content
    copied = target.request('GET', 'with-attachment/photo.bin').content
    assert copied == original == bytes(range(256)) * 4


def test_non_migrating_and_design_docs_stay_behind(migration_dbs):
    source, target = migration_dbs
    _, staying = seed(source)
    target_ddocs = {r['id']: r['value']['rev']
                    for r in target.all_docs(startkey='_design/', endkey='_design0')}
    run('user_db_migration', '--initial')
    assert all(tree is None for tree in trees(target, staying).values())
    after = {r['id']: r['value']['rev'] for r in target.all_docs(startkey='_design/', endkey='_design0')}
    assert after == target_ddocs


def test_initial_records_the_seq_before_the_dump_and_refuses_a_second_run(migration_dbs):
    source, target = migration_dbs
    seed(source)
    seq_before = source.update_seq()
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    assert states.original_seq(state) == seq_before
    assert states.latest_checkpoint(state) == seq_before
    with pytest.raises(CommandError, match='already complete.*--continuous'):
        run('user_db_migration', '--initial')


def test_dump_file_is_private_names_the_migration_and_is_gzip_after_its_header(migration_dbs):
    source, _ = migration_dbs
    migrating, _ = seed(source)
    out = run('user_db_migration', '--initial', '--keep-dump')
    assert 'Kept user_db_migration.log' in out
    mode = stat.S_IMODE(os.stat('user_db_migration.log').st_mode)
    assert mode == 0o600
    with open('user_db_migration.log', 'rb') as f:
        header = f.readline()
        compressed = f.read()
    assert b'"slug":"user_db_migration"' in header and source.name.encode() in header
    assert json.loads(header)['format'] == 'doctype-migration-dump/2'
    dumped = [json.loads(line) for line in gzip.decompress(compressed).splitlines()]  # what zcat shows
    assert {doc['_id'] for doc in dumped} == set(migrating)
    assert len(compressed) < sum(len(json.dumps(doc)) for doc in dumped) / 2


def test_the_dump_is_removed_once_the_load_is_complete(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source)
    out = run('user_db_migration', '--initial')
    assert 'Removed user_db_migration.log' in out
    assert not os.path.exists('user_db_migration.log')
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
    with pytest.raises(CommandError, match='already complete'):
        run('user_db_migration', '--initial')
    assert not os.path.exists('user_db_migration.log')


def test_a_doc_refused_by_the_target_is_reported_and_initial_stays_incomplete(migration_dbs):
    source, target = migration_dbs
    seed(source)
    target.put({'_id': '_design/refuse', 'validate_doc_update':
                "function (doc) { if (doc._id === 'm3') { throw({forbidden: 'no m3 here'}); } }"})
    with pytest.raises(CommandError, match=r'(?s)refused.*m3.*no m3 here'):
        run('user_db_migration', '--initial')
    assert not states.initial_complete(states.get(users_migration.slug))
    assert target.get('m4') is not None


def test_the_dump_stays_while_a_refusal_remains_and_the_retry_reads_the_refused_line(migration_dbs):
    source, target = migration_dbs
    seed(source, n=60)
    refuse = target.put({'_id': '_design/refuse', 'validate_doc_update':
                         "function (doc) { if (doc._id === 'm33') { throw({forbidden: 'not m33'}); } }"})
    with pytest.raises(CommandError, match='m33'):
        run('user_db_migration', '--initial', '--page-size', '7')
    [refusal] = states.refusals(states.get(users_migration.slug))
    at, index = dumpfile.split_position(refusal.line_position)
    assert index > 0  # a line inside a gzip member, not at its start
    [(raw, _at)] = dumpfile.read_lines_at('user_db_migration.log', [refusal.line_position])
    assert json.loads(raw)['_id'] == 'm33'
    with pytest.raises(CommandError, match='m33'):
        run('user_db_migration', '--initial')
    assert os.path.exists('user_db_migration.log')
    target.bulk_docs([{'_id': '_design/refuse', '_rev': refuse['rev'], '_deleted': True}])
    out = run('user_db_migration', '--initial')
    assert '1 documents refused by an earlier run went in' in out and 'Removed user_db_migration.log' in out
    assert target.get('m33')['username'] == 'user33' and not os.path.exists('user_db_migration.log')


def test_views_on_the_new_db_return_the_migrated_docs(migration_dbs):
    from corehq.apps.groups.models import Group
    from corehq.apps.users.models import CommCareUser
    source, target = migration_dbs
    user = CommCareUser(username='ada', domain='d1')
    user.save()
    Group(name='team', domain='d1', users=[user._id]).save()
    assert target.view('users', 'by_username', key='ada')['rows'] == []
    run('user_db_migration', '--initial')
    assert [r['id'] for r in target.view('users', 'by_username', key='ada')['rows']] == [user._id]
    assert [r['value'] for r in target.view('groups', 'by_user_id', key=user._id)['rows']] == ['team']
    counts = {tuple(r['key']): r['value']
              for r in target.view('all_docs', 'by_doc_type', group_level=1)['rows']}
    assert counts == {('CommCareUser',): 1, ('Group',): 1}


@pytest.mark.pouchdb_only("a server that filters by selector (CouchDB 2+) reads the winner's live leaves "
                          "instead, as the view does")
def test_initial_without_the_view_scans_the_feed_and_copies_deleted_leaves_too(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source)
    drop_the_doc_type_view(source)
    run('user_db_migration', '--initial')
    assert trees(target, migrating) == trees(source, migrating)
    assert list(trees(target, ['deleted-leaf'])['deleted-leaf']['leaves'].values()).count(True) == 1


def drop_the_doc_type_view(db):
    ddoc = db.get('_design/all_docs')
    db.bulk_docs([{'_id': ddoc['_id'], '_rev': ddoc['_rev'], '_deleted': True}])


def test_a_cold_start_copies_the_docs_the_view_would_and_no_tombstone(migration_dbs):
    """Without the by_doc_type view (the first migration of a big database)
    --initial reads the feed, filtered by the server where it can: it copies
    the live docs of the migrating types with their live leaves, and no doc
    whose winner is a tombstone, even one that kept its body and doc_type."""
    source, target = migration_dbs
    migrating, staying = seed(source)
    made = source.put({'_id': 'tombstone-with-body', 'doc_type': 'CommCareUser', 'username': 'gone'})
    source.bulk_docs([{'_id': 'tombstone-with-body', '_rev': made['rev'], '_deleted': True,
                       'doc_type': 'CommCareUser', 'username': 'gone'}])
    drop_the_doc_type_view(source)
    run('user_db_migration', '--initial')
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
    assert set(visible_trees(target, staying + ['tombstone-with-body']).values()) == {None}


@pytest.mark.couchdb_only("pouchdb-server's _selector filter crashes it: it is never asked there")
def test_a_cold_start_has_the_server_filter_the_feed_by_doc_type(proxied_dbs):
    proxy, source, target = proxied_dbs
    migrating, staying = seed(source, n=50)
    drop_the_doc_type_view(source)
    proxy.record_bodies = r'^POST /[^/]+/_changes\?'
    run('user_db_migration', '--initial')
    selected = [body for body in proxy.bodies if 'filter=_selector' in body.line]
    assert selected and all(json.loads(body.body)['selector']['doc_type']['$in'] == sorted(
        users_migration.all_doc_types) for body in selected)
    assert visible_trees(target, migrating) == visible_trees(source, migrating)


def test_a_deleted_leaf_comes_along_with_the_docs_next_change(migration_dbs):
    source, target = migration_dbs
    seed(source)
    run('user_db_migration', '--initial')
    doc = source.get('deleted-leaf')
    source.put(dict(doc, touched=True))
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert trees(target, ['deleted-leaf']) == trees(source, ['deleted-leaf'])


# -- the disk check ---------------------------------------------------------------

def test_a_dump_that_would_not_fit_is_refused_before_anything_is_written(migration_dbs):
    source, _ = migration_dbs
    seed(source)
    with pytest.raises(CommandError, match=r"needs about [\d.]+ kB \(\d+ bytes\) and .* has 1.0 kB "
                                           r"\(1000 bytes\) free: .*--dump-file PATH.*--skip-disk-check"):
        run('user_db_migration', '--initial', '--assume-free-bytes', '1000')
    assert states.get(users_migration.slug) is None
    assert os.listdir('.') == []
    out = run('user_db_migration', '--initial', '--assume-free-bytes', '1000', '--skip-disk-check')
    assert 'Initial migration complete' in out


@pytest.mark.parametrize('view', [True, False])
def test_the_estimate_is_near_the_real_dump_size(migration_dbs, view):
    source, _ = migration_dbs
    seed(source, n=300)
    source.bulk_docs([{'_id': f"big{i}", 'doc_type': 'CommCareUser', 'notes': os.urandom(300).hex()}
                      for i in range(200)])
    if not view:
        ddoc = source.get('_design/all_docs')
        source.bulk_docs([{'_id': ddoc['_id'], '_rev': ddoc['_rev'], '_deleted': True}])
    estimate = diskcheck.estimate_dump_size(users_migration, source)
    run('user_db_migration', '--initial', '--keep-dump')
    actual = os.path.getsize('user_db_migration.log')
    assert 0.7 * actual < estimate < 1.5 * actual


def test_a_resumed_dump_needs_only_what_is_left_and_a_load_needs_no_space(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source, n=300)
    whole = diskcheck.estimate_dump_size(users_migration, source) * diskcheck.SPACE_MARGIN

    def run_initial(*args, **kwargs):
        return initial.run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, *args, **kwargs)

    with pytest.raises(Killed):
        run_initial(dying_progress(20, 'Dumping'))
    dumped = states.get(users_migration.slug).dump_offset
    with pytest.raises(NotEnoughDiskSpace):
        run_initial(free_bytes=whole - dumped - 200)
    with pytest.raises(Killed):  # the dump completes, the load does not
        run_initial(DieAfterTheDump(), free_bytes=whole - dumped + 200)
    run_initial(free_bytes=0)
    assert visible_trees(target, migrating) == visible_trees(source, migrating)


def test_free_space_of_twice_the_source_file_needs_no_estimate(migration_dbs, monkeypatch):
    source, _ = migration_dbs
    seed(source)
    file_size = diskcheck._file_size(source.info())  # CouchDB 3: sizes.file; pouchdb-server: disk_size
    assert file_size > 0
    estimated = []
    real_estimate = diskcheck.estimate_dump_size
    monkeypatch.setattr(diskcheck, 'estimate_dump_size',
                        lambda *args: estimated.append(1) or real_estimate(*args))
    diskcheck.check_free_space(users_migration, source, 'dump.log', free_bytes=2 * file_size)
    assert estimated == []
    diskcheck.check_free_space(users_migration, source, 'dump.log', free_bytes=2 * file_size - 1)
    assert estimated == [1]


def test_a_load_batch_split_while_rate_limited_keeps_exact_positions():
    from corehq.couch import PhaseBudget
    budget = PhaseBudget()
    budget.rate_limited()  # what the client does on a 429: batches halve
    lines = [(f"line{i}".encode(), 7 * dumpfile.LINE_SLOTS + i) for i in range(10)]
    parts = list(following_load._smaller_while_limited([(lines, dumpfile.position(9))], budget))
    assert [part for part, _after in parts] == [lines[:5], lines[5:]]
    # a load killed after the first part resumes at the line after it, the last part's end is the batch's
    assert [after for _part, after in parts] == [lines[5][1], dumpfile.position(9)]
    assert list(following_load._smaller_while_limited([(lines, 1)], PhaseBudget())) == [(lines, 1)]


def test_the_load_follows_the_dump_while_it_reads_on(migration_dbs):
    """The dump is held after its second recorded page until the target holds
    docs: the load wrote them from what the dump had recorded, with the dump
    unfinished. A load that waited for the whole dump would never write them,
    and this run would end on the wait's limit."""
    source, target = migration_dbs
    migrating, _ = seed(source, n=60)
    seen_loading = []

    class HoldTheDump(Events):
        pages = 0

        def advanced(self, name, n):
            if name == 'Dumping':
                self.pages += 1
                if self.pages == 2:
                    wait_for(lambda: target.info()['doc_count'] > 0, what='the load writing during the dump')
                    seen_loading.append(states.get(users_migration.slug).phase)

    result = initial.run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, HoldTheDump())
    assert seen_loading == [states.DUMPING]
    assert result.docs_loaded == result.docs_dumped == len(migrating) + 1
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
