"""Pillows on a 3-node cluster: ``run_pillow`` with a writer running and
``move_pillow_checkpoint`` after the flip, each with a node SIGKILLed at a
random moment and brought back. The pillow never dies of it, and its index
ends equal to a rebuild from scratch: no change was skipped."""
import signal
import sqlite3
import subprocess

import pytest

from tests import processes
from tests.cluster.faults import NodeOutage, wait_for
from tests.cluster.workload import SLUG, Writer, holds_claim, manage, populate
from tests.doctypemigrations.helpers import state_db_ready
from tests.pillows.helpers import start_manage

PILLOW = ('run_pillow', 'user_index', '--batch-size', '20')


def index(tmp_path):
    with sqlite3.connect(tmp_path / 'state.sqlite3') as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT doc_id, doc_type, domain, name, active FROM pillows_userindexentry")}


def caught_up_then_rebuilt(env, cwd):
    """(the index after the pillow caught up, the index a rebuild from scratch makes)."""
    caught_up = manage(env, cwd, *PILLOW, '--until-caught-up')
    assert caught_up.returncode == 0, caught_up.stderr
    incremental = index(cwd)
    rebuilt = manage(env, cwd, *PILLOW, '--rebuild', '--until-caught-up')
    assert rebuilt.returncode == 0, rebuilt.stderr
    return incremental, index(cwd)


@pytest.mark.parametrize('node', [1, 3])
def test_run_pillow_rides_out_a_node_restart_with_a_writer_running(
        couch_cluster, couch_settings, migration_dbs, subprocess_env, tmp_path, node):
    source_url = couch_settings.db_url(None)
    populate(source_url, 300, seed=node)
    state_db_ready(subprocess_env, tmp_path)
    writer = Writer(source_url, seed=node)
    log = open(tmp_path / 'pillow.out', 'w+')
    pillow = start_manage(subprocess_env, tmp_path, *PILLOW, stdout=log, stderr=log)
    try:
        writer.start()
        with NodeOutage(couch_cluster, node, when=lambda: writer.writes > 20 and holds_claim(
                tmp_path, pillow.pid, 'pillows_pillowcheckpoint'), delay=(0, 3),
                        back_after=(1, 5)) as outage:
            wait_for(lambda: outage.back.is_set() or writer.error or outage.error,
                     what=f"node {node} killed and back")
        assert outage.error is None, outage.error
        back_at = writer.writes
        wait_for(lambda: writer.writes > back_at + 30 or writer.error, what='writes after the node came back')
        writer.stop()
        assert pillow.poll() is None, (tmp_path / 'pillow.out').read_text()[-3000:]
    finally:
        writer.stopping.set()
        processes.stop(pillow, signal.SIGTERM)
        log.close()
    out = (tmp_path / 'pillow.out').read_text()
    assert pillow.returncode == 0 and 'Stopped; checkpoint saved' in out, out[-3000:]
    incremental, rebuilt = caught_up_then_rebuilt(subprocess_env, tmp_path)
    assert len(rebuilt) > 50
    assert incremental == rebuilt


@pytest.mark.parametrize('node', [1, 3])
def test_move_pillow_checkpoint_rides_out_a_node_killed_during_the_move(
        couch_cluster, couch_settings, migration_dbs, subprocess_env, tmp_path, node):
    source, target = migration_dbs
    populate(couch_settings.db_url(None), 300, seed=node)
    state_db_ready(subprocess_env, tmp_path)
    for args in (('run_doctype_migration', SLUG, '--initial'), PILLOW + ('--until-caught-up',)):
        done = manage(subprocess_env, tmp_path, *args)
        assert done.returncode == 0, done.stderr
    source.bulk_docs([{'_id': f"late{i}", 'doc_type': 'CommCareUser', 'username': f"late{i}", 'domain': 'd'}
                      for i in range(20)])
    for args in (('run_doctype_migration', SLUG, '--continuous', '--until-caught-up'),
                 PILLOW + ('--until-caught-up',)):  # stopped before the flip, past the pair
        done = manage(subprocess_env, tmp_path, *args)
        assert done.returncode == 0, done.stderr
    flipped = dict(subprocess_env, USERS_GROUPS_DB='users')
    target.bulk_docs([{'_id': f"new{i}", 'doc_type': 'WebUser', 'username': f"new{i}", 'domain': 'd'}
                      for i in range(10)])  # the app writes to the new database after the flip
    move = start_manage(flipped, tmp_path, 'move_pillow_checkpoint', 'user_index', SLUG,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # killed while the move starts up or reads: Django's start-up takes longer than the delay
        with NodeOutage(couch_cluster, node, delay=(0.2, 1.5), back_after=(1, 4)) as outage:
            wait_for(lambda: outage.killed.is_set() or outage.error, what=f"node {node} killed")
            out, err = move.communicate(timeout=300)
        assert outage.error is None, outage.error
    finally:
        processes.stop(move, signal.SIGKILL)
    if move.returncode != 0:  # node 1 gone before its first answer: said at once, nothing moved
        assert node == 1 and 'reach' in err and 'Traceback' not in err, err
        rerun = manage(flipped, tmp_path, 'move_pillow_checkpoint', 'user_index', SLUG)
        assert rerun.returncode == 0, rerun.stderr
        out = rerun.stdout
    assert 'Moved pillow user_index' in out, out
    incremental, rebuilt = caught_up_then_rebuilt(flipped, tmp_path)
    assert {f"new{i}" for i in range(10)} <= set(rebuilt)
    assert incremental == rebuilt
