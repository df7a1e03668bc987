"""Stopping is prompt and says so: SIGTERM or Ctrl-C while a request hangs
(the fault proxy stalls its response) stops the phase within seconds, not
after the read timeout, with a line saying so, and a rerun goes on from a
checkpoint that is right."""
import signal
import subprocess
import sys
import time

import pytest

from tests import processes
from tests.conftest import PROJECT_DIR
from tests.doctypemigrations.helpers import attachment, manage_py, start_migration, state_db_ready, \
    visible_trees

SLUG = 'user_db_migration'
STOPS_WITHIN = 20  # seconds; a stalled request would otherwise hold the process for the read timeout (300 s)


def _wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def through_proxy(migration_dbs, couch_proxy, subprocess_env, tmp_path):
    """The migration's databases, reached by ./manage.py through the fault proxy."""
    source, target = migration_dbs
    env = dict(subprocess_env, COUCH_SERVER_URL=couch_proxy.url)
    state_db_ready(env, tmp_path)
    return source, target, couch_proxy, env


def _start(env, cwd, *phase):
    # start_migration gives the child SIGINT's default action, whatever this run inherited
    return start_migration(env, cwd, *phase, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc, signum):
    """Send ``signum``; (output, seconds until the process ended)."""
    sent = time.monotonic()
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=STOPS_WITHIN)
    return output, time.monotonic() - sent


def _users(source, n, with_attachment=None):
    docs = [{'_id': f"u{i:03}", 'doc_type': 'CommCareUser', 'n': i} for i in range(n)]
    if with_attachment:
        docs.append({'_id': with_attachment, 'doc_type': 'CommCareUser',
                     '_attachments': {'big.bin': attachment(b'x' * 300_000)}})
    source.bulk_docs(docs)
    return [doc['_id'] for doc in docs]


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_the_dump_waits_on_a_stalled_fetch(through_proxy, tmp_path, signum):
    source, target, proxy, env = through_proxy
    ids = _users(source, 40, with_attachment='a1')
    proxy.stall_after_bytes, proxy.drop_paths = 10, '_bulk_get'  # every doc fetch hangs mid-body
    proc = _start(env, tmp_path, '--initial', '--page-size', '5')
    try:
        _wait_for(lambda: proxy.stalls >= 1, 'a stalled fetch')
        output, _took = _stop(proc, signum)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signum, output
    assert f"Stopped by {signal.Signals(signum).name}: the requests in flight were abandoned" in output
    assert 'Traceback' not in output
    proxy.clear_faults()
    again = manage_py(env, 'run_doctype_migration', SLUG, '--initial', cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert visible_trees(target, ids) == visible_trees(source, ids)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_continuous_fetches_a_large_attachment(through_proxy, tmp_path, signum):
    source, target, proxy, env = through_proxy
    ids = _users(source, 5)
    initial = manage_py(env, 'run_doctype_migration', SLUG, '--initial', cwd=tmp_path, timeout=300)
    assert initial.returncode == 0, initial.stdout + initial.stderr
    proc = _start(env, tmp_path, '--continuous')
    try:
        proxy.stall_after_bytes, proxy.drop_paths = 1000, r'^GET /[^/]+/a1/big\.bin'
        ids += _users(source, 0, with_attachment='a1')  # its data is read by a worker, and hangs
        _wait_for(lambda: proxy.stalls >= 1, 'a stalled attachment')
        output, _took = _stop(proc, signum)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, output  # a follower's stop is no failure
    assert output.strip().splitlines()[-1].startswith('Stopped; checkpoint saved at seq '), output
    proxy.clear_faults()
    again = manage_py(env, 'run_doctype_migration', SLUG, '--continuous', '--until-caught-up', cwd=tmp_path,
                      timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert visible_trees(target, ids) == visible_trees(source, ids)
    assert target.get('a1')['_attachments']['big.bin']['length'] == 300_000


def test_a_stop_while_the_main_thread_waits_on_a_stalled_answer(through_proxy, tmp_path):
    source, _target, proxy, env = through_proxy
    _users(source, 5)
    proxy.stall_after_bytes, proxy.drop_paths = 0, '_view'  # the counts' view read hangs
    proc = _start(env, tmp_path, '--stats')
    try:
        _wait_for(lambda: proxy.stalls >= 1, 'a stalled view read')
        output, _took = _stop(proc, signal.SIGTERM)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert 'Stopped by SIGTERM' in output and 'Traceback' not in output


def test_a_stop_of_delete_doc_conflicts_while_a_read_stalls(through_proxy, tmp_path):
    source, _target, proxy, env = through_proxy
    _users(source, 5)
    initial = manage_py(env, 'run_doctype_migration', SLUG, '--initial', cwd=tmp_path, timeout=300)
    assert initial.returncode == 0, initial.stdout + initial.stderr
    proxy.stall_after_bytes, proxy.drop_paths = 0, '^GET '  # every read hangs
    proc = processes.start([sys.executable, PROJECT_DIR / 'manage.py', 'delete_doc_conflicts', SLUG],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: proxy.stalls >= 1, 'a stalled read')
        output, _took = _stop(proc, signal.SIGINT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, output
    assert 'Stopped by SIGINT' in output and 'delete_doc_conflicts goes on from it' in output
    assert 'Traceback' not in output
