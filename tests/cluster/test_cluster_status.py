"""--status and --stats while a node of the cluster is away, a follower
running: they answer what they answer with every node up, or say they
cannot tell; never something false."""
import json
import signal
import subprocess

import pytest

from tests import processes
from tests.cluster.faults import NodeOutage, wait_for
from tests.cluster.workload import SLUG, manage, populate
from tests.doctypemigrations.helpers import start_migration, state_db_ready

UNREADABLE = 2


def _status(env, cwd):
    done = manage(env, cwd, 'run_doctype_migration', SLUG, '--status', '--json', timeout=120)
    return done.returncode, done.stdout, done.stderr


def _stats(env, cwd):
    done = manage(env, cwd, 'run_doctype_migration', SLUG, '--stats', timeout=300)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize('node', [1, 3])
def test_status_and_stats_are_never_false_while_a_node_is_away(
        couch_cluster, couch_settings, migration_dbs, subprocess_env, tmp_path, node):
    source, target = migration_dbs
    populate(couch_settings.db_url(None), 300, seed=node)
    state_db_ready(subprocess_env, tmp_path)
    initial = manage(subprocess_env, tmp_path, 'run_doctype_migration', SLUG, '--initial')
    assert initial.returncode == 0, initial.stderr
    follower = start_migration(subprocess_env, tmp_path, '--continuous', stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        processes.wait_for_line(follower, 'All caught up!')
        code, out, err = _status(subprocess_env, tmp_path)
        assert code == 0, out + err
        truth = json.loads(out)
        stats_truth = _stats(subprocess_env, tmp_path)
        assert stats_truth[0] == 0, stats_truth
        with NodeOutage(couch_cluster, node, back_after=None) as outage:
            wait_for(lambda: outage.killed.is_set() or outage.error, what=f"node {node} killed")
            assert outage.error is None, outage.error
            down_status = _status(subprocess_env, tmp_path)
            down_stats = _stats(subprocess_env, tmp_path)
            outage.restore()
        assert follower.poll() is None  # the follower rode it out
    finally:
        processes.stop(follower, signal.SIGTERM)
    assert follower.returncode == 0
    _assert_true_or_unreadable(down_status, truth)
    _assert_same_or_cannot_tell(down_stats, stats_truth)
    if node != 1:  # the other nodes stand in for it: both answer
        assert down_status[0] == 0 and down_stats[0] == 0, (down_status, down_stats)


def _assert_true_or_unreadable(answer, truth):
    code, out, err = answer
    assert 'Traceback' not in err, err
    report = json.loads(out)
    if code == UNREADABLE:
        assert not report['couch']['reachable'] and report['couch']['problems'], report
        assert 'adminpw' not in out + err
        return
    assert code == 0, out + err  # nothing changed: no attention needed
    for key in ('phase', 'slug', 'refused_count'):
        assert report[key] == truth[key], (key, report[key], truth[key])
    assert report['heartbeat']['action'] == truth['heartbeat']['action']
    assert report['couch']['reachable'] and report['pending'] is not None


def _assert_same_or_cannot_tell(answer, truth):
    code, out, err = answer
    assert 'Traceback' not in err, err
    if code == 0:
        assert out == truth[1]  # the same counts as with every node up
    else:
        assert 'CommandError' in err and ('reach' in err or 'kept failing' in err), err
        assert 'adminpw' not in out + err
