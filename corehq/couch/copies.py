"""Whether the copies of a cluster's shards hold the same documents.

A view, ``_all_docs`` or ``_changes`` read on a cluster takes each shard
range from whichever copy answers first; a copy on a node that was down
lacks what was written meanwhile until internal replication (mem3_sync) has
pushed it over. A listing is complete only when read while no copy lags:
every node of the cluster is up, each copy has been asked to push what it
holds to the others (``POST /db/_sync_shards``) and no node has an internal
replication job left (``/_node/<node>/_system``). ``settle`` waits for that;
``still_settled`` tells whether it held over a read: the same nodes up, none
restarted in between (their uptime only grew), nothing pending; ``Watch``
asks both again and again without waiting. A single server keeps one copy,
which cannot lag behind itself.
"""
import logging
import time

from corehq.couch.errors import CouchNotFound, CouchUnauthorized


log = logging.getLogger(__name__)


class CopiesUnsettled(Exception):
    """The copies could not be seen to agree within the time allowed."""


def settle(db, max_wait, poll=0.5):
    """Wait until the copies of ``db`` agree; returns the nodes' uptimes (a
    snapshot for ``still_settled``), or raises CopiesUnsettled naming why."""
    if db.copies() == 1:
        return {}
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
    between looks (--continuous follows the feed meanwhile)."""

    def __init__(self, db):
        self.db = db
        self.reason = 'not asked yet'
        self._synced_for, self._quiet = None, 0

    def look(self):
        """The nodes' uptimes once the copies agree, else None (``reason``
        says why not)."""
        state = _replication_state(self.db)
        if isinstance(state, str):
            self.reason, self._synced_for, self._quiet = state, None, 0
        elif self._synced_for != set(state):
            # once per set of live nodes: a node back needs every copy pushed to it again
            self.db.request('POST', '_sync_shards')
            self._synced_for = set(state)
            self.reason = 'internal replication was asked to run'
        elif _pending(state):
            self.reason, self._quiet = 'internal replication jobs are still pending', 0
        elif self._quiet:
            return {node: uptime for node, (uptime, _jobs) in state.items()}
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
    state = _replication_state(db)
    return _same_nodes_running(state, snapshot) and not _pending(state)


class Watch:
    """Whether the copies have agreed all along since they were last seen
    to, asked again and again by a caller that must not wait for them
    (--continuous, at each end of the feed). A look costs a request per
    node. Only a node that left or restarted has every copy pushed again;
    jobs left pending are waited out."""

    def __init__(self, db):
        self.db = db
        self.unknowable = None  # why this server does not show its copies' state
        self._snapshot, self._settling = None, None

    @property
    def reason(self):
        return self.unknowable or (self._settling.reason if self._settling else 'not looked at yet')

    def agreed(self):
        """True while the copies have agreed since last seen to; otherwise
        one more look (settle's), False until it sees them agree: the caller
        reads again what it read while they did not."""
        if self.db.copies() == 1 or self.unknowable:
            return True
        try:
            return self._look()
        except (CouchUnauthorized, CouchNotFound) as e:
            # a hosted cluster that keeps its nodes to itself: its answers as they come, as before
            self.unknowable = f"the server does not show its nodes ({e})"
            log.warning("%s: %s; its copies are taken as they answer", self.db.display_url, self.unknowable)
            return True

    def _look(self):
        if self._snapshot is not None:
            state = _replication_state(self.db)
            if _same_nodes_running(state, self._snapshot) and not _pending(state):
                return True
            if not _same_nodes_running(state, self._snapshot):
                self._settling = None  # a node left or came back: every copy is pushed again
            self._snapshot = None
        self._settling = self._settling or Settling(self.db)
        self._snapshot = self._settling.look()
        return False


def _same_nodes_running(state, snapshot):
    """The nodes of ``snapshot`` all up and none restarted since (their uptime only grew)."""
    return (not isinstance(state, str) and set(state) == set(snapshot)
            and all(uptime >= snapshot[node] for node, (uptime, _jobs) in state.items()))


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
        # under the phase's budget (--give-up-after) until it is back
        system = db.json('GET', f"_node/{node}/_system", server_level=True)
        state[node] = (system['uptime'], system.get('internal_replication_jobs', 0))
    return state
