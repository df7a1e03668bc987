"""Tests that kill and restart nodes of a 3-node CouchDB cluster in the middle
of a phase. They run only where the run started the cluster itself
(``--couchdb-launcher ../shared/couchdb/couchdb --couchdb-nodes 3``); elsewhere
each skips, naming why."""
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.parent.name == 'cluster':
            item.add_marker(pytest.mark.cluster)
