"""Commit 4 of the guide, end to end, with real processes: a writer changes
users and groups through the whole sequence (the main db before the flip, the
new db after it), the pillow and --continuous are killed at random points and
restarted, and the pillow is moved to the new database instead of reset.
It must end with the index a rebuild from scratch makes, having processed
fewer changes after the move than a reset would."""
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from corehq.couch.errors import CouchHTTPError
from corehq.demo.realistic import written_despite_conflicts
from tests.doctypemigrations.helpers import initial_in_subprocess, manage_py
from tests.pillows.helpers import start_manage, stop

SLUG = 'user_db_migration'


class Conflict(Exception):
    """A _bulk_docs write the server refused with a conflict."""


def is_conflict(error):
    return isinstance(error, Conflict) or (isinstance(error, CouchHTTPError) and error.status == 409)


class Writer(threading.Thread):
    """Creates, renames, deactivates, retypes and deletes users and groups in
    whichever database ``self.db`` is (the flip swaps it). A write that meets a
    409 is made again on the doc read again, as an app does: after the flip,
    --continuous may have just copied a newer revision of the doc from the
    source into the target (see the README's "After the flip")."""

    def __init__(self, db, seed):
        super().__init__(daemon=True)
        self.db = db
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.writes = 0
        self.changes = 0  # changes written to the database (one step may write two)
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                self.step(self.db)
                self.writes += 1
                self.changes += 1
                time.sleep(0.01)
        except Exception as e:  # reported by the test, not lost in a thread
            self.error = e

    def step(self, db):
        doc_id = f"w{self.rng.randrange(120)}"
        doc = db.get(doc_id)
        action = self.rng.choice(['edit'] * 5 + ['delete', 'retype', 'brief'])
        if action == 'brief':  # made and deleted at once: --continuous may only ever see its tombstone
            made = db.put({'_id': f"brief{self.writes}", 'doc_type': 'CommCareUser', 'username': 'b'})
            deleted(db, [{'_id': f"brief{self.writes}", '_rev': made['rev'], '_deleted': True}])
            self.changes += 1
            return
        written_despite_conflicts(lambda current: self.write(db, doc_id, current, action),
                                  lambda: db.get(doc_id), is_conflict, doc)

    def write(self, db, doc_id, doc, action):
        if doc is None:
            doc_type = self.rng.choice(['CommCareUser', 'WebUser', 'Group'])
            db.put({'_id': doc_id, 'doc_type': doc_type, 'username': doc_id, 'name': doc_id, 'domain': 'd'})
        elif action == 'delete':
            deleted(db, [{'_id': doc_id, '_rev': doc['_rev'], '_deleted': True}])
        elif action == 'retype':
            db.put(dict(doc, doc_type='CommCareUser-Deleted'))
        else:
            db.put(dict(doc, doc_type='CommCareUser', username=f"{doc_id}-{self.writes}",
                        is_active=self.rng.random() < 0.8))

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)
        assert self.error is None, self.error


def deleted(db, tombstones):
    """``_bulk_docs`` answers a refusal in its body: a conflict is raised as a PUT's 409 is."""
    for error in db.bulk_docs(tombstones):
        raise Conflict(error) if error.get('error') == 'conflict' else AssertionError(error)


def wait_for(condition, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.2)


def runs_now(tmp_path, pid):
    """Whether process ``pid`` holds the user_index pillow's claim."""
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        row = conn.execute("SELECT runner FROM pillows_pillowcheckpoint WHERE name = 'user_index'").fetchone()
    return bool(row and row[0] and f":{pid}:" in row[0])


def index(tmp_path):
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT doc_id, doc_type, domain, name, active FROM pillows_userindexentry")}


def processed(tmp_path):
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        return conn.execute("SELECT processed FROM pillows_pillowcheckpoint WHERE name = 'user_index'"
                            ).fetchone()[0]


