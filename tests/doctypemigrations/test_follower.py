import threading
import time

import pytest
from django.core.management.base import CommandError

from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.events import Events as PhaseEvents
from corehq.doctypemigrations.follower import ChangesFollower, FollowSettings
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.selection import DocTypeSelection
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import make_conflicted, run, trees, visible, visible_trees

FAST = FollowSettings(batch_size=100, batch_seconds=5.0, max_wait=2.0, heartbeat_ms=500)


def follower(source, target, events=None, settings=FAST):
    state = states.get(users_migration.slug)
    return ChangesFollower(source, target, DocTypeSelection(users_migration.all_doc_types), state,
                           settings=settings, events=events)


def catch_up(source, target):
    follower(source, target).run(until_caught_up=True)


def all_ids(db):
    return [row['id'] for row in db.all_docs() if not row['id'].startswith('_design/')]


def test_continuous_refuses_before_initial(migration_dbs):
    with pytest.raises(CommandError, match='run --initial first'):
        run('user_db_migration', '--continuous')


def test_changes_after_initial_are_copied_and_deletions_mirrored(migration_dbs):
    source, target = migration_dbs
    migrating, staying = seed(source)
    run('user_db_migration', '--initial')
    # updates, new docs, a new conflict, a deletion, a deleted leaf
    m0 = source.get('m0')
    source.put(dict(m0, username='renamed'))
    source.put({'_id': 'new-user', 'doc_type': 'WebUser'})
    make_conflicted(source, 'new-conflict', {'doc_type': 'UserRole'}, {'doc_type': 'UserRole', 'x': 1})
    m1 = source.get('m1')
    source.bulk_docs([{'_id': 'm1', '_rev': m1['_rev'], '_deleted': True}])
    source.put({'_id': 'new-domain', 'doc_type': 'Domain'})
    output = run('user_db_migration', '--continuous', '--until-caught-up')
    assert 'All caught up!' in output and 'saved seq' in output
    ids = migrating + ['new-user', 'new-conflict']
    assert visible_trees(target, ids) == visible_trees(source, ids)
    assert target.get('m0')['username'] == 'renamed'
    assert target.get('m1') is None and trees(target, ['m1'])['m1']['deleted']
    assert target.get('new-domain') is None


def test_doc_type_change_out_of_the_migration_deletes_the_target_copy(migration_dbs):
    source, target = migration_dbs
    source.bulk_docs([{'_id': 'u1', 'doc_type': 'CommCareUser'}, {'_id': 'u2', 'doc_type': 'WebUser'}])
    run('user_db_migration', '--initial')
    u1 = source.get('u1')
    source.put(dict(u1, doc_type='SomethingElse'))
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert target.get('u1') is None
    assert target.get('u2') is not None
    # and back in: the source's revision wins over the target's own tombstone
    u1 = source.get('u1')
    source.put(dict(u1, doc_type='CommCareUser'))
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert target.get('u1')['_rev'] == source.get('u1')['_rev']


def test_deletion_of_a_doc_never_migrated_is_not_copied(migration_dbs):
    source, target = migration_dbs
    source.put({'_id': 'x', 'doc_type': 'Domain'})
    run('user_db_migration', '--initial')
    x = source.get('x')
    source.bulk_docs([{'_id': 'x', '_rev': x['_rev'], '_deleted': True}])
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert trees(target, ['x']) == {'x': None}


def test_checkpoint_advances_and_a_rerun_resumes_from_it(migration_dbs, feed_replays):
    source, target = migration_dbs
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    first = states.latest_checkpoint(state)
    source.put({'_id': 'a', 'doc_type': 'Group'})
    run('user_db_migration', '--continuous', '--until-caught-up')
    second = states.latest_checkpoint(state)
    # from the checkpoint on, the feed holds nothing new (on CouchDB a feed's seq
    # is not spelled as the db info's update_seq, so the two are not compared)
    assert second != first and len(source.changes(since=second)['results']) <= feed_replays
    output = run('user_db_migration', '--continuous', '--until-caught-up')
    # nothing new to read (but what the feed repeats)
    assert 'saved seq' not in output or int(output.split()[1]) <= feed_replays


def test_erase_continuous_progress_resets_to_the_original_seq(migration_dbs, feed_replays):
    source, target = migration_dbs
    source.put({'_id': 'a', 'doc_type': 'Group'})
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    source.put({'_id': 'b', 'doc_type': 'Group'})
    run('user_db_migration', '--continuous', '--until-caught-up')
    run('user_db_migration', '--erase-continuous-progress')
    assert states.latest_checkpoint(state) == states.original_seq(state)
    output = run('user_db_migration', '--continuous', '--until-caught-up')
    assert 1 <= int(output.split()[1]) <= 1 + feed_replays  # "Read N changes": b again


