"""Running ``manage.py`` as the operator would: a process of its own per phase,
pointed at the bench's server, databases and state file through the environment.

Peak RSS is the child's own high-water mark (``VmHWM``), read while it runs:
``wait4``'s ``ru_maxrss`` (what ``/usr/bin/time -v`` reports) also counts the
bench's own memory, which the child had as a forked copy until its exec, so a
bench holding docs in memory (the read-alone figure's) would show in every
phase's peak. ``ru_maxrss`` stays the answer where no ``VmHWM`` was read.
"""
import copy
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
MANAGE_PY = PROJECT_DIR / 'manage.py'
SLUG = 'user_db_migration'


class CommandFailed(Exception):
    pass


@dataclass
class Finished:
    args: tuple
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float = None   # user + system CPU of the command (from the same rusage)

    def check(self, ok_codes=(0,)):
        if self.returncode not in ok_codes:
            raise CommandFailed(f"manage.py {' '.join(self.args)} exited with {self.returncode}:\n"
                                f"{self.stdout[-2000:]}\n{self.stderr[-2000:]}")
        return self


class Running:
    """A started command; ``finish`` reaps it and reports what it cost.

    The child is reaped only here, with ``wait4`` (never through Popen's
    poll/wait), so its rusage is never lost to another waiter.
    """

    def __init__(self, args, process, started, out_path, err_path):
        self.args = args
        self.process = process
        self.started = started
        self.out_path = out_path
        self.err_path = err_path
        self._reaped = None   # (exit code, rusage, seconds) once reaped
        self._hwm_kb = 0      # the highest VmHWM read (Popen returns after the exec: it is the command's)

    def output(self):
        return self.out_path.read_text(errors='replace')

    def poll(self):
        """The exit code, or None while it runs."""
        if self._reaped is None:
            self._hwm_kb = max(self._hwm_kb, _vm_hwm_kb(self.process.pid))
            pid, status, rusage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self._reaped = (os.waitstatus_to_exitcode(status), rusage, time.monotonic() - self.started)
                self.process.returncode = self._reaped[0]  # so Popen never waits for it again
        return None if self._reaped is None else self._reaped[0]

    def finish(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                deadline = None
            time.sleep(0.005)
        code, rusage, seconds = self._reaped
        return Finished(self.args, seconds, (self._hwm_kb or rusage.ru_maxrss) / 1024, code,
                        self.output(), self.err_path.read_text(errors='replace'),
                        rusage.ru_utime + rusage.ru_stime)

    def interrupt(self, timeout=30):
        """Ctrl-C, as an operator stops --continuous (it commits and stops beating)."""
        self._signal(signal.SIGINT)
        return self.finish(timeout)

    def kill(self):
        """Stop and reap a command still running (after a failure or an interrupt)."""
        if self.poll() is None:
            self._signal(signal.SIGKILL)
            self.finish()

    def _signal(self, signum):
        if self.poll() is None:
            os.kill(self.process.pid, signum)


def _vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith('VmHWM:')), 0)
    except (OSError, ValueError, IndexError):
        return 0


def _default_sigint():
    # A bench started in the background inherits an ignored SIGINT, and Python
    # keeps it ignored: --continuous could then not be stopped like Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Project:
    """``manage.py`` for one main database on the bench server, with its own
    state database and working directory (where --initial puts its dump file)."""

    def __init__(self, workdir, server_url, main_db, label):
        self.main_db = main_db
        self.target_db = f"{main_db}__users"
        self.server_url = server_url
        self.workdir = Path(workdir) / label
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.workdir / 'state.sqlite3'
        self._numbers = itertools.count(1)   # shared with via() copies: no output file is reused
        self.users_groups_db = None   # the app reads its users from the main db: before the flip

    def env(self):
        env = dict(os.environ)
        env.pop('USERS_GROUPS_DB', None)
        if self.users_groups_db:
            env['USERS_GROUPS_DB'] = self.users_groups_db
        env.update({
            'COUCH_SERVER_URL': self.server_url,
            'COUCH_DATABASE_NAME': self.main_db,
            'DATABASE_URL': f"sqlite:///{self.state_path}",
            'UNIT_TESTING': '1',            # let `migrate` pass the blocking migration
            'PYTHONUNBUFFERED': '1',
            'PYTHONPATH': str(PROJECT_DIR),
        })
        return env

    def start(self, *args, wrapper=()):
        number = next(self._numbers)
        out_path = self.workdir / f"cmd{number}.out"
        err_path = self.workdir / f"cmd{number}.err"
        with open(out_path, 'wb') as out, open(err_path, 'wb') as err:
            started = time.monotonic()
            process = subprocess.Popen(
                [*wrapper, sys.executable, str(MANAGE_PY), *args], cwd=self.workdir, env=self.env(),
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=_default_sigint)
        return Running(args, process, started, out_path, err_path)

    def run(self, *args, timeout=1800, wrapper=(), ok_codes=(0,)):
        running = self.start(*args, wrapper=wrapper)
        try:
            return running.finish(timeout).check(ok_codes)
        finally:
            running.kill()

    def via(self, server_url):
        """The same project (state, working directory, databases) reaching
        CouchDB at ``server_url``: a proxy standing for a link to a remote cluster."""
        other = copy.copy(self)
        other.server_url = server_url
        return other

    def flipped(self):
        """The same project once the flip deployed (USERS_GROUPS_DB=users, as
        .ci/demo sets it): the app reads its users from the migration's target."""
        other = copy.copy(self)
        other.users_groups_db = 'users'
        return other

    @property
    def dump_path(self):
        return self.workdir / f"{SLUG}.log"

    def fresh_state(self):
        """A new, empty state database with its tables, and no dump file."""
        self.state_path.unlink(missing_ok=True)
        self.dump_path.unlink(missing_ok=True)
        self.run('migrate', '--verbosity', '0')

    def sync_design_docs(self):
        """Design docs on the source and target, creating the target; no index built."""
        self.run('sync_couch_views', '--no-build', '--verbosity', '0')
