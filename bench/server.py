"""A pouchdb-server of the bench's own: free loopback port, temporary data dir."""
import contextlib
import shutil
import signal
import tempfile
from pathlib import Path

from corehq.embedded_couch.server import EmbeddedCouch, free_port

PROJECT_DIR = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def temporary_workdir(prefix='doctype-bench-'):
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """A SIGTERM (CI timeout, kill) unwinds like Ctrl-C, so every ``finally``
    below runs and no server or temp dir is left behind."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def embedded_server(workdir):
    server = EmbeddedCouch(PROJECT_DIR, workdir / 'couchdb', free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
