"""--continuous under load: how long a source write takes to show up in the target.

A writer makes ``rate`` changes/s to the source (a third to migrating doc
types, half of them new docs, half updates of docs it wrote before) while an
observer follows the target's ``_changes``. A write of generation g of a doc
counts as arrived when the target first shows that doc at generation >= g: a
follower may skip straight to a later rev, which carries g in its history.
Lag is measured from the source's acknowledgement of the write, since the
follower cannot see a write before it is committed.
"""
import random
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import orjson

from bench.commands import SLUG
from bench.couchclient import Server
from bench.datagen import MIGRATING_TYPES, OTHER_TYPES

TICKS_PER_SECOND = 10      # the rate is written as 10 bulk requests a second
QUIET_WRITES = 20          # writes after the quiet spell, one a second
CAUGHT_UP_TIMEOUT = 300
DRAIN_TIMEOUT = 30         # after the writer stops, how long late writes may take


@dataclass
class Write:
    doc_id: str
    generation: int
    acked_at: float


@dataclass
class LagResult:
    seconds: float
    changes: int
    achieved_rate: float
    measured_writes: int
    unobserved: int
    p50: float
    p95: float
    max: float
    follower_peak_rss_mb: float

    def as_dict(self):
        return dict(self.__dict__)


class TargetObserver(threading.Thread):
    """Follows the target's continuous ``_changes`` and notes when each doc
    generation first appears."""

    def __init__(self, server_url, db_name):
        super().__init__(daemon=True)
        self.server = Server(server_url)
        # A compressed feed would be buffered by the server and arrive late.
        self.server.session.headers['Accept-Encoding'] = 'identity'
        self.db_name = db_name
        self.seen = defaultdict(list)      # doc id -> [(generation, monotonic time)]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error = None

    def run(self):
        try:
            self._follow()
        except Exception as error:  # reported by the caller, not lost in a thread
            if not self.stopping.is_set():
                self.error = error
        finally:
            self.ready.set()

    def _follow(self):
        params = {'feed': 'continuous', 'since': 'now', 'heartbeat': 500, 'style': 'all_docs'}
        response = self.server.request('GET', f"{self.db_name}/_changes", params=params,
                                       stream=True, timeout=(10, 30))
        self.ready.set()
        pending = b''
        try:
            # chunk_size=None hands over each chunk as it arrives: one row is one chunk.
            for chunk in response.iter_content(chunk_size=None):
                if self.stopping.is_set():
                    return
                now = time.monotonic()
                *lines, pending = (pending + chunk).split(b'\n')
                for line in lines:
                    self._note(line, now)
        finally:
            response.close()

    def _note(self, line, now):
        if not line.strip():
            return  # a heartbeat
        row = orjson.loads(line)
        if 'id' not in row:
            return
        generation = max(int(c['rev'].split('-', 1)[0]) for c in row['changes'])
        with self.lock:
            self.seen[row['id']].append((generation, now))

    def arrival(self, write):
        with self.lock:
            times = [t for generation, t in self.seen.get(write.doc_id, ()) if generation >= write.generation]
        return min(times) if times else None

    def stop(self):
        self.stopping.set()


