"""The processes the tests start: started the way an operator's shell starts them,
stopped pass or fail, and none left running after its test (tests/conftest.py loads
this module as a plugin).

A background job of a non-interactive script (`bash .ci/test &`, nohup) inherits
SIGINT as ignored, and so would every process the tests start: Python then never
turns Ctrl-C into KeyboardInterrupt, and a test that stops a process with SIGINT
waits for nothing. ``start`` gives every child SIGINT's default action back first.

Every process started while a test runs carries that test's mark in its
environment (their own children too, orphans included). Whatever still runs with
the mark once the test's fixtures are torn down is killed, and fails the test.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

MARK = 'TESTS_STARTED_IN'

# Reset in the child, then exec: the pid stays the one the test knows, and no
# preexec_fn runs between fork and exec while the proxy's threads hold locks.
_DEFAULT_SIGINT = ('import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
                   'os.execvp(sys.argv[1], sys.argv[1:])')


def with_default_sigint(args):
    """``args`` run with SIGINT's default action, whatever this process inherited."""
    return [sys.executable, '-c', _DEFAULT_SIGINT, *map(str, args)]


def start(args, **popen_kwargs):
    """Popen of ``args``, which Ctrl-C (SIGINT) interrupts as in a terminal."""
    return subprocess.Popen(with_default_sigint(args), **popen_kwargs)


def run(args, **run_kwargs):
    """subprocess.run of ``args``, with SIGINT's default action (see ``start``)."""
    return subprocess.run(with_default_sigint(args), **run_kwargs)


def stop(proc, sig=signal.SIGINT, timeout=60):
    """Ask ``proc`` to stop with ``sig``, SIGKILL it if it is still running after
    ``timeout`` seconds; returns what was left of its output (communicate's pair)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def kill_when(proc, condition, limit=120):
    """SIGKILL ``proc`` in the state in which ``condition()`` is first seen to
    hold: it is stopped while each look is taken, so it cannot go on past that
    state before the kill, however slowly the looks come. Fails after
    ``limit`` seconds without it (a safety net, not a timing assumption)."""
    deadline = time.monotonic() + limit
    while proc.poll() is None:
        with stopped(proc):
            if condition():
                proc.kill()
                return
        assert time.monotonic() < deadline, f"pid {proc.pid}: the state to kill it in never came"
        time.sleep(0.02)
    raise AssertionError(f"the process ended (exit {proc.returncode}) before the state to kill it in")


@contextmanager
def stopped(proc):
    """``proc`` (a Popen, or None: nothing done) stopped by SIGSTOP for the
    block, and going on afterwards, pass or fail. The block begins only once
    the kernel shows it stopped: the signal alone may still be on its way."""
    if proc is None or proc.poll() is not None:
        yield
        return
    proc.send_signal(signal.SIGSTOP)
    try:
        while proc.poll() is None and _state(proc.pid) not in ('T', 'Z', None):
            time.sleep(0.001)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)


def _state(pid):
    """The one-letter state /proc shows for ``pid`` (T: stopped), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(')')[2].split()[0]
    except OSError:
        return None


@contextmanager
def running(args, stop_signal=signal.SIGINT, timeout=60, **popen_kwargs):
    """``start(args)`` for the block; stopped afterwards, pass or fail (see ``stop``)."""
    proc = start(args, **popen_kwargs)
    try:
        yield proc
    finally:
        stop(proc, stop_signal, timeout)


def wait_for_line(proc, text, limit=120):
    """The lines ``proc`` printed up to the first containing ``text``. A process
    silent for ``limit`` seconds is killed: a readline must not block forever."""
    watchdog = threading.Timer(limit, proc.kill)
    watchdog.start()
    lines = []
    try:
        while line := proc.stdout.readline():
            lines.append(line)
            if text in line:
                return lines
    finally:
        watchdog.cancel()
    raise AssertionError(f"{text!r} never came within {limit}s; got {lines}")


# -- none left behind ---------------------------------------------------------------------

def marked(mark):
    """[(pid, command line)] of the live processes whose environment has ``MARK=mark``."""
    wanted = f"{MARK}={mark}".encode()
    found = []
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", 'rb') as environ:
                if wanted not in environ.read().split(b'\0'):
                    continue
            with open(f"/proc/{entry.name}/cmdline", 'rb') as cmdline:
                args = cmdline.read().replace(b'\0', b' ').decode(errors='replace').strip()
        except OSError:  # gone meanwhile, or another user's
            continue
        if args:  # a zombie has no command line left: it is not running
            found.append((int(entry.name), args))
    return found


def kill(processes, timeout=10):
    """SIGKILL each (pid, command line) and wait until they are gone."""
    for pid, _args in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid, _args in processes):
        time.sleep(0.05)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", 'rb') as stat:
            return stat.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except OSError:
        return False


def describe(processes):
    return '\n'.join(f"  pid {pid}: {args}" for pid, args in processes)


class _Marks:
    """The session's mark, and a fresh one for each test."""

    def __init__(self):
        self.session = str(os.getpid())
        self.tests = 0

    def next_test(self):
        self.tests += 1
        return f"{self.session}-{self.tests}"


_marks = _Marks()


def pytest_configure(config):
    os.environ[MARK] = _marks.session


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Fails the test when a process it started outlives its teardown (after
    killing it): autouse, so it is torn down after the test's own fixtures."""
    mark = _marks.next_test()
    os.environ[MARK] = mark
    try:
        yield
    finally:
        os.environ[MARK] = _marks.session
    left = marked(mark)
    if left:
        kill(left)
        pytest.fail(f"processes started by this test were still running after it ended "
                    f"(now killed):\n{describe(left)}", pytrace=False)


def pytest_sessionfinish(session):
    """Session fixtures (pouchdb-server, proxies) must be gone too."""
    left = marked(_marks.session)
    if left:
        kill(left)
        sys.stderr.write(f"\nprocesses started by the test session were still running at its end "
                         f"(now killed):\n{describe(left)}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
