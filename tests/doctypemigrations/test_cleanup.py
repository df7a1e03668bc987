import subprocess

import pytest
from django.core.management.base import CommandError

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.cleanup import CleanupRefused, CleanupSettings, refuse_if_copying
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.selection import migrating_leaves
from tests.doctypemigrations.data import seed
from corehq.doctypemigrations.conflicts import STAGE, delete_doc_conflicts
from tests.doctypemigrations.helpers import (
    RecordedEvents, initial_in_subprocess, make_conflicted, put_history, rev, run, start_migration,
)
from tests.processes import stop, wait_for_line


def live_ids(db):
    return {row['id'] for row in db.all_docs() if not row['id'].startswith('_design/')}


def migrating_leaf_rows(source):
    return [row for page, _scanned in migrating_leaves(source, users_migration.all_doc_types, 1000)
            for row in page]


def migrated_and_flipped(source):
    migrating, staying = seed(source)
    run('user_db_migration', '--initial')
    return migrating, staying


def test_cleanup_refuses_before_initial(migration_dbs):
    with pytest.raises(CommandError, match='no completed initial'):
        run('user_db_migration', '--cleanup', '--noinput')


def test_cleanup_without_a_terminal_or_noinput_stops(migration_dbs, monkeypatch):
    source, _ = migration_dbs
    migrated_and_flipped(source)
    monkeypatch.setattr('sys.stdin.isatty', lambda: False)
    with pytest.raises(CommandError, match='--noinput'):
        run('user_db_migration', '--cleanup', '--canary-wait', '0')
    assert source.get('m0') is not None


def test_cleanup_deletes_every_migrated_doc_and_leaves_the_rest(migration_dbs):
    source, target = migration_dbs
    migrating, staying = migrated_and_flipped(source)
    output = run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert 'Cleanup complete' in output
    assert live_ids(source) == set(staying)
    # every leaf went, so no conflict resurfaces
    assert source.get('conflicted') is None
    assert live_ids(target) >= set(migrating)
    assert states.get(users_migration.slug).phase == 'cleaned'
    stats = run('user_db_migration', '--stats')
    counts = {line.split()[0]: line.split()[1:] for line in stats.splitlines()[4:]}
    assert counts['CommCareUser'][0] == '0' and int(counts['CommCareUser'][1]) > 0


def test_cleanup_leaves_docs_whose_target_rev_differs(migration_dbs):
    source, target = migration_dbs
    migrated_and_flipped(source)
    m2 = source.get('m2')
    source.put(dict(m2, changed=True))  # never copied: no --continuous ran
    with pytest.raises(CommandError, match='not complete'):
        run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert source.get('m2')['changed'] is True
    assert source.get('m3') is None
    assert not states.get(users_migration.slug).phase == 'cleaned'


def test_dry_run_deletes_nothing(migration_dbs):
    source, _ = migration_dbs
    migrating, _ = migrated_and_flipped(source)
    output = run('user_db_migration', '--cleanup', '--dry-run')
    assert f"Would delete {len(migrating)} docs" in output
    assert all(source.get(doc_id) is not None for doc_id in migrating)


def test_continuous_refuses_after_cleanup(migration_dbs):
    source, _ = migration_dbs
    migrated_and_flipped(source)
    run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    with pytest.raises(CommandError, match='mirror those deletions'):
        run('user_db_migration', '--continuous', '--until-caught-up')


def test_cleanup_refuses_while_a_heartbeat_is_fresh(migration_dbs):
    source, _ = migration_dbs
    migrated_and_flipped(source)
    claims.claim(states.get(users_migration.slug), 'another-host:4242:abc:continuous')
    with pytest.raises(CommandError, match='heartbeat is fresh'):
        run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert source.get('m0') is not None


