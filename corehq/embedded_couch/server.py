"""Starts and stops the project's own pouchdb-server, a CouchDB-compatible API server."""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests


class EmbeddedCouchError(Exception):
    pass


class EmbeddedCouch:
    """One pouchdb-server process, found again through the pid file in its data dir."""

    def __init__(self, project_dir, data_dir, port, host='127.0.0.1'):
        self.project_dir = Path(project_dir)
        self.data_dir = Path(data_dir)
        self.port = int(port)
        self.host = host
        self.pid_file = self.data_dir / 'pouchdb-server.pid'
        self.log_file = self.data_dir / 'pouchdb-server.log'

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def executable(self):
        return self.project_dir / 'node_modules' / '.bin' / 'pouchdb-server'

    def pid(self):
        """The pid of the running server, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not _process_alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def is_running(self):
        return self.pid() is not None

    def answers(self):
        try:
            return requests.get(self.url + '/', timeout=2).ok
        except requests.RequestException:
            return False

    def start(self, timeout=60):
        """Start the server; returns False when it was already running."""
        if self.is_running():
            return False
        if port_in_use(self.host, self.port):
            raise EmbeddedCouchError(
                f"Port {self.port} on {self.host} is already in use by another process; "
                f"choose another port (COUCH_EMBEDDED_PORT) or stop that process.")
        if not self.executable.exists():
            raise EmbeddedCouchError(
                f"{self.executable} is missing: run `npm ci` in {self.project_dir}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        process = self._spawn()
        self.pid_file.write_text(str(process.pid))
        self._wait_until_up(process, timeout)
        return True

    def _write_config(self):
        # Request logging at info level costs throughput and fills the disk.
        config_file = self.data_dir / 'config.json'
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        config.setdefault('log', {}).update({'level': 'warning', 'file': str(self.log_file)})
        config_file.write_text(json.dumps(config, indent=2))

    def _spawn(self):
        with open(self.log_file, 'ab') as log:
            return subprocess.Popen(
                [str(self.executable), '--host', self.host, '--port', str(self.port),
                 '--dir', str(self.data_dir), '--config', str(self.data_dir / 'config.json'),
                 '--no-color'],
                cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def _wait_until_up(self, process, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise EmbeddedCouchError(
                    f"pouchdb-server exited with code {process.returncode}; see {self.log_file}")
            if self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedCouchError(f"pouchdb-server did not answer on {self.url} within {timeout}s")

    def stop(self, timeout=10):
        """Stop the server; returns False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _process_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this very process still "exists" until reaped.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def port_in_use(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def free_port(host='127.0.0.1'):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
