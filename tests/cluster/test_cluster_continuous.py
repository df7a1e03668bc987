"""--continuous on a 3-node cluster, with a writer running as the guide has
one: a node SIGKILLed at a random moment and brought back while it follows.
The follower never dies of it (a cluster answers 412 nodedown "progress not
possible" while a node dies or rejoins, which the client retries), and what
it copied is what the source holds."""
import random
import signal
import subprocess

import pytest

from tests import processes
from tests.cluster.faults import NodeOutage, wait_for
from tests.cluster.workload import (
    SLUG, Writer, assert_target_matches, assert_verify_clean, holds_claim, manage, populate,
)
from tests.doctypemigrations.helpers import start_migration, state_db_ready
from tests.processes import wait_for_line


@pytest.mark.parametrize('node', [1, 2, 3])
def test_continuous_rides_out_a_node_restart_with_a_writer_running(
        couch_cluster, couch_settings, migration_dbs, subprocess_env, tmp_path, node):
    source, target = migration_dbs
    source_url = couch_settings.db_url(None)
    populate(source_url, 300, seed=node)
    state_db_ready(subprocess_env, tmp_path)
    initial = manage(subprocess_env, tmp_path, 'run_doctype_migration', SLUG, '--initial')
    assert initial.returncode == 0, initial.stderr
    writer = Writer(source_url, seed=random.randrange(10 ** 6))
    log = open(tmp_path / 'continuous.out', 'w+')
    follower = start_migration(subprocess_env, tmp_path, '--continuous', '--page-size', '20',
                               stdout=log, stderr=log)
    try:
        writer.start()
        with NodeOutage(couch_cluster, node, when=lambda: writer.writes > 20 and holds_claim(
                tmp_path, follower.pid), delay=(0, 3),
                        back_after=(2, 8)) as outage:
            wait_for(lambda: outage.back.is_set() or writer.error or outage.error,
                     what=f"node {node} killed and back")
        assert outage.error is None, outage.error
        back_at = writer.writes
        wait_for(lambda: writer.writes > back_at + 30, what='writes after the node came back')
        writer.stop()
        assert follower.poll() is None, _output(log)  # alive through the restart
        assert_target_matches(source, target)  # caught up while it runs
        assert follower.poll() is None, _output(log)
    finally:
        writer.stopping.set()
        processes.stop(follower, signal.SIGTERM)
        log.close()
    assert follower.returncode == 0, (tmp_path / 'continuous.out').read_text()
    assert 'Stopped; checkpoint saved' in (tmp_path / 'continuous.out').read_text()
    assert writer.writes > 50
    assert_verify_clean(subprocess_env, tmp_path)


def test_caught_up_is_said_only_once_the_copies_agree(couch_cluster, couch_settings, migration_dbs,
                                                      subprocess_env, tmp_path):
    """While a node is down, a range of the feed may come from a copy that
    lacks a write only the down node's copy shares with a third: --continuous
    reads to the end but does not say caught up (it says what it waits for);
    once the node is back and every copy pushed, it does."""
    source, target = migration_dbs
    source_url = couch_settings.db_url(None)
    populate(source_url, 300, seed=7)
    state_db_ready(subprocess_env, tmp_path)
    assert manage(subprocess_env, tmp_path, 'run_doctype_migration', SLUG, '--initial').returncode == 0
    couch_cluster.kill_node(2)
    populate(source_url, 60, seed=8)  # written while node 2 is down
    follower = start_migration(subprocess_env, tmp_path, '--continuous', '--until-caught-up',
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = wait_for_line(follower, 'do not agree yet')
        assert not [line for line in lines if 'All caught up' in line], lines
        assert 'node2@127.0.0.1 down' in lines[-1]
        couch_cluster.start_node(2)
        wait_for_line(follower, 'All caught up')
        assert follower.wait(timeout=120) == 0
    finally:
        processes.stop(follower)
    assert_target_matches(source, target)


def _output(log):
    log.flush()
    log.seek(0)
    return log.read()[-3000:]