def test_commits_in_batches_of_the_batch_size(migration_dbs, feed_replays):
    source, target = migration_dbs
    run('user_db_migration', '--initial')
    source.bulk_docs([{'_id': f"n{i}", 'doc_type': 'WebUser'} for i in range(250)])
    committed = []

    class Events(PhaseEvents):
        def committed(self, changes_read, seq):
            committed.append(changes_read)

    follower(source, target, Events()).run(until_caught_up=True)
    assert committed[:2] == [100, 100]
    assert 50 <= committed[2] <= 50 + 3 * feed_replays and len(committed) == 3


def test_live_writers_during_initial_and_continuous_end_equal(migration_dbs):
    source, target = migration_dbs
    seed(source, n=200)
    stop = threading.Event()
    written = set()

    def writer(prefix):
        i = 0
        while not stop.is_set() and i < 400:
            doc_id = f"{prefix}{i % 40}"
            current = source.get(doc_id)
            if current is None:
                source.put({'_id': doc_id, 'doc_type': 'CommCareUser', 'n': i})
            elif i % 7 == 0:
                source.bulk_docs([{'_id': doc_id, '_rev': current['_rev'], '_deleted': True}])
            elif i % 11 == 0:
                source.put(dict(current, doc_type='NotMigrating'))
            else:
                source.put(dict(current, n=i, doc_type='CommCareUser'))
            written.add(doc_id)
            i += 1

    threads = [threading.Thread(target=writer, args=(p,)) for p in ('w', 'v')]
    for t in threads:
        t.start()
    run('user_db_migration', '--initial')
    catcher = follower(source, target)
    deadline = time.monotonic() + 60
    catcher.run(stop=lambda: not any(t.is_alive() for t in threads) or time.monotonic() > deadline)
    stop.set()
    for t in threads:
        t.join()
    catch_up(source, target)
    ids = sorted(set(all_ids(source)) | written)
    source_trees, target_trees = trees(source, ids), trees(target, ids)
    for doc_id in ids:
        src, tgt = source_trees[doc_id], target_trees[doc_id]
        live_migrating = (src and not src['deleted']
                          and source.get(doc_id)['doc_type'] in users_migration.all_doc_types)
        if live_migrating:
            # A doc that left the migration and came back keeps the target's own
            # tombstone as a deleted leaf: winner, conflicts and deleted state match.
            assert visible(tgt) == visible(src), doc_id
        elif tgt is not None:
            assert tgt['deleted'], doc_id  # gone from the target too


def edit_many_times(db, doc_id, times):
    for n in range(1, times + 1):
        db.put(dict(db.get(doc_id), n=n))


def test_a_thousand_changes_to_one_doc(migration_dbs):
    source, target = migration_dbs
    source.put({'_id': 'busy', 'doc_type': 'CommCareUser', 'n': 0})
    run('user_db_migration', '--initial')
    edit_many_times(source, 'busy', 1000)
    output = run('user_db_migration', '--continuous', '--until-caught-up')
    assert target.get('busy')['n'] == 1000
    assert target.get('busy')['_rev'] == source.get('busy')['_rev']
    # Past revs_limit the copy is a new branch, and the source no longer knows
    # the old leaf: it cannot tell a stale copy from an edit made in the
    # target, so the leaf stays and is named, never silently deleted.
    old_leaf = [r for r, deleted in trees(target, ['busy'])['busy']['leaves'].items()
                if not deleted and r != source.get('busy')['_rev']]
    assert len(old_leaf) == 1 and old_leaf[0].startswith('1-')
    assert f"busy: target-only leaf ({old_leaf[0]})" in output


def test_the_stemmed_history_repair_keeps_an_edit_made_in_the_target(migration_dbs):
    source, target = migration_dbs
    source.put({'_id': 'busy', 'doc_type': 'CommCareUser', 'n': 0})
    run('user_db_migration', '--initial')
    edited = target.put(dict(target.get('busy'), edited_in_target=True))['rev']  # after the flip
    edit_many_times(source, 'busy', 1001)  # old code, still writing to the source
    output = run('user_db_migration', '--continuous', '--until-caught-up')
    leaves = trees(target, ['busy'])['busy']['leaves']
    assert leaves[edited] is False, "the target's own edit must stay live"
    assert leaves[source.get('busy')['_rev']] is False
    assert f"busy: target-only leaf ({edited})" in output
