"""The server's own minimum for a copy: reading the selected leaves alone,
and writing them alone, each as the migrator does it.

``--initial`` reads every leaf it copies with ``_bulk_get`` (``revs=true``)
and writes it with ``_bulk_docs`` (``new_edits=false``), in batches of the
same size, ``workers`` requests in flight. Timing each half on its own, with
nothing else in the loop (no dump file, no checkpoints, no view reads: the
leaves are listed before the clock starts), gives what the server needs for
each: a copy that overlaps reading and writing cannot beat the slower half,
one that reads everything then writes it cannot beat their sum.

Reads ask for the attachments inline in one go (the migrator reads stubs and
then the docs that have attachments again): a floor, not a copy of its code.
The bodies read are kept encoded for the write, which goes into a fresh
database holding the migrator's target design docs, as every peer's does.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson

from bench.peers import CopyResult, uncompressed, view_leaves


def migrator_batches():
    """(workers, docs per batch, bytes per write batch) of ``--initial``'s defaults."""
    from corehq.doctypemigrations.initial import DEFAULT_SETTINGS
    return DEFAULT_SETTINGS.workers, DEFAULT_SETTINGS.page_size, DEFAULT_SETTINGS.batch_bytes


class Leaves:
    """The selected leaves, listed once (not timed), and their bodies once
    read (not timed either): what read_alone and write_alone are given, in
    whichever order the rounds measure them."""

    def __init__(self, source, doc_types):
        self.source = source
        self.doc_types = doc_types
        self._id_revs = None
        self._bodies = None

    def id_revs(self):
        if self._id_revs is None:
            self._id_revs = [pair for _rows, pairs in view_leaves(uncompressed(self.source), self.doc_types)
                             for pair in pairs]
        return self._id_revs

    def bodies(self):
        """Each leaf as ``_bulk_get`` gives it, encoded: what write_alone writes."""
        if self._bodies is None:
            workers, batch, _bytes = migrator_batches()
            self._bodies = _read(self.source, self.id_revs(), workers, batch)
        return self._bodies


def read_alone(leaves):
    """Every selected leaf read, with its history and attachments."""
    workers, batch, _bytes = migrator_batches()
    id_revs = leaves.id_revs()
    started = time.monotonic()
    bodies = _read(leaves.source, id_revs, workers, batch)
    seconds = time.monotonic() - started
    return CopyResult(seconds, _distinct_ids(bodies), len(bodies))


def write_alone(leaves, target):
    """Every selected leaf written to ``target`` (fresh) as it was read."""
    workers, batch, batch_bytes = migrator_batches()
    bodies = leaves.bodies()
    started = time.monotonic()
    with _pool(target, workers) as (pool, local):
        for _ in pool.map(lambda part: local().bulk_docs(part, new_edits=False),
                          _write_batches(bodies, batch, batch_bytes)):
            pass   # bulk_docs raises on any refused doc
    return CopyResult(time.monotonic() - started, _distinct_ids(bodies), len(bodies))


def _read(source, id_revs, workers, batch):
    parts = [id_revs[start:start + batch] for start in range(0, len(id_revs), batch)]
    with _pool(source, workers) as (pool, local):
        return [orjson.dumps(doc) for docs in pool.map(lambda part: local().bulk_get(part), parts)
                for doc in docs]


class _pool:
    """A thread pool of ``workers`` and a session per thread (a requests
    session is not meant to be shared), all asking for uncompressed answers
    as the raw loops do."""

    def __init__(self, db, workers):
        self.db = db
        self.workers = workers
        self.local = threading.local()

    def db_of_thread(self):
        if not hasattr(self.local, 'db'):
            self.local.db = uncompressed(self.db)   # a Server, and so a session, of its own
        return self.local.db

    def __enter__(self):
        self.pool = ThreadPoolExecutor(self.workers)
        return self.pool, self.db_of_thread

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)
        return False


def _write_batches(bodies, batch, batch_bytes):
    """Consecutive batches of at most ``batch`` docs and ``batch_bytes``
    (a doc larger than that is a batch of its own), as --initial's load makes them."""
    part, size = [], 0
    for body in bodies:
        if part and (len(part) >= batch or size + len(body) > batch_bytes):
            yield part
            part, size = [], 0
        part.append(body)
        size += len(body)
    if part:
        yield part


def _distinct_ids(bodies):
    return len({orjson.loads(body)['_id'] for body in bodies})
