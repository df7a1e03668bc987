"""The load of --initial, following the dump file as it grows.

Reading the source and writing the target use different servers' time (or
different resources of one server): run one after the other, the phase takes
the sum of both; run together, about the larger.

The dump file stays the medium and the resume point. The load reads only up
to the dump's recorded offset (synced, then recorded), so every line it loads
is one a rerun keeps: a rerun cuts the file back to that offset and no
further. Its writes run in a thread of their own, several batches in flight
(see inflight.ordered); the caller records their acknowledgements, in order,
from its own thread (``acknowledged``, ``rest``): the state database is
written from one thread only (a test's transaction, SQLite's single writer).
"""
import queue
import threading

from corehq.couch.transport import stop_event
from corehq.doctypemigrations import dumpfile
from corehq.doctypemigrations.inflight import ordered, parts
from corehq.doctypemigrations.loader import write_raw

_DONE = object()


class FollowingLoad:
    """Loads ``dump_path`` into ``target`` from the load position ``start``, as
    far as ``dumped_to`` says the dump has reached, until ``dump_ended``."""

    def __init__(self, target, dump_path, start, settings):
        self.target = target
        self.dump_path = dump_path
        self.settings = settings
        self._position = start
        self._dumped = None
        self._ended = False
        self._stopped = False
        self._more = threading.Condition()
        self._acks = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name='couch-load', daemon=True)

    def start(self, dumped):
        self.dumped_to(dumped)
        self._thread.start()
        return self

    def dumped_to(self, offset):
        """The dump is synced and recorded up to byte ``offset``."""
        with self._more:
            self._dumped = offset
            self._more.notify()

    def dump_ended(self, offset):
        with self._more:
            self._dumped, self._ended = offset, True
            self._more.notify()

    def stop(self):
        """No more batches are started; returns once those in flight are
        answered, so a phase that ended (or raised) has no write of its own
        still going on: the operator may drop or inspect the target next.
        A process told to stop does not wait (see inflight)."""
        with self._more:
            self._stopped = True
            self._more.notify()
        stopping = stop_event()
        while self._thread.is_alive() and not stopping.is_set():
            self._thread.join(timeout=0.2)

    def acknowledged(self):
        """The batches acknowledged since the last call, as ((lines, end), errors),
        without waiting; raises the load's error once those before it are taken."""
        return list(self._take(block=False))

    def rest(self):
        """Every batch still to be acknowledged, waiting for each (after dump_ended)."""
        return self._take(block=True)

    def _take(self, block):
        while True:
            try:
                entry = self._acks.get(block=block)
            except queue.Empty:
                return
            if entry is _DONE:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield entry

    def _run(self):
        try:
            batches = _smaller_while_limited(self._batches(), self.target.budget)
            written = ordered(batches, lambda batch: write_raw(self.target, [raw for raw, _at in batch[0]]),
                              self.settings.workers, self.target.budget, ahead=0)
            for done in written:
                self._acks.put(done)
        except BaseException as error:  # raised in the caller's thread, where progress is recorded
            self._acks.put(error)
        else:
            self._acks.put(_DONE)

    def _batches(self):
        """The dump's batches from the load position, waiting for the dump to
        record more, until it has ended and every line was read."""
        while True:
            dumped, ended = self._wait_for_more()
            if dumped is None:
                return
            for lines, end in dumpfile.read_batches(self.dump_path, self._position, self.settings.batch_bytes,
                                                    self.settings.batch_docs, size=dumped):
                if self._stopped:
                    return
                self._position = end
                yield lines, end
            if ended:
                return

    def _wait_for_more(self):
        """(recorded dump size, whether the dump ended) once there is more to
        read, or (None, True) when stopped."""
        with self._more:
            while not self._stopped and not self._ended \
                    and dumpfile.position(self._dumped) <= self._position:
                self._more.wait()
            if self._stopped:
                return None, True
            return self._dumped, self._ended


def _smaller_while_limited(batches, budget):
    """The load's batches, split while the server rate-limits. A part ends
    where the next part's first line is, so its load position is exact."""
    for lines, end in batches:
        split = parts(lines, budget)
        for part, following in zip(split, split[1:]):
            yield part, following[0][1]
        yield split[-1], end
