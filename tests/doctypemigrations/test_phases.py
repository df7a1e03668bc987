"""Issue 10: no path from any phase boundary to lost or hidden data.

Each test takes an operator's sequence (rerun, interruption, wrong order, two
runs at once) against the real server and checks what the live target keeps.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations import cleanup, state as states
from corehq.doctypemigrations.djangomigrations import STATE_MIGRATION, why_not_complete
from corehq.doctypemigrations.migrator import Migrator
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.models import CLEANING
from tests.conftest import PROJECT_DIR
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import (
    initial_in_subprocess, make_conflicted, manage_py, put_history, rev, run, start_migration, trees,
)
from tests.processes import stop, wait_for_line
from tests.waiting import wait_for

SLUG = users_migration.slug


def live_ids(db):
    return {row['id'] for row in db.all_docs() if not row['id'].startswith('_design/')}


def state():
    return states.get(SLUG)


def state_row(tmp_path):
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        return conn.execute("SELECT phase, heartbeat_at, runner FROM "
                            "doctypemigrations_doctypemigration").fetchone()


# 1. A fresh clone works ----------------------------------------------------------

def test_manage_py_works_on_a_fresh_clone(couch_settings, source_db, target_db, tmp_path):
    clone = tmp_path / 'clone'
    tracked = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                             cwd=PROJECT_DIR, capture_output=True, check=True).stdout.decode().split('\0')
    for name in filter(None, tracked):
        if (PROJECT_DIR / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_DIR / name, clone / name)
    assert not (clone / 'var').exists()
    env = {k: v for k, v in os.environ.items()
           if k not in ('DATABASE_URL', 'UNIT_TESTING', 'CCHQ_IS_FRESH_INSTALL')}
    env.update(COUCH_SERVER_URL=couch_settings.server_url, COUCH_DATABASE_NAME=couch_settings.main_db_name)

    def manage(*args):
        return subprocess.run([sys.executable, 'manage.py', *args], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=120)

    usage = manage('run_doctype_migration')
    assert usage.returncode == 1 and 'with with the following slugs' in usage.stderr
    blocked = manage('migrate')
    assert 'unable to open database file' not in blocked.stderr
    assert blocked.returncode == 1 and 'Traceback' not in blocked.stderr
    assert "has not finished its initial phase" in blocked.stderr
    assert manage('migrate', 'doctypemigrations', STATE_MIGRATION).returncode == 0
    assert (clone / 'var' / 'state.sqlite3').exists()


# 2. Cleanup's deletions never reach the target ---------------------------------------

def straggler(source, doc_id):
    """A revision old code writes to the source after the flip."""
    return source.put(dict(source.get(doc_id), written_after_the_flip=True))['rev']


def test_after_an_unfinished_cleanup_continuous_and_erase_are_refused(migration_dbs):
    source, target = migration_dbs
    migrating, staying = seed(source)
    run(SLUG, '--initial')
    straggler(source, 'm2')
    with pytest.raises(CommandError, match='not complete'):
        run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    assert state().phase == CLEANING
    for phase in (('--continuous', '--until-caught-up'), ('--erase-continuous-progress',)):
        with pytest.raises(CommandError, match='cleanup of .* has started'):
            run(SLUG, *phase)
    # the target, live since the flip, still has every migrated doc
    assert live_ids(target) >= set(migrating)


def test_the_hint_for_docs_left_behind_points_to_copy_missing(migration_dbs):
    source, target = migration_dbs
    migrating, staying = seed(source)
    run(SLUG, '--initial')
    new_rev = straggler(source, 'm2')
    edited = target.put(dict(target.get('m3'), renamed_in_target=True))['rev']  # the live site
    late = straggler(source, 'm3')
    out = run(SLUG, '--cleanup', '--dry-run')
    assert 'Rerun --cleanup with --copy-missing' in out and '  m2' in out
    assert 'is --continuous caught up' not in out  # the old hint led back to the unsafe phase
    out = run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0', '--copy-missing')
    assert 'Cleanup complete' in out and 'Copied the missing revisions of 2 docs' in out
    assert live_ids(source) == set(staying)
    assert target.get('m2')['_rev'] == new_rev  # the straggler reached the target
    m3 = trees(target, ['m3'])['m3']['leaves']
    assert m3[edited] is False and m3[late] is False  # a conflict, nothing overwritten


def test_a_running_follower_stops_before_writing_once_cleanup_started(migration_dbs, subprocess_env,
                                                                      tmp_path):
    source, target = migration_dbs
    source.bulk_docs([{'_id': f"u{i}", 'doc_type': 'CommCareUser'} for i in range(5)])
    initial_in_subprocess(subprocess_env, tmp_path)
    follower = start_migration(subprocess_env, tmp_path, '--continuous',
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(follower, 'All caught up')
        # another shell records the cleanup's phase (as --cleanup does before deleting)
        shell = manage_py(subprocess_env, 'shell', '-c',
                          'from corehq.doctypemigrations import state; '
                          'state.set_phase(state.get("user_db_migration"), "cleaning")', cwd=tmp_path)
        assert shell.returncode == 0, shell.stderr
        u0 = source.get('u0')
        source.bulk_docs([{'_id': 'u0', '_rev': u0['_rev'], '_deleted': True}])
        output, _ = follower.communicate(timeout=60)
    finally:
        stop(follower, signal.SIGKILL)
    assert follower.returncode == 1 and 'stopped without writing' in output
    assert target.get('u0') is not None


# 3. A refused doc is never forgotten -------------------------------------------------

def test_a_refusal_survives_an_interrupted_load_and_keeps_the_gate_closed(proxied_dbs, monkeypatch):
    proxy, source, target = proxied_dbs
    seed(source)
    proxy.inject_doc_errors = {'m5': ('forbidden', 'not on my watch')}
    real_save = states.save_load_progress

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C right after the refused batch was recorded

    monkeypatch.setattr(states, 'save_load_progress', save_then_die)
    with pytest.raises(CommandError, match='Stopped by SIGINT'):
        run(SLUG, '--initial', '--page-size', '200')
    monkeypatch.setattr(states, 'save_load_progress', real_save)
    with pytest.raises(CommandError, match=r'(?s)1 documents were refused.*m5.*forbidden'):
        run(SLUG, '--initial')
    assert not states.initial_complete(state())
    helper = CouchSettingsHelper(source.url.rsplit('/', 1)[0] + '/' + source.name, [], ['users'])
    assert 'refused by the target' in why_not_complete(users_migration, helper)
    proxy.inject_doc_errors = None
    out = run(SLUG, '--initial')
    assert '1 documents refused by an earlier run went in' in out and 'complete' in out
    assert target.get('m5') is not None and why_not_complete(users_migration, helper) is None


# 4. Cleanup reports only what it did -------------------------------------------------

@pytest.mark.parametrize('target_has_it', [False, True])
def test_a_leaf_that_appears_during_cleanup(migration_dbs, monkeypatch, target_has_it):
    source, target = migration_dbs
    migrating, staying = seed(source)
    run(SLUG, '--initial')
    late = rev(2, '9' * 32)
    real_delete = cleanup.delete_revs
    done = []

    def late_writer_then_delete(db, id_revs):
        # just before m0's deletion: pages are cleaned several at once
        if not done and any(doc_id == 'm0' for doc_id, _rev in id_revs):
            done.append(1)
            root = source.get('m0', revs='true')
            history = [late, f"1-{root['_revisions']['ids'][-1]}"]
            for db_ in ([source, target] if target_has_it else [source]):
                put_history(db_, 'm0', history, {'doc_type': 'CommCareUser', 'late': True})
        return real_delete(db, id_revs)

    monkeypatch.setattr(cleanup, 'delete_revs', late_writer_then_delete)
    if target_has_it:
        out = run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
        assert 'Cleanup complete' in out and f"Deleted {len(migrating)} docs" in out
        assert source.get('m0') is None
    else:
        out = ''
        with pytest.raises(CommandError, match='not complete'):
            out = run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
        out = call_output(SLUG, '--cleanup', '--dry-run')
        assert source.get('m0', rev=late)['late'] is True
        assert state().phase == CLEANING
        assert "Would delete 0 docs" in out


@pytest.mark.parametrize('times', [1, 2])
def test_a_doc_written_again_after_its_deletion_is_deleted_again_and_counted_once(
        migration_dbs, monkeypatch, times):
    """Something still writes to the source during the cleanup: a doc comes
    back live after its deletion, in a revision the target holds too, before
    one final pass or two."""
    source, target = migration_dbs
    migrating, _ = seed(source)
    run(SLUG, '--initial')
    root = source.get('m0')['_rev']
    real_settle = cleanup.copies.settle
    written = []

    def write_m0_again_then_settle(db, max_wait):
        # before a final pass, after the pass before it
        if len(written) < times:
            assert source.get('m0') is None
            branch = rev(2, str(len(written) + 8) * 32)
            for db_ in (source, target):
                put_history(db_, 'm0', [branch, root], {'doc_type': 'CommCareUser', 'back': True})
            written.append(branch)
        return real_settle(db, max_wait)

    monkeypatch.setattr(cleanup.copies, 'settle', write_m0_again_then_settle)
    out = run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    assert len(written) == times and f"Deleted {len(migrating)} docs" in out and 'Cleanup complete' in out
    assert "1 docs were written to the source again after their deletion" in out
    assert out.count('  m0\n') == 1
    assert source.get('m0') is None and target.get('m0')['back'] is True


def call_output(*args):
    from io import StringIO
    out = StringIO()
    call_command('run_doctype_migration', *args, stdout=out)
    return out.getvalue()


def test_changed_during_cleanup_is_reported_and_not_counted(migration_dbs, monkeypatch):
    source, target = migration_dbs
    migrating, _ = seed(source)
    run(SLUG, '--initial')
    real_delete = cleanup.delete_revs
    done = []

    def late_conflict_then_delete(db, id_revs):
        if not done:
            done.append(1)
            put_history(source, 'm0', [rev(1, '7' * 32)], {'doc_type': 'CommCareUser', 'late': True})
        return real_delete(db, id_revs)

    monkeypatch.setattr(cleanup, 'delete_revs', late_conflict_then_delete)
    from io import StringIO
    out = StringIO()
    with pytest.raises(CommandError, match='not complete'):
        call_command('run_doctype_migration', SLUG, '--cleanup', '--noinput', '--canary-wait', '0',
                     stdout=out)
    text = out.getvalue()
    assert f"Deleted {len(migrating) - 1} docs" in text
    assert '1 docs changed during the cleanup' in text and '  m0' in text


# 6. One follower at a time -------------------------------------------------------------

def test_a_second_follower_is_refused_until_the_first_is_gone(migration_dbs, subprocess_env, tmp_path):
    source, target = migration_dbs
    initial_in_subprocess(subprocess_env, tmp_path)
    first = start_migration(subprocess_env, tmp_path, '--continuous',
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(first, 'All caught up')
        second = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--continuous',
                           '--until-caught-up', cwd=tmp_path)
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and 'only one may follow' in second.stderr
        first.kill()  # SIGKILL: no chance to release its claim
        first.wait(timeout=30)
        assert state_row(tmp_path)[2] is not None
        third = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--continuous',
                          '--until-caught-up', cwd=tmp_path)
        assert third.returncode == 0, third.stderr  # a dead pid on this host frees the claim at once
        assert state_row(tmp_path)[2] is None
    finally:
        stop(first, signal.SIGKILL)


def test_the_heartbeat_goes_on_while_the_server_stalls(own_server, subprocess_env, tmp_path):
    subprocess_env['COUCH_SERVER_URL'] = own_server.url
    assert manage_py(subprocess_env, 'sync_couch_views', cwd=tmp_path).returncode == 0
    initial_in_subprocess(subprocess_env, tmp_path)
    follower = start_migration(subprocess_env, tmp_path, '--continuous', '--heartbeat-seconds', '1',
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = own_server.pid()
    try:
        wait_for_line(follower, 'All caught up')
        os.kill(pid, signal.SIGSTOP)  # every request now hangs, the longpoll included
        stalled_at = datetime.now(timezone.utc)

        def beat_at():
            return datetime.fromisoformat(state_row(tmp_path)[1]).replace(tzinfo=timezone.utc)
        # Beats go on: 3 s of them after the stall began, with no request answered since.
        wait_for(lambda: (beat_at() - stalled_at).total_seconds() >= 3, what='a heartbeat 3 s into the stall')
    finally:
        os.kill(pid, signal.SIGCONT)
        stop(follower)


# 7. Checkpoints belong to the databases they describe --------------------------------------

def test_a_changed_main_database_never_reuses_the_state(migration_dbs, settings, couch_url, db_prefix):
    source, target = migration_dbs
    run(SLUG, '--initial')
    recorded = json.loads(state().identity)
    assert recorded['source']['db'] == source.name and recorded['target']['db'] == target.name
    assert recorded['source']['server'] == source.json('GET', server_level=True)['uuid']
    assert 'users' != recorded['target']['db'] and 'None' not in json.dumps(recorded)
    other = CouchSettingsHelper(f"{couch_url}/{db_prefix}_other", settings.COUCHDB_APPS, ['users'])
    for name in (None, 'users'):
        from corehq.couch import CouchDB
        CouchDB(other.db_url(name)).create()
    settings.COUCH_SETTINGS_HELPER = other
    with pytest.raises(CommandError, match=rf"(?s)different migrator.*{db_prefix}_other"):
        run(SLUG, '--continuous', '--until-caught-up')


def test_a_state_from_before_named_databases_is_adopted(migration_dbs):
    run(SLUG, '--initial')
    states.save_progress(state(), fingerprint=users_migration.legacy_fingerprint, identity='')
    run(SLUG, '--continuous', '--until-caught-up')
    assert state().identity and state().fingerprint != users_migration.legacy_fingerprint
    changed = Migrator(SLUG, None, 'users', users_migration.doc_types + ('Extra',))
    states.save_progress(state(), fingerprint=changed.legacy_fingerprint, identity='')
    with pytest.raises(CommandError, match='different migrator'):
        run(SLUG, '--continuous', '--until-caught-up')


# 8. --page-size reaches every phase that pages ------------------------------------------------

def test_page_size_applies_to_every_paging_phase(proxied_dbs):
    proxy, source, target = proxied_dbs
    source.bulk_docs([{'_id': f"u{i:02}", 'doc_type': 'CommCareUser'} for i in range(12)])
    run(SLUG, '--initial', '--page-size', '3')
    source.bulk_docs([{'_id': f"v{i:02}", 'doc_type': 'CommCareUser'} for i in range(12)])
    # 12 new changes for --continuous, 24 docs for the others; 4 a page (each default reads one page)
    for phase, at_least in ((('--continuous', '--until-caught-up'), 3), (('--verify',), 6),
                            (('--cleanup', '--dry-run'), 6)):
        proxy.reset()
        run(SLUG, *phase, '--page-size', '4')
        pages = proxy.count('GET', r'_changes|_view/by_doc_type')
        assert pages >= at_least, (phase, pages)
    proxy.reset()
    call_command('delete_doc_conflicts', SLUG, '--page-size', '5', stdout=open(os.devnull, 'w'))
    assert proxy.count('GET', r'_view/by_doc_type') >= 5


# 9. A doc that leaves the doc types and comes back ------------------------------------------------

def test_a_conflicted_doc_that_leaves_and_comes_back_is_named_and_repairable(migration_dbs):
    source, target = migration_dbs
    winner, loser = make_conflicted(source, 'moved', {'doc_type': 'CommCareUser'},
                                    {'doc_type': 'CommCareUser', 'b': 1})
    run(SLUG, '--initial')
    source.put(dict(source.get('moved'), doc_type='SomethingElse'))
    run(SLUG, '--continuous', '--until-caught-up')
    source.put(dict(source.get('moved'), doc_type='CommCareUser'))
    out = run(SLUG, '--continuous', '--until-caught-up')
    assert f"moved: conflict deleted in target ({loser})" in out and 'delete_doc_conflicts' in out
    with pytest.raises(CommandError, match=r"(?s)conflict deleted in target: the doc left the migration"):
        run(SLUG, '--verify')
    # the documented repair: resolve the conflict in the source, --continuous copies it
    call_command('delete_doc_conflicts', SLUG, stdout=open(os.devnull, 'w'))
    run(SLUG, '--continuous', '--until-caught-up')
    assert 'agree on every migrating doc' in run(SLUG, '--verify')


# 10. The deploy gate reads as an answer ---------------------------------------------------------

def test_the_blocked_deploy_prints_the_explanation_alone(couch_settings, subprocess_env, tmp_path):
    subprocess_env.pop('UNIT_TESTING', None)
    subprocess_env.pop('CCHQ_IS_FRESH_INSTALL', None)
    blocked = manage_py(subprocess_env, 'migrate', cwd=tmp_path)
    assert blocked.returncode == 1
    assert 'Traceback' not in blocked.stderr and 'File "' not in blocked.stderr
    assert (blocked.stderr.startswith('MigrationNotComplete:')
            and "has not finished its initial phase" in blocked.stderr)
