"""corehq.couch.copies on a 3-node cluster: whether the copies of a
database's shards agree, as --continuous asks it at each end of the feed."""
from corehq.couch import copies
from tests.cluster.faults import wait_for


def uptime(db, node):
    return db.json('GET', f"_node/{node}/_system", server_level=True)['uptime']


def test_a_watch_says_no_while_a_node_is_down_and_sees_a_restart_its_uptime_hides(couch_cluster, source_db):
    node2 = 'node2@127.0.0.1'
    watch = copies.Watch(source_db)
    couch_cluster.kill_node(2)
    couch_cluster.start_node(2)
    wait_for(watch.agreed, what='the copies agreeing once node 2 is back')
    seen = uptime(source_db, node2)  # node 2's uptime in the watch's snapshot, about
    couch_cluster.kill_node(2)
    wait_for(lambda: not watch.agreed() and f"{node2} down" in watch.reason, what='node 2 seen down')
    couch_cluster.start_node(2)
    # back, and up longer than it was when last seen agreeing: only the time since tells the restart
    wait_for(lambda: uptime(source_db, node2) > seen + 1, what="node 2's uptime past the one seen")
    assert not watch.agreed(), 'a restart was taken for the same run of the node'
    wait_for(watch.agreed, what='the copies agreeing again, pushed to again')