class Writer:
    def __init__(self, db, seed=7):
        self.db = db
        self.rng = random.Random(seed)
        self.mine = {True: [], False: []}   # migrating? -> docs this writer created, current _rev
        self.measured = []          # Write of every migrating change
        self.changes = 0

    def _next_doc(self, index):
        migrating = index % 3 == 0
        mine = self.mine[migrating]
        if mine and self.rng.random() < 0.5:
            doc = mine[-1 - self.rng.randrange(min(len(mine), 2000))]  # recent docs are the hot ones
            doc['edits'] = doc.get('edits', 0) + 1
            return doc
        types = MIGRATING_TYPES if migrating else OTHER_TYPES
        doc = {'_id': f"lag-{uuid.uuid4().hex}", 'doc_type': types[index % len(types)],
               'domain': 'lag-bench', 'notes': 'x' * self.rng.randrange(300, 700)}
        mine.append(doc)
        return doc

    def write_batch(self, size):
        # One doc at most once per batch, or the second edit would conflict.
        batch, ids = [], set()
        while len(batch) < size:
            doc = self._next_doc(self.changes + len(batch))
            if doc['_id'] not in ids:
                ids.add(doc['_id'])
                batch.append(doc)
        revs = {row['id']: row['rev'] for row in self.db.bulk_docs(batch)}
        acked_at = time.monotonic()
        for doc in batch:
            doc['_rev'] = revs[doc['_id']]
            if doc['doc_type'] in MIGRATING_TYPES:
                self.measured.append(Write(doc['_id'], int(doc['_rev'].split('-', 1)[0]), acked_at))
        self.changes += len(batch)

    def run(self, rate, seconds):
        """Hold ``rate`` on an absolute schedule (a slow tick is caught up, not dropped)."""
        per_tick = max(1, round(rate / TICKS_PER_SECOND))
        started = time.monotonic()
        ticks = int(seconds * TICKS_PER_SECOND)
        for tick in range(ticks):
            delay = started + tick / TICKS_PER_SECOND - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.write_batch(per_tick)
        return time.monotonic() - started


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float('nan')
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _wait_for_output(running, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in running.output():
            return
        if running.poll() is not None:
            raise RuntimeError(f"--continuous exited early:\n{running.output()[-1000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"--continuous did not print {text!r} within {timeout}s")


def clear_heartbeat(project):
    """If the follower had to be killed, its heartbeat would block --cleanup for
    90 s; the bench owns this state database, so it just clears it."""
    with sqlite3.connect(project.state_path) as conn:
        conn.execute("UPDATE doctypemigrations_doctypemigration SET heartbeat_at = NULL")


def measure_lag(project, server, rate, seconds):
    def write(source, _running):
        writer = Writer(source)
        return writer, writer.run(rate, seconds)
    return _lag_beside(project, server, write)


def measure_quiet_lag(project, server, quiet_seconds, writes=QUIET_WRITES, interval=1.0):
    """--continuous caught up and idle for ``quiet_seconds``, then ``writes``
    new migrating docs a second apart: a follower whose feed went stale in the
    quiet (an idle connection dropped, a longpoll that waits out its timeout)
    shows it as lag here, where a busy writer would hide it."""
    def write(source, running):
        time.sleep(quiet_seconds)
        if running.poll() is not None:
            raise RuntimeError(f"--continuous exited during the quiet spell:\n{running.output()[-1000:]}")
        writer = Writer(source, seed=11)
        started = time.monotonic()
        for index in range(writes):
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _write_one_migrating(writer, index)
        return writer, time.monotonic() - started
    return _lag_beside(project, server, write)


def _lag_beside(project, server, write):
    """Start --continuous, wait until it is caught up, run ``write(source,
    running)`` -> (writer, seconds) beside it, and measure the lag of the
    writer's measured writes."""
    source = server.db(project.main_db)
    running = project.start('run_doctype_migration', SLUG, '--continuous')
    observer = TargetObserver(server.url, project.target_db)
    try:
        _wait_for_output(running, 'All caught up', CAUGHT_UP_TIMEOUT)
        observer.start()
        observer.ready.wait(30)
        writer, elapsed = write(source, running)
        lags = _drain(observer, writer.measured)
    finally:
        observer.stop()
        finished = running.interrupt(timeout=30)
        if finished.returncode != 0:
            clear_heartbeat(project)
    if observer.error:
        raise observer.error
    observed = sorted(lag for lag in lags if lag is not None)
    return LagResult(
        seconds=elapsed, changes=writer.changes, achieved_rate=writer.changes / elapsed,
        measured_writes=len(lags), unobserved=len(lags) - len(observed),
        p50=percentile(observed, 0.50), p95=percentile(observed, 0.95),
        max=observed[-1] if observed else float('nan'),
        follower_peak_rss_mb=finished.peak_rss_mb)


def _write_one_migrating(writer, index):
    doc = {'_id': f"quiet-{uuid.uuid4().hex}", 'doc_type': MIGRATING_TYPES[index % len(MIGRATING_TYPES)],
           'domain': 'lag-bench', 'notes': 'x' * 500}
    rev = writer.db.bulk_docs([doc])[0]['rev']
    writer.measured.append(Write(doc['_id'], int(rev.split('-', 1)[0]), time.monotonic()))
    writer.changes += 1


def _drain(observer, writes):
    """Lag of every measured write; None for those that never arrived."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if all(observer.arrival(w) is not None for w in writes[-200:]) and \
                all(observer.arrival(w) is not None for w in writes):
            break
        time.sleep(0.25)
    lags = []
    for write in writes:
        arrived = observer.arrival(write)
        lags.append(None if arrived is None else max(0.0, arrived - write.acked_at))
    return lags
