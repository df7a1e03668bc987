"""--verify on a 3-node cluster with a node SIGKILLed in the middle of it:
the verdict is right and each doc is counted once, however often the feed
delivers it again after the node leaves or comes back."""
import re
import threading

from tests.cluster.migrated import SLUG, assert_canary_never_named, attempt, migrated, outage, seeded_rng


def counts(output):
    line = next(line for line in output.splitlines() if re.match(r"\d+ equal, ", line))
    return {kind: int(n) for n, kind in re.findall(r"(\d+) ([a-z][a-z -]*)", line)}


def test_a_node_killed_in_the_middle_of_verify(couch_cluster, migration_dbs):
    source, _target = migration_dbs
    summary = migrated(source)
    rng, seed = seeded_rng()
    started = threading.Event()
    with outage(couch_cluster, started, rng, phase_seconds=2.0) as fault:
        started.set()
        # small pages: a node leaving or coming back rewinds the feed over many of them
        verified, output = attempt('run_doctype_migration', SLUG, '--verify', '--page-size', '10')
    assert fault.error is None
    assert verified, f"seed {seed}:\n{output}"
    assert_canary_never_named(output, seed)
    assert counts(output) == {'equal': len(summary.migrating_ids), 'missing in target': 0, 'stale': 0,
                              'extra': 0}, f"seed {seed}:\n{output}"
