"""delete_doc_conflicts on a 3-node cluster with a node SIGKILLed in the middle
of it: rerun until it reports no failure, every migrating doc keeps its
winner and has no live conflict left, the staying docs keep theirs, and the
migration still verifies."""
import threading

from corehq.couch import copies
from tests.cluster.migrated import DOC_TYPES, SLUG, attempt, migrated, outage, seeded_rng, settled
from tests.doctypemigrations.helpers import make_conflicted, visible_trees


def winners(db, doc_ids):
    return {doc_id: (tree['winner'], tree['deleted']) for doc_id, tree in visible_trees(db, doc_ids).items()}


def conflicts_left(db, doc_ids):
    return {doc_id for doc_id, tree in visible_trees(db, doc_ids).items() if len(tree['bodies']) > 1}


def test_a_node_killed_in_the_middle_of_delete_doc_conflicts(couch_cluster, migration_dbs):
    source, _target = migration_dbs
    conflicted = [f"conflicted-{i}" for i in range(40)]
    for doc_id in conflicted:
        make_conflicted(source, doc_id, {'doc_type': DOC_TYPES[i % 2] if (i := int(doc_id[11:])) < 30
                                         else 'XFormInstance'})
    summary = migrated(source)
    migrating = summary.migrating_ids + conflicted[:30]
    settled(source)
    before = winners(source, migrating + conflicted[30:])
    rng, seed = seeded_rng()
    started = threading.Event()
    with outage(couch_cluster, started, rng, phase_seconds=2.0) as fault:
        started.set()
        runs = [attempt('delete_doc_conflicts', SLUG, '--page-size', '20')]
    assert fault.error is None
    while not runs[-1][0] and len(runs) < 3:
        runs.append(attempt('delete_doc_conflicts', SLUG))
    assert runs[-1][0], f"seed {seed}: {runs}"
    copies.settle(source, 120)
    assert winners(source, migrating + conflicted[30:]) == before, f"seed {seed}"
    assert not conflicts_left(source, migrating), f"seed {seed}"
    assert conflicts_left(source, conflicted[30:]) == set(conflicted[30:]), f"seed {seed}"
    # the deleted losing leaves reach the target as --continuous copies them
    caught_up, output = attempt('run_doctype_migration', SLUG, '--continuous', '--until-caught-up')
    assert caught_up, f"seed {seed}:\n{output}"
    verified, output = attempt('run_doctype_migration', SLUG, '--verify')
    assert verified, f"seed {seed}:\n{output}"