class Runs:
    """The background processes of the test, each stopped in the end, pass or fail."""

    def __init__(self, env, cwd, rng):
        self.env, self.cwd, self.rng = env, cwd, rng
        self.procs = []

    def start(self, *args, env=None):
        proc = start_manage(env or self.env, self.cwd, *args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def kill_at_random(self, proc, *restart_args, env=None, times=2):
        """SIGKILL ``proc`` after a random while, restart it, ``times`` over; returns the last one."""
        for _ in range(times):
            time.sleep(self.rng.uniform(0.3, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = self.start(*restart_args, env=env)
        return proc

    def stop_all(self):
        for proc in self.procs:
            stop(proc, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize('seed', [1, 2])
def test_the_moved_pillow_misses_nothing_and_does_less_than_a_reset(
        migration_dbs, subprocess_env, tmp_path, seed):
    source, target = migration_dbs
    rng = random.Random(seed)
    source.bulk_docs([{'_id': f"u{i}", 'doc_type': 'CommCareUser', 'username': f"u{i}", 'domain': 'd'}
                      for i in range(300)] + [{'_id': f"x{i}", 'doc_type': 'Domain'} for i in range(50)])
    flipped = dict(subprocess_env, USERS_GROUPS_DB='users')
    writer = Writer(source, seed)
    runs = Runs(subprocess_env, tmp_path, rng)
    pillow_args = ('run_pillow', 'user_index', '--batch-size', '20')
    continuous_args = ('run_doctype_migration', SLUG, '--continuous', '--page-size', '20')
    try:
        writer.start()
        initial_in_subprocess(subprocess_env, tmp_path)  # the state tables, then --initial
        source.put({'_id': 'after-initial', 'doc_type': 'Group', 'name': 'marker', 'domain': 'd'})
        pillow = runs.kill_at_random(runs.start(*pillow_args), *pillow_args)
        continuous = runs.kill_at_random(runs.start(*continuous_args), *continuous_args)
        time.sleep(rng.uniform(1, 3))
        # past the end of the dump, however slow the machine: else the move
        # rightly refuses (the checkpoint is older than the first pair)
        wait_for(lambda: 'after-initial' in index(tmp_path))
        # the pillow running now (restarted by the kills) holds its claim: past its start-up,
        # where a SIGTERM would end it before it can say anything
        wait_for(lambda: runs_now(tmp_path, pillow.pid))
        out = stop(pillow, signal.SIGTERM)  # stopped before the flip's deploy
        assert 'Stopped; checkpoint saved' in out, out
        writer.db = target  # the flip: the app writes to the new database
        time.sleep(rng.uniform(0.5, 2))
        moved = manage_py(flipped, 'move_pillow_checkpoint', 'user_index', SLUG, cwd=tmp_path)
        assert moved.returncode == 0, moved.stderr
        changes_at_move = writer.changes
        pillow = runs.kill_at_random(runs.start(*pillow_args, env=flipped), *pillow_args, env=flipped)
        time.sleep(rng.uniform(0.5, 2))
        writer.stop()
        stop(pillow, signal.SIGTERM)
        caught_up = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--continuous',
                              '--until-caught-up', cwd=tmp_path, timeout=120) if continuous.poll() else None
        assert caught_up is None or caught_up.returncode == 0
        stop(continuous, signal.SIGTERM)
        # --continuous was never stopped for long: a last catch-up covers its last kill
        last = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--continuous', '--until-caught-up',
                         cwd=tmp_path, timeout=120)
        assert last.returncode == 0, last.stderr
        final = manage_py(flipped, 'run_pillow', 'user_index', '--until-caught-up', cwd=tmp_path)
        assert final.returncode == 0, final.stderr
    finally:
        writer.stopping.set()
        runs.stop_all()
    moved_index, after_move = index(tmp_path), processed(tmp_path)
    rebuild = manage_py(flipped, 'run_pillow', 'user_index', '--rebuild', '--until-caught-up', cwd=tmp_path)
    assert rebuild.returncode == 0, rebuild.stderr
    assert writer.writes > 50 and len(index(tmp_path)) > 250
    assert moved_index == index(tmp_path)
    to_process, reset_at_move = (int(n) for n in re.search(
        r"From there it processes (\d+) changes; a reset would process (\d+)", moved.stdout).groups())
    assert to_process < reset_at_move
    # A pillow reset at the move would have processed the whole new database,
    # then every change written after the move, as the moved one did.
    assert after_move < reset_at_move + writer.changes - changes_at_move
