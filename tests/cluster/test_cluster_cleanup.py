"""--cleanup on a 3-node cluster with a node SIGKILLed in the middle of it (or
of the --continuous before it): rerun as the README says until it is
complete, it deleted every migrating doc from the source and lost nothing,
said "Cleanup complete" only when it was true, and never named its canary."""
import subprocess
import threading

import requests
from couchdbkit.exceptions import BulkSaveError, ResourceConflict

from corehq.demo.realistic import write_live
from tests.cluster.faults import NodeOutage, wait_for
from tests.cluster.migrated import (
    SLUG, assert_canary_never_named, assert_target_holds, attempt, live_migrating_ids, migrated, outage,
    populated, seeded_rng, settled,
)
from tests.doctypemigrations.helpers import initial_in_subprocess, manage_py, start_migration, visible_trees
from tests.processes import stop, wait_for_line

CLEANUP = ('run_doctype_migration', SLUG, '--cleanup', '--noinput', '--canary-wait', '1')


def live_ids(db):
    return {row['id'] for row in db.all_docs(include_docs=True) if not row['id'].startswith('_design/')
            and not row['doc'].get('_deleted')}


def write_through(n, seed):
    """About ``n`` realistic writes to the source, going on as an application
    does past a 409 (a write retried after a node died had gone through) or
    a response the dying node cut off: the writer reads the docs again (a
    fresh ``write_live``) and carries on."""
    written = 0
    for round_ in range(n):
        if written >= n:
            return
        try:
            written += sum(write_live(n=10, seed=seed + round_).values())
        except (BulkSaveError, ResourceConflict, requests.RequestException):
            written += 1


def cleaned_up(source, target, first, seed, rerun):
    """Rerun --cleanup after ``first`` (exit 0?, output) until it says it is
    complete (the README's repair), then check what "complete" promises."""
    outputs = [first]
    while not outputs[-1][0] and len(outputs) < 3:
        outputs.append(rerun())
    text = '\n'.join(output for _ok, output in outputs)
    assert_canary_never_named(text, seed)
    assert outputs[-1][0] and 'Cleanup complete' in outputs[-1][1], f"seed {seed}:\n{text}"
    settled(source)
    assert not live_migrating_ids(source), f"seed {seed}: 'Cleanup complete' with docs left:\n{text}"
    return text


def test_a_node_killed_in_the_middle_of_the_cleanup(couch_cluster, migration_dbs):
    source, target = migration_dbs
    summary = migrated(source)
    settled(source)
    before = visible_trees(source, summary.migrating_ids)
    target_live = live_ids(target)
    rng, seed = seeded_rng()
    started = threading.Event()
    with outage(couch_cluster, started, rng, phase_seconds=3.0) as fault:
        started.set()
        # a node that stays down until the test brings it back: the cleanup cannot wait for it
        first = attempt(*CLEANUP, '--settle-wait', '5', '--give-up-after', '30')
    assert fault.error is None
    cleaned_up(source, target, first, seed, lambda: attempt(*CLEANUP))
    settled(target)
    assert_target_holds(target, before, seed)
    assert live_ids(target) >= target_live
    verified, output = attempt('run_doctype_migration', SLUG, '--verify')
    assert verified, f"seed {seed}:\n{output}"


def test_cleanup_right_after_a_continuous_that_rode_out_a_node_restart(
        couch_cluster, migration_dbs, subprocess_env, tmp_path):
    """The operator's report: --continuous rode out a node's SIGKILL and
    restart while the application wrote, then was stopped; the --cleanup
    right after it named its own canary, or a doc nothing had changed, or
    said nothing of docs it left live."""
    source, target = migration_dbs
    env, cwd = subprocess_env, tmp_path
    rng, seed = seeded_rng()
    populated(source, 240, seed)
    initial_in_subprocess(env, cwd)
    follower = start_migration(env, cwd, '--continuous', stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        wait_for_line(follower, 'All caught up')
        writes = threading.Event()
        with NodeOutage(couch_cluster, rng.choice((2, 3)), when=writes.is_set, delay=(0.0, 2.0),
                        back_after=(1.0, 3.0), seed=seed) as fault:
            writes.set()
            write_through(60, seed)
            wait_for(fault.back.is_set, what='the node back')
        assert fault.error is None
    finally:
        stop(follower)
    caught_up = manage_py(env, 'run_doctype_migration', SLUG, '--continuous', '--until-caught-up', cwd=cwd)
    assert caught_up.returncode == 0, caught_up.stderr
    settled(source)
    ids = sorted(live_migrating_ids(source))
    before = visible_trees(source, ids)

    def cleanup():
        done = manage_py(env, *CLEANUP, cwd=cwd)
        return done.returncode == 0, done.stdout + done.stderr

    cleaned_up(source, target, cleanup(), seed, cleanup)
    settled(target)
    assert_target_holds(target, before, seed)
    verify = manage_py(env, 'run_doctype_migration', SLUG, '--verify', cwd=cwd)
    assert verify.returncode == 0, f"seed {seed}:\n{verify.stdout}{verify.stderr}"
