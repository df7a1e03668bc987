"""--initial on a 3-node cluster: a node SIGKILLed in the middle of the dump
or of the load, brought back during the phase (node 1, the one the client
talks to, which the phase must wait for) or after it (node 2 or 3, which the
others stand in for). The phase rides it out and the target holds every
migrating doc as the source does."""
import random
import signal
import subprocess

import pytest

from tests import processes
from tests.cluster.faults import NodeOutage, wait_for
from tests.cluster.workload import SLUG, assert_target_matches, assert_verify_clean, populate
from tests.doctypemigrations.helpers import start_migration, state_db_ready


def _dumping(tmp_path):
    dump = tmp_path / f"{SLUG}.log"
    return lambda: dump.exists() and dump.stat().st_size > 2000


def _loading(target, docs):
    return lambda: target.info()['doc_count'] > docs


@pytest.mark.parametrize('stage', ['dump', 'load'])
@pytest.mark.parametrize('node, back_during_the_phase', [(1, True), (3, False)])
def test_initial_rides_out_a_node_killed_midway(couch_cluster, couch_settings, migration_dbs, subprocess_env,
                                                tmp_path, stage, node, back_during_the_phase):
    source, target = migration_dbs
    migrating = len(populate(couch_settings.db_url(None), 300, seed=node).migrating_ids)
    state_db_ready(subprocess_env, tmp_path)
    # The moment drawn as a point of the phase, not as a delay: the phase is frozen from it
    # until the node is killed, so a fast server cannot end the phase first.
    rng = random.Random(node)
    when = _dumping(tmp_path) if stage == 'dump' else _loading(target, rng.randint(10, migrating // 2))
    initial = start_migration(subprocess_env, tmp_path, '--initial', '--page-size', '10', '--keep-dump',
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with NodeOutage(couch_cluster, node, when=when, delay=(0, 0), freeze=initial,
                        back_after=(1, 4) if back_during_the_phase else None) as outage:
            wait_for(lambda: outage.killed.is_set() or initial.poll() is not None or outage.error,
                     what=f"node {node} killed")
            out, err = initial.communicate(timeout=300)
        assert outage.error is None, outage.error
    finally:
        processes.stop(initial, signal.SIGKILL)
    assert outage.killed.is_set(), 'the phase ended before the node was killed'
    assert initial.returncode == 0, err
    assert 'Initial migration complete' in out
    assert_target_matches(source, target)
    assert_verify_clean(subprocess_env, tmp_path)
