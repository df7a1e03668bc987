"""move_pillow_checkpoint: a stopped pillow goes from the migration's source to
its target at the latest recorded pair it had processed, and misses nothing."""
import pytest
from django.core.management.base import CommandError

from corehq.couch import CouchDB
from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.pillows import checkpoints, runner
from corehq.pillows.pillow import get_pillow
from tests.doctypemigrations.helpers import run, server_feed  # noqa: F401 (a fixture)
from tests.pillows.helpers import flip, index, move, pillow, rebuilt_index

SLUG = users_migration.slug
USER_INDEX = get_pillow('user_index')


def write_users(db, prefix, n):
    db.bulk_docs([{'_id': f"{prefix}{i}", 'doc_type': 'CommCareUser', 'username': f"{prefix}{i}",
                   'domain': 'd'} for i in range(n)])


def pillow_until(db, stop, batch_size=5):
    """Run the pillow on ``db`` in pages of ``batch_size`` changes until ``stop()``."""
    runner.run_pillow(USER_INDEX, db, stop=stop,
                      settings=runner.DEFAULT_SETTINGS._replace(batch_size=batch_size, max_wait=0.5))


def test_the_move_takes_the_latest_pair_the_pillow_had_processed(
        migration_dbs, settings, server_feed):  # noqa: F811 (the fixture)
    source, target = migration_dbs
    write_users(source, 'a', 20)
    run(SLUG, '--initial')
    write_users(source, 'b', 20)
    run(SLUG, '--continuous', '--until-caught-up')
    write_users(source, 'c', 20)
    run(SLUG, '--continuous', '--until-caught-up')  # a pair ahead of where the pillow will stop
    # past the pair of --initial, short of the others
    pillow_until(source, stop=lambda: 'b4' in index())
    # seqs are opaque: a seq is placed by the changes the server has after it (each doc here is
    # written once, so fewer changes after is later)

    def behind(seq):
        return len(server_feed.rows_after(source, seq))
    pillow_behind = behind(checkpoints.seq(checkpoints.get('user_index')))
    flip(settings)
    write_users(target, 'after-the-flip', 3)  # the app writes to the target directly now
    out = move('user_index', SLUG)
    assert 'Moved pillow user_index' in out
    moved_to = checkpoints.seq(checkpoints.get('user_index'))
    pairs = states.usable_pairs(states.get(SLUG))
    chosen = next(pair for pair in pairs if states.decode_seq(pair.target_seq) == moved_to)
    later = pairs[pairs.index(chosen) + 1:]
    assert behind(states.decode_seq(chosen.source_seq)) >= pillow_behind  # never a later one
    assert later and all(behind(states.decode_seq(pair.source_seq)) < pillow_behind for pair in later)
    pillow('user_index', '--until-caught-up')
    assert index() == rebuilt_index()
    assert 'after-the-flip0' in index() and 'c19' in index()


def test_a_doc_the_target_never_got_leaves_the_index(migration_dbs, settings):
    source, target = migration_dbs
    write_users(source, 'a', 5)
    run(SLUG, '--initial')
    write_users(source, 'b', 10)  # so that the pillow stops well past a pair (a replayed row counts)
    run(SLUG, '--continuous', '--until-caught-up')
    write_users(source, 'brief', 1)
    pillow('user_index', '--until-caught-up')  # indexes brief0
    brief = source.get('brief0')
    source.bulk_docs([{'_id': 'brief0', '_rev': brief['_rev'], '_deleted': True}])
    run(SLUG, '--continuous', '--until-caught-up')  # reads only its tombstone: never copied
    assert 'brief0' in index() and target.get('brief0') is None
    flip(settings)
    out = move('user_index', SLUG)
    assert 'their deletion went to its sink' in out
    pillow('user_index', '--until-caught-up')
    assert 'brief0' not in index()
    assert index() == rebuilt_index()


def test_refused_while_the_pillow_runs(migration_dbs, settings):
    source, _target = migration_dbs
    pillow('user_index', '--until-caught-up')
    run(SLUG, '--initial')
    flip(settings)
    checkpoint = checkpoints.get('user_index')
    owner = claims.new_owner('run_pillow')
    claims.claim(checkpoint, owner)
    try:
        with pytest.raises(CommandError, match=r"Pillow 'user_index' is running \(run_pillow, pid \d+\): "
                                               r"stop it first"):
            move('user_index', SLUG)
    finally:
        claims.release(checkpoint, owner)


def test_refused_before_the_flip(migration_dbs):
    pillow('user_index', '--until-caught-up')
    run(SLUG, '--initial')
    with pytest.raises(CommandError, match=r"The settings still make 'users' .* do the flip first"):
        move('user_index', SLUG)


def test_refused_for_a_pillow_that_does_not_follow_the_source(migration_dbs, settings, couch_settings):
    run(SLUG, '--initial')
    other = CouchDB(f"{couch_settings.db_url(None)}_other")  # with the credentials (source.url has none)
    other.create()
    try:
        runner.run_pillow(USER_INDEX, other, until_caught_up=True)
    finally:
        other.delete_database()
    flip(settings)
    with pytest.raises(CommandError, match=r"follows .*_other., not .*, the source of .user_db_migration"):
        move('user_index', SLUG)


def test_refused_for_a_pillow_older_than_the_first_pair(migration_dbs, settings):
    source, _target = migration_dbs
    write_users(source, 'a', 30)
    pillow_until(source, stop=lambda: 'a3' in index())  # stopped before the migration even started
    run(SLUG, '--initial')
    run(SLUG, '--continuous', '--until-caught-up')
    flip(settings)
    with pytest.raises(CommandError, match=r"older than the first seq pair .* `./manage.py run_pillow "
                                           r"user_index --rebuild` .* is the only safe answer"):
        move('user_index', SLUG)
    assert checkpoints.get('user_index').db_name == source.name  # left as it was


def test_a_pillow_that_never_ran_and_one_moved_already(migration_dbs, settings):
    source, target = migration_dbs
    run(SLUG, '--initial')
    flip(settings)
    with pytest.raises(CommandError, match=r"has never run, so there is nothing to move"):
        move('user_index', SLUG)
    pillow('user_index', '--until-caught-up')  # on the target, from its start
    assert 'nothing to move' in move('user_index', SLUG)


def test_a_pair_recorded_after_the_pillow_stopped_is_not_used(migration_dbs, settings):
    """--continuous lagging at the flip records a pair the pillow had processed,
    but with a target seq after the app's first direct writes to the target."""
    source, target = migration_dbs
    write_users(source, 'a', 10)
    run(SLUG, '--initial')
    write_users(source, 'b', 10)
    pillow('user_index', '--until-caught-up')  # then stopped, before the flip
    flip(settings)
    write_users(target, 'direct', 2)  # the app, after the deploy
    run(SLUG, '--continuous', '--until-caught-up')  # catches up only now: its pair is after 'direct'
    move('user_index', SLUG)
    pillow('user_index', '--until-caught-up')
    assert 'direct0' in index() and 'b9' in index()
    assert index() == rebuilt_index()