def test_the_canary_sees_a_follower_this_state_db_does_not_know(migration_dbs, subprocess_env, tmp_path):
    source, target = migration_dbs
    migrated_and_flipped(source)
    # another machine's --continuous, with a state database of its own
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    initial_in_subprocess(subprocess_env, elsewhere)
    other = start_migration(subprocess_env, elsewhere, '--continuous',
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(other, 'All caught up')
        with pytest.raises(CleanupRefused, match='canary'):
            refuse_if_copying(source, target, 'CommCareUser', canary_wait=60)
    finally:
        stop(other)
    refuse_if_copying(source, target, 'CommCareUser', canary_wait=1)


def test_delete_doc_conflicts_keeps_winners(migration_dbs):
    from io import StringIO
    from django.core.management import call_command
    source, _ = migration_dbs
    winner, loser = make_conflicted(source, 'c1', {'doc_type': 'Group'}, {'doc_type': 'Group', 'old': 1})
    make_conflicted(source, 'c2', {'doc_type': 'Domain'})
    with pytest.raises(CommandError, match='no completed initial'):
        call_command('delete_doc_conflicts', stdout=StringIO())
    run('user_db_migration', '--initial')
    out = StringIO()
    call_command('delete_doc_conflicts', stdout=out)
    assert 'deleted 1 losing revisions of 1 conflicted docs' in out.getvalue()
    events = RecordedEvents()
    delete_doc_conflicts(source, users_migration.all_doc_types, page_size=2, events=events)
    assert events.stages == {STAGE: [None, len(migrating_leaf_rows(source)), True]}
    doc = source.get('c1', conflicts='true')
    assert doc['_rev'] == winner and '_conflicts' not in doc
    assert '_conflicts' in source.get('c2', conflicts='true')


@pytest.mark.parametrize('answer, deletes', [('y', True), ('n', False)])
def test_cleanup_asks_first(migration_dbs, monkeypatch, answer, deletes):
    source, _ = migration_dbs
    migrated_and_flipped(source)
    questions = []
    monkeypatch.setattr('sys.stdin.isatty', lambda: True)
    monkeypatch.setattr('builtins.input', lambda q: questions.append(q) or answer)
    if deletes:
        run('user_db_migration', '--cleanup', '--canary-wait', '0')
    else:
        with pytest.raises(CommandError, match='nothing was deleted'):
            run('user_db_migration', '--cleanup', '--canary-wait', '0')
    question = questions[0]
    assert 'CommCareUser-Deleted' in question and source.display_url in question
    assert 'delete_doc_conflicts' in question and question.rstrip().endswith('[y/n]')
    assert (source.get('m0') is None) == deletes


def test_cleanup_finds_docs_written_since_the_view_was_last_read(migration_dbs):
    source, _ = migration_dbs
    migrating, staying = migrated_and_flipped(source)  # --initial read the view
    source.put({'_id': 'late', 'doc_type': 'CommCareUser'})
    run('user_db_migration', '--continuous', '--until-caught-up')
    run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert live_ids(source) == set(staying)


def test_cleanup_without_the_view_reads_the_feed(migration_dbs):
    source, target = migration_dbs
    migrating, staying = migrated_and_flipped(source)
    ddoc = source.get('_design/all_docs')
    source.bulk_docs([{'_id': ddoc['_id'], '_rev': ddoc['_rev'], '_deleted': True}])
    output = run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert 'Cleanup complete' in output
    assert live_ids(source) == set(staying)
    assert source.get('conflicted') is None


def test_docs_edited_or_deleted_in_the_target_after_the_flip_go_too(migration_dbs):
    source, target = migration_dbs
    migrating, staying = migrated_and_flipped(source)
    edited = target.get('m0')
    target.put(dict(edited, username='renamed'))
    gone = target.get('m1')
    target.bulk_docs([{'_id': 'm1', '_rev': gone['_rev'], '_deleted': True}])
    output = run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert 'Cleanup complete' in output
    assert live_ids(source) == set(staying)
    assert target.get('m0')['username'] == 'renamed' and target.get('m1') is None


def test_a_conflict_the_target_lacks_keeps_the_doc(migration_dbs):
    source, _ = migration_dbs
    migrated_and_flipped(source)
    winner = source.get('m0')
    # a losing branch that reached the source after --continuous stopped
    put_history(source, 'm0', [rev(1, '0' * 32)], dict(winner, branch='never copied'))
    assert source.get('m0')['_rev'] == winner['_rev']
    with pytest.raises(CommandError, match='not complete'):
        run('user_db_migration', '--cleanup', '--noinput', '--canary-wait', '0')
    assert len([leaf for leaf in source.open_revs('m0') if 'ok' in leaf]) == 2


def test_a_canary_write_whose_answer_was_lost_is_sent_again_without_a_conflict(proxied_dbs):
    proxy, source, target = proxied_dbs
    migrated_and_flipped(source)
    before = live_ids(source)
    proxy.drop_paths = r'^(PUT|POST) '  # the canary's write comes first: written, but its answer is cut
    proxy.drop_after_bytes = 5
    proxy.drop_count = 1
    refuse_if_copying(source, target, 'CommCareUser', canary_wait=0.5)
    assert proxy.drops == 1
    assert live_ids(source) == before  # and the canary is gone again


def test_copy_missing_sends_attachment_data_a_bounded_amount_at_a_time(proxied_dbs):
    import os
    from corehq.doctypemigrations.cleanup import clean_up
    from tests.doctypemigrations.helpers import attachment, trees
    proxy, source, target = proxied_dbs
    migrated_and_flipped(source)
    photos = {f"p{i:02}": os.urandom(60_000) for i in range(12)}  # 80 kB each as base64
    source.bulk_docs([{'_id': doc_id, 'doc_type': 'CommCareUser',
                       '_attachments': {'photo.jpg': attachment(data)}}
                      for doc_id, data in photos.items()])  # never copied: no --continuous ran
    proxy.reset()
    result = clean_up(users_migration, source, target,
                      CleanupSettings(copy_missing=True, attachment_bytes=150_000))
    assert result.copied == len(photos) and not result.errors
    # all 12 photos in one _bulk_docs would be about 1 MB; two at a time, 160 kB
    assert 100_000 < proxy.largest_request['_bulk_docs'] < 300_000
    assert all(target.request('GET', f"{doc_id}/photo.jpg").content == data
               for doc_id, data in photos.items())
    assert all(tree['deleted'] for tree in trees(source, list(photos)).values())
