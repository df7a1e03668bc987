"""The server the bench measures on, and the CPU it spends.

By default a pouchdb-server of the bench's own (free loopback port, temporary
data dir). ``--server URL`` measures any CouchDB, left running; ``--server
launcher`` starts Apache CouchDB 3.5 from ../shared/couchdb (one node, free
ports, data in the bench's temporary dir) and stops it at the end. Both reuse
the test suite's server classes (tests/servers.py).
"""
import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

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


LAUNCHER = 'launcher'


@dataclass
class BenchServer:
    url: str            # with its credentials: never printed (see secrets)
    pid: Optional[int]  # the server's process on this machine, for its CPU; None when unknown
    couchdb: bool       # Apache CouchDB (or Cloudant); False for pouchdb-server

    @property
    def secrets(self):
        """What must never be printed: the url's password."""
        password = urlsplit(self.url).password
        return [password, unquote(password)] if password else []


@contextlib.contextmanager
def bench_server(workdir, server=None):
    """The server of ``--server`` (None: a pouchdb-server of the bench's own)."""
    if server is None:
        with embedded_server(workdir) as couch:
            yield BenchServer(couch.url, couch.pid(), couchdb=False)
    elif server == LAUNCHER:
        with launched_couchdb(workdir) as couch:
            yield BenchServer(couch.url, _launched_pid(couch.data_dir), couchdb=True)
    else:
        from tests.servers import COUCHDB, ExternalCouch
        couch = ExternalCouch(server)
        yield BenchServer(couch.url, None, couchdb=couch.kind == COUCHDB)


@contextlib.contextmanager
def embedded_server(workdir):
    server = EmbeddedCouch(PROJECT_DIR, workdir / 'couchdb', free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def launched_couchdb(workdir):
    from tests.servers import LaunchedCouch, default_launcher
    launcher = default_launcher(PROJECT_DIR)
    if launcher is None:
        raise RuntimeError(f"--server {LAUNCHER} needs ../shared/couchdb/couchdb beside {PROJECT_DIR}")
    couch = LaunchedCouch(launcher, workdir / 'couchdb', nodes=1)
    try:
        couch.start()
        yield couch
    finally:
        couch.stop()   # also after a start that failed half-way: the launcher stops what it started


def _launched_pid(data_dir):
    try:
        return int((Path(data_dir) / 'node1.pid').read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- CPU of the server process, to tell what limits a copy ------------------------

_TICKS = os.sysconf('SC_CLK_TCK')
_watched = None   # (pid, couchdb): the server process every cpu_meter() reads


def watch_cpu_of(pid, couchdb=False):
    """Every ``cpu_meter()`` from now on reads this process: the bench's
    pouchdb-server, or CouchDB's Erlang VM (``couchdb``) with its children."""
    global _watched
    _watched = None if pid is None else (pid, couchdb)


def _cpu_seconds(stat_path):
    try:
        # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces.
        fields = Path(stat_path).read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


class cpu_meter:
    """CPU seconds the server spent during a ``with`` block: all of it
    (``total_s``) and the part that runs JavaScript (``main_s``).

    On pouchdb-server that part is its main thread (LevelDB's I/O and
    compression run on libuv's pool threads): near 100% of the wall time, the
    server cannot go faster. On CouchDB it is the ``couchjs`` processes (view,
    filter and validation functions), children of the Erlang VM, and the total
    is the VM and its children; a child that ends within the block takes its
    CPU with it (read from /proc while alive), so the figures are a floor."""

    def __enter__(self):
        self.total_s = self.main_s = self.machine_busy_s = None
        self._start = self._read()
        self._machine = _machine_busy()
        return self

    def __exit__(self, *exc):
        end = self._read()
        machine = _machine_busy()
        if self._start is not None and end is not None:
            self.total_s = sum(cpu - self._start[0].get(pid, 0) for pid, cpu in end[0].items())
            self.main_s = sum(cpu - self._start[1].get(pid, 0) for pid, cpu in end[1].items())
        if self._machine is not None and machine is not None:
            self.machine_busy_s = machine - self._machine
        return False

    def _read(self):
        """({pid: CPU s} of all the server's processes, {pid: CPU s} of its JavaScript), or None."""
        if _watched is None:
            return None
        pid, couchdb = _watched
        if not couchdb:
            total, main = _cpu_seconds(f"/proc/{pid}/stat"), _cpu_seconds(f"/proc/{pid}/task/{pid}/stat")
            return None if total is None or main is None else ({pid: total}, {pid: main})
        tree = {p: _cpu_seconds(f"/proc/{p}/stat") for p in (pid, *_descendants(pid))}
        tree = {p: cpu for p, cpu in tree.items() if cpu is not None}
        if pid not in tree:
            return None
        return tree, {p: cpu for p, cpu in tree.items() if _command(p) == 'couchjs'}

    def figures(self):
        return {'server_cpu_s': self.total_s, 'server_main_cpu_s': self.main_s,
                'machine_busy_s': self.machine_busy_s}


def _descendants(pid):
    children = {}
    for entry in os.scandir('/proc'):
        if entry.name.isdigit():
            try:
                parent = int(Path(entry.path, 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _command(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _machine_busy():
    """CPU seconds the whole machine (every process, every core) has been busy:
    what the bench's processes and anyone else's used. On 2 cores, 2 busy
    seconds per second of wall time is a machine with nothing left to give."""
    try:
        with open('/proc/stat') as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    total = sum(fields[:8])   # guest time is already counted in user
    return (total - idle) / _TICKS


class client_cpu:
    """CPU seconds this process (the bench, running a raw loop) spent in a ``with`` block."""

    def __enter__(self):
        self._start = time.process_time()
        self.seconds = None
        return self

    def __exit__(self, *exc):
        self.seconds = time.process_time() - self._start
        return False

    def figures(self):
        return {'client_cpu_s': self.seconds}
