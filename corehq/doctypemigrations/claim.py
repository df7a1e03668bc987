"""The claim of the one run working on a migration, and its heartbeat.

--initial, --continuous and --cleanup each hold their migration's one claim
while they run, renewed by a heartbeat from a thread of its own: two runs of
one phase never interleave, a cleanup never starts beside a follower, and
--status tells a phase that is running from one that stopped. A phase's loop
can sit in one request for minutes (a stalled server, a long read timeout);
beating from a separate thread keeps a live run from looking dead.

The claim lives on a row with a ``runner`` (host:pid:nonce:action) and a
``heartbeat_at`` field, and the row's ``str()`` names it in messages.
"""
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.db import DatabaseError, connections
from django.db.models import Q
from django.utils import timezone

from corehq.doctypemigrations.errors import CleanupRefused, MigrationBusy

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10  # a running phase beats this often, even inside a stalled request
HEARTBEAT_MAX_AGE = 90  # seconds; an older heartbeat belongs to a run that is gone
INITIAL, CONTINUOUS, CLEANUP, ERASE = 'initial', 'continuous', 'cleanup', 'erase-continuous-progress'
PHASES = (INITIAL, CONTINUOUS, CLEANUP, ERASE)  # a migration's; other rows' actions are named as they are


# -- owners ---------------------------------------------------------------------------

def new_owner(action=CONTINUOUS):
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{action}"


def owner_host_pid(owner):
    parts = (owner or '').split(':')
    return (parts[0] if parts else '?'), (parts[1] if len(parts) > 1 else '?')


def owner_action(owner):
    """Which phase a claim's owner runs (claims from before they said: --continuous)."""
    parts = (owner or '').split(':')
    return parts[3] if len(parts) > 3 else CONTINUOUS


def process_may_live(owner):
    """False only when the owner ran on this host and its pid is gone."""
    host, pid = owner_host_pid(owner)
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_fresh(owner, beat_at, now=None, max_age=HEARTBEAT_MAX_AGE):
    """The one rule for a live claim: a heartbeat young enough, from a
    process not known to be gone from this host."""
    now = now or timezone.now()
    return (bool(owner) and beat_at is not None and now - beat_at < timedelta(seconds=max_age)
            and process_may_live(owner))


# -- the claim ---------------------------------------------------------------------------

def _rows(row):
    return type(row).objects.filter(pk=row.pk)


def claim(row, owner, max_age=HEARTBEAT_MAX_AGE):
    """Make ``owner`` the row's one runner, or raise MigrationBusy.

    The claim is a compare-and-swap on the previous owner, so of two runs
    starting at once only one gets it. A claim is free when it is not fresh.
    """
    row.refresh_from_db(fields=['runner', 'heartbeat_at'])
    holder, beat_at = row.runner, row.heartbeat_at
    if is_fresh(holder, beat_at, max_age=max_age):
        raise _busy(row, owner, holder, beat_at, max_age)
    now = timezone.now()
    holder_is = Q(runner=holder) if holder else Q(runner__isnull=True) | Q(runner='')
    if not _rows(row).filter(holder_is).update(runner=owner, heartbeat_at=now):
        row.refresh_from_db(fields=['runner', 'heartbeat_at'])
        raise _busy(row, owner, row.runner, row.heartbeat_at, max_age)
    row.runner, row.heartbeat_at = owner, now


def _busy(row, claimant, holder, beat_at, max_age):
    host, pid = owner_host_pid(holder)
    age = (timezone.now() - beat_at).total_seconds() if beat_at else 0
    running, wanted = owner_action(holder), owner_action(claimant)
    if wanted == CLEANUP and running == CONTINUOUS:
        return CleanupRefused("A --continuous run is active (its heartbeat is fresh): stop it with Ctrl-C "
                              "first, or the cleanup's deletions would reach the target.")
    rule = ("only one may follow at a time" if running == wanted == CONTINUOUS else
            f"only one process works on a migration at a time, so --{wanted} waits for it"
            if wanted in PHASES else f"only one process works on {row} at a time")
    what = f"--{running} of {str(row)!r}" if running in PHASES else f"{running} of {row}"
    return MigrationBusy(
        f"Another {what} is running (pid {pid} on {host}, last heartbeat "
        f"{age:.0f}s ago): {rule}. Stop it first (Ctrl-C) or let it finish. If it was killed, its "
        f"claim lapses {max_age}s after its last heartbeat (at once on the same host).")


def beat(row, owner):
    """Renew ``owner``'s heartbeat; False when another run holds the claim now."""
    if _rows(row).filter(runner=owner).update(heartbeat_at=timezone.now()):
        return True
    holder = _rows(row).values_list('runner', flat=True).first()
    return not holder or holder == owner


def release(row, owner):
    _rows(row).filter(runner=owner).update(runner=None, heartbeat_at=None)


def running_action(row, max_age=HEARTBEAT_MAX_AGE):
    """The phase a live run works on now (INITIAL, CONTINUOUS or CLEANUP), or
    None when no claim is fresh (or there is no row)."""
    if row is None:
        return None
    row.refresh_from_db(fields=['runner', 'heartbeat_at'])
    return owner_action(row.runner) if is_fresh(row.runner, row.heartbeat_at, max_age=max_age) else None


# -- holding it while a phase runs ------------------------------------------------------

class Heartbeat(threading.Thread):
    def __init__(self, row, owner, interval):
        super().__init__(name=f"heartbeat-{row}", daemon=True)
        self.row = row
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
            still_ours = beat(self.row, self.owner)
        except DatabaseError as e:
            # A busy state database for a moment is no news; one that keeps the
            # heartbeat from being written until the claim is about to lapse is.
            silent_for = time.monotonic() - self._last_beat
            report = log.warning if silent_for > HEARTBEAT_MAX_AGE / 2 else log.debug
            report("Could not record the heartbeat for %.0fs (%s); trying again in %ss",
                   silent_for, e, self.interval)
            return True
        self._last_beat = time.monotonic()
        return still_ours

    def stop(self):
        self._stopping.set()
        self.join()


@contextmanager
def running(row, action, interval=HEARTBEAT_SECONDS):
    """Hold the row's one claim for ``action`` while the block runs (raises
    MigrationBusy when another run holds it); yields the heartbeat, whose
    ``lost`` is set if another run took the claim over."""
    owner = new_owner(action)
    claim(row, owner)
    heartbeat = Heartbeat(row, owner, interval)
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
        release(row, owner)
