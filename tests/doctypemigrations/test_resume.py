"""Killed at any point, a rerun ends with the same target."""
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations import dumpfile, state as states
from corehq.doctypemigrations.models import LOADING
from corehq.couch import CouchDB, CouchUnreachable, PhaseBudget
from corehq.doctypemigrations.errors import CorruptDumpFile
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.initial import InitialSettings, run_initial
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.conftest import bind_couchdbkit
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import (
    initial_in_subprocess, manage_py, run, start_migration, state_db_ready, visible_trees,
)
from tests.doctypemigrations.test_follower import follower
from tests.processes import kill_when, stop

SMALL_PAGES = InitialSettings(page_size=10, batch_bytes=4096, batch_docs=10)


class Killed(Exception):
    pass


class StepHook(Events):
    """Events for run_initial that act at recorded steps: each ``update``
    comes right after a page or batch is recorded in the state, with
    ``desc`` the stage ('Dumping' or 'Loading')."""

    desc = None

    def advanced(self, name, n):
        self.desc = name
        self.update(n)

    def update(self, n=1):
        raise NotImplementedError


def dying_progress(after, phase=None):
    """Events that 'kill' the run after ``after`` recorded steps (of the
    stage named ``phase``, or of any)."""
    steps = {'n': 0}

    class Bar(StepHook):
        def update(self, n=1):
            if phase in (None, self.desc):
                steps['n'] += 1
            if steps['n'] >= after:
                raise Killed()

    return Bar()


def bulk_seed(db, n):
    db.bulk_docs([{'_id': f"u{i:05}", 'doc_type': 'CommCareUser' if i % 3 else 'Domain', 'n': i}
                  for i in range(n)])


@pytest.mark.parametrize('kill_after, phase',
                         [(1, 'Dumping'), (5, 'Dumping'), (1, 'Loading'), (4, 'Loading')])
def test_interrupted_initial_resumes_to_the_same_target(migration_dbs, kill_after, phase):
    source, target = migration_dbs
    migrating, _ = seed(source, n=40)
    with pytest.raises(Killed):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES,
                    dying_progress(kill_after, phase))
    state = states.get(users_migration.slug)
    assert not states.initial_complete(state)
    if phase == 'Dumping':
        with open('dump.log', 'ab') as f:
            f.write(half_a_member())  # what a kill between write and record leaves
    with open('dump.log', 'rb') as f:
        recorded = f.read(state.dump_offset)
    result = run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, keep_dump=True)
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
    if phase == 'Dumping':
        assert result.dump_resumed_at == state.dump_offset
    else:
        # the load follows the dump: killed while loading, the dump may have been running still
        assert result.load_resumed_at == state.load_position
        assert result.dump_resumed_at == (None if state.phase == LOADING else state.dump_offset)
    with open('dump.log', 'rb') as f:
        assert f.read(state.dump_offset) == recorded  # resumed, not started over
    assert dumped_ids('dump.log') == sorted(migrating + ['conflicted'])  # its two leaves, each once
    assert states.get(users_migration.slug).docs_dumped == len(migrating) + 1


class DieAfterTheDump(Events):
    """Killed at the first load acknowledgement recorded once the dump is
    complete (the load's last batches are acknowledged only then)."""

    def advanced(self, name, n):
        if name == 'Loading' and states.get(users_migration.slug).phase == LOADING:
            raise Killed()


def half_a_member():
    member = dumpfile.compress(b''.join(b'{"_id": "half-written", "n": %d}\n' % i for i in range(50)))
    return member[:len(member) // 2]


def dumped_ids(path):
    header = dumpfile.read_header(path)[1]
    return sorted(json.loads(raw)['_id'] for lines, _end in dumpfile.read_batches(
        path, dumpfile.position(header), 10 ** 9, 10 ** 9) for raw, _at in lines)


def test_a_damaged_block_is_named_by_its_byte_and_a_new_dump_recovers(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source, n=40)
    recorded = []

    class RecordThenDie(StepHook):
        def update(self, n=1):
            recorded.append(states.get(users_migration.slug).dump_offset)
            if len(recorded) == 3:
                raise Killed()

    with pytest.raises(Killed):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, RecordThenDie())
    with open('dump.log', 'r+b') as f:
        f.seek((recorded[0] + recorded[1]) // 2)  # inside the second page's gzip member
        f.write(b'\0\0\0\0')
    with pytest.raises(CorruptDumpFile, match=rf"dump.log is damaged at byte {recorded[0]}: .*Move the file"):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES)
    assert not states.initial_complete(states.get(users_migration.slug))
    os.rename('dump.log', 'dump.log.bad')
    run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES)
    assert visible_trees(target, migrating) == visible_trees(source, migrating)


