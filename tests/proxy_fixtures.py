"""Fixtures for tests that need faults between the client and the real server.

Import into a conftest (or a test module) to use::

    from tests.proxy_fixtures import couch_proxy  # noqa: F401
"""
import pytest

from tests.couchproxy import CouchProxy


@pytest.fixture
def couch_proxy(couch_server):
    """A transparent CouchProxy in front of ``couch_server``; switch faults on
    through its attributes. Stopped (every connection cut) after the test."""
    proxy = CouchProxy(couch_server.url).start()
    yield proxy
    proxy.stop()
