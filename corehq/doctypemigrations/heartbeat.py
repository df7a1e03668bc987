"""The heartbeat of a running --continuous, from a thread of its own.

The follower's own loop can sit in one request for minutes (a stalled
server, a long read timeout); beating from a separate thread keeps a live
follower from looking dead to --cleanup and to a second --continuous.
"""
import logging
import threading

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
            return states.beat(self.state, self.owner)
        except DatabaseError as e:
            log.warning("Could not record the heartbeat (%s); trying again in %ss", e, self.interval)
            return True

    def stop(self):
        self._stopping.set()
        self.join()
