"""The CouchDB-compatible servers the suite runs against.

- the project's own pouchdb-server (the default; ``corehq.embedded_couch``);
- any CouchDB 3 given by url (``--couch-url`` or ``COUCH_TEST_URL``), left running;
- Apache CouchDB 3.5 from ``../shared/couchdb``, a single node or a 3-node cluster,
  started by the run and stopped at its end (``--couchdb-launcher``, ``--couchdb-nodes``).

Each answers ``url`` (with its credentials: CouchDB has no admin party) and
``kind``; only the launcher's cluster can kill and restart a node.
"""
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import requests

from corehq.embedded_couch.server import free_port, port_in_use

POUCHDB = 'pouchdb'
COUCHDB = 'couchdb'
LAUNCHER_TIMEOUT = 180


def server_kind(url):
    """'couchdb' or 'pouchdb', from what the server's root says of itself."""
    welcome = requests.get(url.rstrip('/') + '/', timeout=30).json()
    return POUCHDB if 'express-pouchdb' in welcome else COUCHDB


def cluster_size(url):
    """How many nodes hold the server's shards (1 for pouchdb-server)."""
    response = requests.get(url.rstrip('/') + '/_membership', timeout=30)
    if not response.ok:
        return 1
    return len(response.json().get('cluster_nodes', [])) or 1


class ExternalCouch:
    """A server the run was given: used, never started or stopped."""

    def __init__(self, url):
        self.url = url.rstrip('/')
        self.kind = server_kind(self.url)
        self.nodes = cluster_size(self.url)

    @property
    def port(self):
        return urlsplit(self.url).port

    def start(self):
        return False

    def stop(self):
        return False


class LaunchedCouch:
    """Apache CouchDB started in ``data_dir`` by the launcher of ../shared/couchdb.

    Every node runs with the session's process mark, even one started again
    inside a test: the session owns the nodes, and stops them all at its end.
    """

    kind = COUCHDB

    def __init__(self, launcher, data_dir, nodes=1):
        self.launcher = Path(launcher).resolve()  # a test may chdir (migration_dbs does)
        self.data_dir = Path(data_dir)
        self.nodes = nodes
        self.node_urls = []

    @property
    def url(self):
        return self.node_urls[0]

    @property
    def port(self):
        return urlsplit(self.url).port

    def start(self):
        port, dist_port = _free_port_runs(self.nodes)
        out = self._run('start', str(self.data_dir), '--nodes', str(self.nodes),
                        '--port', str(port), '--dist-port', str(dist_port))
        self.node_urls = out.split()
        return True

    def stop(self):
        if not self.data_dir.exists():
            return False
        self._run('stop', str(self.data_dir))
        return True

    def kill_node(self, n):
        """SIGKILL node ``n`` (1-based), as a crash would."""
        self._run('kill-node', str(self.data_dir), str(n))

    def start_node(self, n):
        """Start node ``n`` again; returns once it answers and sees the others."""
        self._run('start-node', str(self.data_dir), str(n))

    def node_url(self, n):
        return self.node_urls[n - 1]

    def _run(self, *args):
        # imported here: conftest loads tests.processes as a plugin, after this module
        from tests.processes import MARK, _marks, with_default_sigint
        env = dict(os.environ, **{MARK: _marks.session})
        done = subprocess.run(with_default_sigint([self.launcher, *args]), env=env, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=LAUNCHER_TIMEOUT)
        if done.returncode:
            raise RuntimeError(f"couchdb {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout


def _free_port_runs(nodes, tries=50):
    """An HTTP port and a distribution port, each the first of ``nodes`` free ones."""
    for _ in range(tries):
        port, dist = free_port(), free_port()
        wanted = [port + i for i in range(nodes)] + [dist + i for i in range(nodes)]
        if len(set(wanted)) == 2 * nodes and not any(port_in_use('127.0.0.1', p) for p in wanted):
            return port, dist
    raise RuntimeError(f"found no {nodes} free ports in a row after {tries} tries")


def default_launcher(project_dir):
    """../shared/couchdb/couchdb beside the project, where it exists."""
    launcher = Path(project_dir).parent / 'shared' / 'couchdb' / 'couchdb'
    return launcher if launcher.exists() else None


def node_answers(url):
    try:
        return requests.get(url.rstrip('/') + '/_up', timeout=5).ok
    except requests.RequestException:
        return False
