"""Whether the copies of a cluster's shards hold the same documents.

A view, ``_all_docs`` or ``_changes`` read on a cluster takes each shard
range from whichever copy answers first; a copy on a node that was down
lacks what was written meanwhile until internal replication (mem3_sync) has
pushed it over. A listing is complete only when read while no copy lags:
every node of the cluster is up, each copy has been asked to push what it
holds to the others (``POST /db/_sync_shards``) and no node has an internal
replication job left (``/_node/<node>/_system``). ``settle`` waits for that;
``still_settled`` tells whether it held over a read: the same nodes up, none
restarted in between (their uptime only grew), nothing pending. A single
server keeps one copy, which cannot lag behind itself.
"""
import time


class CopiesUnsettled(Exception):
    """The copies could not be seen to agree within the time allowed."""


def settle(db, max_wait, poll=0.5):
    """Wait until the copies of ``db`` agree; returns the nodes' uptimes (a
    snapshot for ``still_settled``), or raises CopiesUnsettled naming why."""
    if db.copies() == 1:
        return {}
    deadline = time.monotonic() + max_wait
    reason = 'not asked yet'
    synced_for, quiet = None, 0
    while True:
        state = _replication_state(db)
        if isinstance(state, str):
            reason, synced_for, quiet = state, None, 0
        elif synced_for != set(state):
            # once per set of live nodes: a node back needs every copy pushed to it again
            db.request('POST', '_sync_shards')
            synced_for = set(state)
            reason = 'internal replication was asked to run'
        elif any(jobs for _uptime, jobs in state.values()):
            reason, quiet = 'internal replication jobs are still pending', 0
        elif quiet:
            return {node: uptime for node, (uptime, _jobs) in state.items()}
        else:
            # twice in a row: the pushes _sync_shards asks for are queued a moment after it answers
            quiet = 1
        if time.monotonic() > deadline:
            raise CopiesUnsettled(f"the copies of {db.name} did not agree within {max_wait:g} s ({reason})")
        time.sleep(poll)


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
    if isinstance(state, str) or set(state) != set(snapshot):
        return False
    return all(uptime >= snapshot[node] and not jobs for node, (uptime, jobs) in state.items())


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
