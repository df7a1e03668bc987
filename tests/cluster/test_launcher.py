"""The cluster the run started: three nodes, one of which can be killed and brought back."""
import requests

from tests.cluster.faults import NodeOutage, wait_for
from tests.servers import node_answers


def test_a_killed_node_comes_back_and_the_cluster_keeps_its_data(couch_cluster, source_db):
    assert requests.get(f"{couch_cluster.url}/_membership", timeout=30).json()['cluster_nodes'].__len__() == 3
    source_db.put({'_id': 'before', 'doc_type': 'Group'})
    with NodeOutage(couch_cluster, 3, back_after=None) as outage:
        wait_for(outage.killed.is_set, what='node 3 killed')
        assert not node_answers(couch_cluster.node_url(3))
        source_db.put({'_id': 'during', 'doc_type': 'Group'})  # 2 of 3 copies: accepted
        outage.restore()
    assert node_answers(couch_cluster.node_url(3))
    assert {row['id'] for row in source_db.all_docs()} >= {'before', 'during'}
