"""Whether the copies of a cluster's shards hold the same documents.

A view, ``_all_docs`` or ``_changes`` read on a cluster takes each shard
range from whichever copy answers first; a copy on a node that was down
lacks what was written meanwhile until internal replication (mem3_sync) has
pushed it over. A listing is complete only when read while no copy lags:
every node of the cluster is up, each copy has been asked to push what it
holds to the others (``POST /db/_sync_shards``) and no node has an internal
replication job left (``/_node/<node>/_system``). ``settle`` waits for that;
``still_settled`` tells whether it held over a read: the same nodes up, none
restarted in between (each uptime grew by the time passed), nothing
pending; ``Watch`` asks both again and again without waiting. A single
server keeps one copy, which cannot lag behind itself.
"""
import logging
import time
from collections import namedtuple

from corehq.couch.errors import CouchError, CouchNotFound, CouchUnauthorized

log = logging.getLogger(__name__)

# {node: uptime in seconds} and when it was read (time.monotonic()): a node
# whose uptime has not grown with the time since was restarted meanwhile
Snapshot = namedtuple('Snapshot', 'uptimes taken_at')
# whole seconds of uptime, read over requests that take time
UPTIME_SLACK = 5


class CopiesUnsettled(Exception):
    """The copies could not be seen to agree within the time allowed."""


def settle(db, max_wait, poll=0.5):
    """Wait until the copies of ``db`` agree; returns a Snapshot of the
    nodes (for ``still_settled``), or raises CopiesUnsettled naming why."""
    if db.copies() == 1:
        return Snapshot({}, time.monotonic())
    deadline = time.monotonic() + max_wait
    settling = Settling(db)
    while (snapshot := settling.look()) is None:
        if time.monotonic() > deadline:
            raise CopiesUnsettled(f"the copies of {db.name} did not agree within {max_wait:g} s "
                                  f"({settling.reason})")
        time.sleep(poll)
    return snapshot


class Settling:
    """``settle`` one look at a time, for a caller that goes on working
    between looks (--continuous follows the feed meanwhile). Every copy is
    asked to push to the others at the first look and again whenever a node
    has left, come back or restarted since it last was."""

    def __init__(self, db):
        self.db = db
        self.reason = 'not asked yet'
        self._synced, self._quiet = None, 0

    def look(self, state=None):
        """A Snapshot once the copies agree, else None (``reason`` says why
        not). ``state``: the cluster's state if the caller just read it."""
        state = _replication_state(self.db) if state is None else state
        if isinstance(state, str):
            self.reason, self._synced, self._quiet = state, None, 0
        elif self._synced is None or not _same_nodes_running(state, self._synced):
            self.db.request('POST', '_sync_shards')
            self._synced, self._quiet = _snapshot(state), 0
            self.reason = 'internal replication was asked to run'
        elif _pending(state):
            self.reason, self._quiet = 'internal replication jobs are still pending', 0
        elif self._quiet:
            self.reason = 'the copies agree'
            return _snapshot(state)
        else:
            # twice in a row: the pushes _sync_shards asks for are queued a moment after it answers
            self._quiet = 1
        return None


def why_unsettled(db, max_wait):
    """None once the copies of ``db`` agree (``settle``, waiting at most
    ``max_wait``), else why they could not be seen to: for a caller that
    goes on either way, choosing how."""
    try:
        settle(db, max_wait)
    except CopiesUnsettled as e:
        return str(e)
    return None


def still_settled(db, snapshot):
    """Whether the copies agreed all along since ``snapshot`` was taken."""
    if db.copies() == 1:
        return True
    return _agreed_since(_replication_state(db), snapshot)


class Watch:
    """Whether the copies have agreed all along since they were last seen
    to, asked again and again by a caller that must not wait for them
    (--continuous, at each end of the feed): its requests get one retry and
    a short timeout, and a node that does not answer is a "not now". A
    look costs a request per node."""

    def __init__(self, db):
        self.db = db
        self.unknowable = None  # why this server does not show its copies' state
        self._quick = None
        self._snapshot, self._settling, self._failure = None, None, None

    @property
    def reason(self):
        if self.unknowable or self._failure:
            return self.unknowable or self._failure
        return self._settling.reason if self._settling else 'not looked at'

    def agreed(self):
        """True while the copies have agreed since last seen to; otherwise
        one more look (settle's), False until it sees them agree: the caller
        reads again what it read while they did not."""
        if self.db.copies() == 1 or self.unknowable:
            return True
        self._failure = None
        try:
            return self._look()
        except (CouchUnauthorized, CouchNotFound) as e:
            # a hosted cluster that keeps its nodes to itself: its answers as they come, as before
            self.unknowable = f"the server does not show its nodes ({e})"
            log.warning("%s: %s; its copies are taken as they answer", self.db.display_url, self.unknowable)
            return True
        except CouchError as e:  # a node that died since _membership answered, a slow link
            self._failure = f"the cluster's nodes did not all answer: {e}"
            return False

    def _look(self):
        self._quick = self._quick or self.db.quick()
        state = _replication_state(self._quick)
        if self._snapshot is not None:
            if _agreed_since(state, self._snapshot):
                return True
            self._snapshot = None
        self._settling = self._settling or Settling(self._quick)
        self._snapshot = self._settling.look(state)
        return False


def _snapshot(state):
    return Snapshot({node: uptime for node, (uptime, _jobs) in state.items()}, time.monotonic())


def _agreed_since(state, snapshot):
    return _same_nodes_running(state, snapshot) and not _pending(state)


def _same_nodes_running(state, snapshot):
    """The nodes of ``snapshot`` all up, and none restarted since: each one's
    uptime grew by the time that passed."""
    if isinstance(state, str) or set(state) != set(snapshot.uptimes):
        return False
    passed = time.monotonic() - snapshot.taken_at
    return all(uptime >= snapshot.uptimes[node] + passed - UPTIME_SLACK
               for node, (uptime, _jobs) in state.items())


def _pending(state):
    return any(jobs for _uptime, jobs in state.values())


def _replication_state(db):
    """{node: (uptime, internal replication jobs)} when every node of the
    cluster is up, else why not (a str)."""
    membership = db.json('GET', '_membership', server_level=True)
    down = sorted(set(membership['cluster_nodes']) - set(membership['all_nodes']))
    if down:
        return f"{', '.join(down)} down"
    state = {}
    for node in membership['cluster_nodes']:
        # a node that died since _membership answers 412 nodedown, retried
        # under the db's budget: a phase's (--give-up-after), a Watch's once
        system = db.json('GET', f"_node/{node}/_system", server_level=True)
        state[node] = (system['uptime'], system.get('internal_replication_jobs', 0))
    return state
