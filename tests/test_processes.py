"""The suite's own process discipline (tests/processes.py): Ctrl-C reaches the
processes the tests start even from a script's background job, and a test that
leaves a process running fails."""
import signal
import subprocess
import sys

import pytest

from tests import processes
from tests.conftest import PROJECT_DIR

SHOW_SIGINT = ('import signal; handler = signal.getsignal(signal.SIGINT); '
               'print({signal.SIG_IGN: "ignored", signal.default_int_handler: "KeyboardInterrupt"}[handler])')
READY_THEN_SLEEP = 'import time; print("ready", flush=True); time.sleep(120)'


@pytest.fixture
def sigint_ignored():
    """This process as a background job of a non-interactive script starts: SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_child_inherits_an_ignored_sigint_unless_started_by_the_tests(sigint_ignored):
    plain = subprocess.run([sys.executable, '-c', SHOW_SIGINT], capture_output=True, text=True, timeout=60)
    assert plain.stdout.strip() == 'ignored'  # what made the Ctrl-C tests wait and fail
    started = processes.run([sys.executable, '-c', SHOW_SIGINT], capture_output=True, text=True, timeout=60)
    assert started.stdout.strip() == 'KeyboardInterrupt'


def test_ctrl_c_interrupts_a_started_process_even_when_this_one_ignores_it(sigint_ignored):
    proc = processes.start([sys.executable, '-c', READY_THEN_SLEEP], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        processes.wait_for_line(proc, 'ready')
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        processes.stop(proc, signal.SIGKILL)
    # Python ends on an uncaught KeyboardInterrupt by SIGINT's default action, after the traceback
    assert proc.returncode == -signal.SIGINT and 'KeyboardInterrupt' in stderr


def test_stop_kills_what_does_not_stop_in_time():
    ignores = 'import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); ' + READY_THEN_SLEEP
    proc = processes.start([sys.executable, '-c', ignores], stdout=subprocess.PIPE, text=True)
    processes.wait_for_line(proc, 'ready')
    processes.stop(proc, signal.SIGINT, timeout=1)
    assert proc.returncode == -signal.SIGKILL


def test_a_silent_process_does_not_hang_wait_for_line():
    proc = processes.start([sys.executable, '-c', 'import time; time.sleep(120)'], stdout=subprocess.PIPE,
                           text=True)
    try:
        with pytest.raises(AssertionError, match="'never printed' never came within 1s"):
            processes.wait_for_line(proc, 'never printed', limit=1)
    finally:
        processes.stop(proc)
    assert proc.returncode == -signal.SIGKILL  # the watchdog's kill ended the readline


LEAKING_TESTS = '''
import subprocess, time

def test_stops_what_it_starts():
    proc = subprocess.Popen(['sleep', '{seconds}'])
    try:
        time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()

def test_leaves_a_child_running():
    subprocess.Popen(['sleep', '{seconds}'])

def test_leaves_an_orphan_running():
    subprocess.run(['sh', '-c', 'sleep {seconds} &'], check=True)
'''


def test_a_test_that_leaves_a_process_running_fails_and_the_process_is_killed(pytester, monkeypatch):
    seconds = '313.7'  # tells these sleeps apart from anything else on the machine
    pytester.makepyfile(LEAKING_TESTS.format(seconds=seconds))
    monkeypatch.setenv('PYTHONPATH', str(PROJECT_DIR))
    result = pytester.runpytest_subprocess('-p', 'tests.processes', '-p', 'no:django',
                                           '-p', 'no:cacheprovider')
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(['*ERROR at teardown of test_leaves_a_child_running*',
                                 '*still running after it ended (now killed):*',
                                 f"*pid *: sleep {seconds}*"])
    result.stdout.fnmatch_lines(['*ERROR at teardown of test_leaves_an_orphan_running*'])
    assert not sleeping(seconds)


def sleeping(seconds):
    ps = subprocess.run(['ps', '-eo', 'stat=,args='], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines()
            if f"sleep {seconds}" in line and not line.startswith('Z')]


LEAKING_SESSION = '''
import subprocess
import pytest

@pytest.fixture(scope='session')
def server():
    yield subprocess.Popen(['sleep', '{seconds}'])  # never stopped
'''


def test_a_session_that_leaves_a_process_running_fails(pytester, monkeypatch):
    seconds = '317.3'
    pytester.makeconftest(LEAKING_SESSION.format(seconds=seconds))
    pytester.makepyfile('def test_uses_the_server(server):\n    assert server.poll() is None\n')
    monkeypatch.setenv('PYTHONPATH', str(PROJECT_DIR))
    result = pytester.runpytest_subprocess('-p', 'tests.processes', '-p', 'no:django',
                                           '-p', 'no:cacheprovider')
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stderr.fnmatch_lines(['*started by the test session were still running at its end*',
                                 f"*pid *: sleep {seconds}*"])
    assert not sleeping(seconds)
