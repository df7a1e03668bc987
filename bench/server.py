"""A pouchdb-server of the bench's own: free loopback port, temporary data dir."""
import contextlib
import os
import shutil
import signal
import tempfile
import time
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


# -- CPU of the server process, to tell what limits a copy ------------------------

_TICKS = os.sysconf('SC_CLK_TCK')
_server_pid = None


def watch_cpu_of(pid):
    """Every ``cpu_meter()`` from now on reads this process (the bench's pouchdb-server)."""
    global _server_pid
    _server_pid = pid


def _cpu_seconds(stat_path):
    try:
        # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces.
        fields = Path(stat_path).read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


class cpu_meter:
    """CPU seconds the server spent during a ``with`` block: all its threads
    (``total_s``) and its main thread alone (``main_s``), where pouchdb-server's
    JavaScript runs; LevelDB's I/O and compression run on libuv's pool threads.
    A main thread near 100% of the wall time is a server that cannot go faster."""

    def __enter__(self):
        self.total_s = self.main_s = self.machine_busy_s = None
        self._start = self._read()
        self._machine = _machine_busy()
        return self

    def __exit__(self, *exc):
        end = self._read()
        machine = _machine_busy()
        if self._start[0] is not None and end[0] is not None:
            self.total_s = end[0] - self._start[0]
            self.main_s = end[1] - self._start[1]
        if self._machine is not None and machine is not None:
            self.machine_busy_s = machine - self._machine
        return False

    def _read(self):
        if _server_pid is None:
            return None, None
        return (_cpu_seconds(f"/proc/{_server_pid}/stat"),
                _cpu_seconds(f"/proc/{_server_pid}/task/{_server_pid}/stat"))

    def figures(self):
        return {'server_cpu_s': self.total_s, 'server_main_cpu_s': self.main_s,
                'machine_busy_s': self.machine_busy_s}


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
