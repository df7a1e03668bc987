"""The claim of the one run working on a migration, and its heartbeat from a
thread of its own.

A phase's loop can sit in one request for minutes (a stalled server, a long
read timeout); beating from a separate thread keeps a live run from looking
dead to --cleanup, to a second run and to --status.
"""
import logging
import threading
import time
from contextlib import contextmanager

from django.db import DatabaseError, connections

from corehq.doctypemigrations import state as states

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, state, owner, interval):
        super().__init__(name=f"heartbeat-{state.slug}", daemon=True)
        self.state = state
        self.owner = owner
        self.interval = interval
        self.lost = threading.Event()  # another run holds the claim now
        self._stopping = threading.Event()
        self._last_beat = time.monotonic()  # the claim itself was a beat

    def run(self):
        try:
            while not self._stopping.wait(self.interval):
                if not self._beat():
                    self.lost.set()
                    return
        finally:
            connections.close_all()  # this thread's own connections

    def _beat(self):
        try:
            still_ours = states.beat(self.state, self.owner)
        except DatabaseError as e:
            # A busy state database for a moment is no news; one that keeps the
            # heartbeat from being written until the claim is about to lapse is.
            silent_for = time.monotonic() - self._last_beat
            report = log.warning if silent_for > states.HEARTBEAT_MAX_AGE / 2 else log.debug
            report("Could not record the heartbeat for %.0fs (%s); trying again in %ss",
                   silent_for, e, self.interval)
            return True
        self._last_beat = time.monotonic()
        return still_ours

    def stop(self):
        self._stopping.set()
        self.join()


@contextmanager
def running(state, action, interval=states.HEARTBEAT_SECONDS):
    """Hold the migration's one claim for ``action`` while the block runs
    (raises MigrationBusy when another run holds it); yields the heartbeat,
    whose ``lost`` is set if another run took the claim over."""
    owner = states.new_owner(action)
    states.claim(state, owner)
    heartbeat = Heartbeat(state, owner, interval)
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
        states.release(state, owner)