def test_a_truncated_dump_file_is_a_clear_error_and_a_new_dump_recovers(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source, n=40)
    with pytest.raises(Killed):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, DieAfterTheDump())
    state = states.get(users_migration.slug)
    assert state.phase == LOADING and state.load_position < dumpfile.position(state.dump_offset - 25)
    with open('dump.log', 'r+b') as f:
        f.truncate(state.dump_offset - 25)
    with pytest.raises(CorruptDumpFile, match=r'damaged at byte \d+: .*cut off'):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES)
    os.rename('dump.log', 'dump.log.bad')
    run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES)
    assert visible_trees(target, migrating) == visible_trees(source, migrating)


def test_a_dump_file_of_another_migration_is_refused(migration_dbs):
    source, target = migration_dbs
    seed(source, n=10)
    with pytest.raises(Killed):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, dying_progress(1))
    with open('dump.log', 'rb') as f:
        lines = f.read().split(b'\n', 1)
    with open('dump.log', 'wb') as f:
        f.write(lines[0].replace(b'"slug":"user_db_migration"', b'"slug":"other"') + b'\n' + lines[1])
    with pytest.raises(CommandError, match='written for another migration'):
        run('user_db_migration', '--initial', '--dump-file', 'dump.log')


def wait_for(condition, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize('phase', ['dump', 'load'])
def test_sigkill_during_initial_then_rerun(migration_dbs, subprocess_env, tmp_path, phase):
    source, target = migration_dbs
    bulk_seed(source, 3000)
    state_db_ready(subprocess_env, tmp_path)
    proc = start_migration(subprocess_env, tmp_path, '--initial', '--page-size', '20',
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump = tmp_path / 'user_db_migration.log'
    try:
        if phase == 'dump':
            kill_when(proc, lambda: dump.exists() and dump.stat().st_size > 20000)
        else:  # the load has recorded progress
            kill_when(proc, lambda: dump.exists() and load_recorded(tmp_path))
    finally:
        stop(proc, signal.SIGKILL)
    assert target.info()['doc_count'] < 2000  # really killed midway
    recorded_phase, dump_offset, load_position = recorded_progress(tmp_path)
    # the load follows the dump: killed while loading, the dump may have been running still
    assert recorded_phase in ({'dumping'} if phase == 'dump' else {'dumping', 'loading'})
    assert dumpfile.read_header(str(dump))[0]['compression'] == 'gzip'
    recorded = dump.read_bytes()[:dump_offset]
    rerun = manage_py(subprocess_env, 'run_doctype_migration', 'user_db_migration', '--initial',
                      '--keep-dump', cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    if recorded_phase == 'dumping':
        assert f"Resumed the dump at byte {dump_offset} " in rerun.stdout
    if phase == 'load':
        assert f"Resumed the load at {dumpfile.describe_position(load_position)} " in rerun.stdout
    assert dump.read_bytes()[:dump_offset] == recorded
    ids = [f"u{i:05}" for i in range(3000) if i % 3]
    assert dumped_ids(str(dump)) == ids  # what the killed run left past its offset is gone
    assert visible_trees(target, ids) == visible_trees(source, ids)


def recorded_progress(tmp_path):
    """(phase, dump offset, load position) in the state database of ./manage.py runs."""
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        return conn.execute("SELECT phase, dump_offset, load_position FROM "
                            "doctypemigrations_doctypemigration").fetchone()


def load_recorded(tmp_path):
    """Whether the load has recorded progress; no, while the state database is
    locked by a write of the run (stopped in the middle of it by kill_when)."""
    try:
        with sqlite3.connect(tmp_path / 'state.sqlite3', timeout=0) as conn:
            row = conn.execute("SELECT load_position FROM doctypemigrations_doctypemigration").fetchone()
    except sqlite3.OperationalError:
        return False
    return row is not None and row[0] > 0


def test_an_uncompressed_dump_of_an_earlier_version_is_refused_and_a_new_dump_recovers(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source, n=40)
    with pytest.raises(Killed):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, dying_progress(2, 'Loading'))
    header, header_end = dumpfile.read_header('dump.log')
    batches = dumpfile.read_batches('dump.log', dumpfile.position(header_end), 10 ** 9, 10 ** 9)
    lines = [raw for batch, _end in batches for raw, _at in batch]
    del header['compression']
    with open('dump.log', 'wb') as f:  # as the earlier version wrote it
        f.write(json.dumps(dict(header, format='doctype-migration-dump/1')).encode() + b'\n')
        f.write(b''.join(raw + b'\n' for raw in lines))
    with pytest.raises(CommandError, match=r'format doctype-migration-dump/1 \(uncompressed, written by '
                                           r'an earlier version\).*move it away \(or delete it\) and rerun '
                                           r'--initial'):
        run('user_db_migration', '--initial', '--dump-file', 'dump.log')
    os.rename('dump.log', 'dump.log.v1')
    out = run('user_db_migration', '--initial', '--dump-file', 'dump.log')
    assert 'Initial migration complete' in out and not os.path.exists('dump.log')
    assert visible_trees(target, migrating) == visible_trees(source, migrating)


@pytest.mark.slow
def test_sigkill_during_continuous_then_rerun(migration_dbs, subprocess_env, tmp_path):
    source, target = migration_dbs
    initial_in_subprocess(subprocess_env, tmp_path)
    proc = start_migration(subprocess_env, tmp_path, '--continuous',
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for i in range(60):
            source.bulk_docs([{'_id': f"c{i}-{j}", 'doc_type': 'WebUser'} for j in range(20)])
            if i == 30:
                wait_for(lambda: target.info()['doc_count'] > 50)
                proc.send_signal(signal.SIGKILL)
    finally:
        stop(proc, signal.SIGKILL)
    resumed = manage_py(subprocess_env, 'run_doctype_migration', 'user_db_migration', '--continuous',
                        '--until-caught-up', cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    ids = [f"c{i}-{j}" for i in range(60) for j in range(20)]
    assert visible_trees(target, ids) == visible_trees(source, ids)


@pytest.fixture
def own_dbs(own_server, settings, db, tmp_path, monkeypatch):
    """users_migration's databases on a server the test may stop and restart."""
    helper = CouchSettingsHelper(f"{own_server.url}/commcarehq", settings.COUCHDB_APPS, ['users'])
    settings.COUCH_SETTINGS_HELPER = helper
    bind_couchdbkit(helper.get_couchdb_databases())
    monkeypatch.chdir(tmp_path)
    call_command('sync_couch_views', verbosity=0)
    return CouchDB(helper.db_url(None)), CouchDB(helper.db_url('users'))


def restart_later(server, delay, down_for):
    def bounce():
        time.sleep(delay)
        server.stop()
        time.sleep(down_for)
        server.start()
    thread = threading.Thread(target=bounce)
    thread.start()
    return thread


@pytest.mark.slow
def test_continuous_survives_the_server_going_away(own_server, own_dbs, caplog):
    run('user_db_migration', '--initial')
    budget = PhaseBudget(give_up_after=None)  # what --continuous runs with: it never gives up
    source, target = (CouchDB(db.url, budget=budget) for db in own_dbs)
    source.bulk_docs([{'_id': f"before{i}", 'doc_type': 'Group'} for i in range(50)])
    bouncer = restart_later(own_server, delay=1.0, down_for=2.0)
    runner = follower(source, target)
    with caplog.at_level('WARNING'):
        runner.run(stop=lambda: not bouncer.is_alive() and _wrote_after(source))
    bouncer.join()
    runner.run(until_caught_up=True)
    assert any('Retrying' in record.getMessage() for record in caplog.records)  # the outage was met
    ids = [f"before{i}" for i in range(50)] + [f"after{i}" for i in range(50)]
    assert visible_trees(target, ids) == visible_trees(source, ids)


def _wrote_after(source):
    if source.get('after0') is None:
        source.bulk_docs([{'_id': f"after{i}", 'doc_type': 'Group'} for i in range(50)])
    return True


@pytest.mark.slow
@pytest.mark.parametrize('phase', ['Dumping', 'Loading'])
def test_initial_survives_the_server_going_away_by_rerunning(own_server, own_dbs, phase):
    source, target = own_dbs
    bulk_seed(source, 3000)
    bounced = []

    class BounceOnce(StepHook):
        """Stops the server at the first step of ``phase``, restarts it after a while."""
        def update(self, n=1):
            if self.desc == phase and not bounced:
                own_server.stop()
                bounced.append(restart_later(own_server, delay=3.0, down_for=0))

    # a phase that gives up after 1 s of failing, shorter than the outage, so the run really fails
    budget = PhaseBudget(give_up_after=1)
    short_lived = CouchDB(source.url, budget=budget), CouchDB(target.url, budget=budget)
    with pytest.raises(CouchUnreachable):
        run_initial(users_migration, *short_lived, 'dump.log', SMALL_PAGES._replace(page_size=20),
                    BounceOnce())
    bounced[0].join()
    run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES)
    ids = [f"u{i:05}" for i in range(3000) if i % 3]
    assert visible_trees(target, ids) == visible_trees(source, ids)


def test_ctrl_c_during_continuous_saves_the_checkpoint(migration_dbs, subprocess_env, tmp_path):
    source, target = migration_dbs
    initial_in_subprocess(subprocess_env, tmp_path)
    proc = start_migration(subprocess_env, tmp_path, '--continuous', stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        source.bulk_docs([{'_id': f"x{i}", 'doc_type': 'WebUser'} for i in range(10)])
        wait_for(lambda: target.get('x9') is not None)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        stop(proc, signal.SIGKILL)
    assert proc.returncode == 0, output
    last_line = output.strip().splitlines()[-1]
    assert last_line.startswith('Stopped; checkpoint saved at seq ')
    saved = manage_py(subprocess_env, 'shell', '-c',
                      'from corehq.doctypemigrations import state as states; '
                      'from corehq.doctypemigrations.migrator_instances import users_migration as m; '
                      's = states.get(m.slug); '
                      'print(states.latest_checkpoint(s), s.heartbeat_at)', cwd=tmp_path)
    seq, heartbeat = saved.stdout.split()[-2:]
    assert last_line.endswith(seq) and heartbeat == 'None'  # the heartbeat stops with it


def test_a_doc_deleted_at_a_page_boundary_does_not_hide_the_next_one(migration_dbs):
    source, target = migration_dbs
    source.bulk_docs([{'_id': f"p{i:02}", 'doc_type': 'CommCareUser'} for i in range(30)])

    class DeleteAtFirstPage(StepHook):
        """After the first page is dumped, its last doc is deleted from the source."""
        def update(self, n=1):
            if self.desc == 'Dumping' and n and source.get('p09') is not None:
                p09 = source.get('p09')
                source.bulk_docs([{'_id': 'p09', '_rev': p09['_rev'], '_deleted': True}])

    run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, DeleteAtFirstPage())
    assert source.get('p09') is None
    assert [i for i in range(30) if target.get(f"p{i:02}") is None] == []  # p10 most of all


def test_an_initial_that_raises_has_no_write_of_its_own_still_in_flight(proxied_dbs):
    """The load writes from a thread of its own: when --initial ends, even by an
    error, its writes have been answered, so what the operator does next
    (drop the target, look at it) meets no late write of this run."""
    proxy, source, target = proxied_dbs
    seed(source, n=200)
    proxy.latency = 0.3

    class DieWhileAWriteIsInFlight(StepHook):
        def update(self, n=1):
            if proxy.in_flight_at('_bulk_docs'):
                raise Killed()

    with pytest.raises(Killed):
        run_initial(users_migration, source, target, 'dump.log', SMALL_PAGES, DieWhileAWriteIsInFlight())
    assert proxy.in_flight_at('_bulk_docs') == 0
