"""A small realistic migration on the cluster, and what must hold of it after
a phase a node failed in the middle of: shared by the cleanup, verify and
delete_doc_conflicts cluster tests."""
import random
from io import StringIO

from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.couch import copies
from corehq.demo.realistic import populate
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.selection import CANARY_PREFIX, live_migrating
from tests.cluster.faults import NodeOutage
from tests.doctypemigrations.helpers import run, visible_trees

SLUG = 'user_db_migration'
DOC_TYPES = users_migration.all_doc_types


def migrated(source, total=240, seed=0):
    """``total`` realistic docs in the source, ``--initial`` done; returns the
    populate Summary (``migrating_ids``: the live migrating docs)."""
    summary = populated(source, total, seed)
    run(SLUG, '--initial')
    return summary


def populated(source, total, seed):
    """Realistic docs written. Not settled here: --initial lists the docs from
    one copy of each range, and the third copy of a write acknowledged by two
    may not have it yet (seen: a fresh --initial missing 2 docs of 77), so
    --initial itself waits for the copies to agree before it dumps."""
    return populate(total, seed=seed)


def settled(db):
    """Wait until the cluster's copies of ``db`` agree: a comparison read
    afterwards sees what every copy holds, whichever copy answers."""
    copies.settle(db, max_wait=120)


def outage(cluster, started, rng, nodes=(1, 2, 3), phase_seconds=4.0, may_stay_down=True):
    """A NodeOutage of a node drawn from ``nodes``, killed at a random moment
    of the phase (up to ``phase_seconds`` after ``started`` is set) and back
    during the phase, or, for another node than the one the client talks
    to, only when the test restores it (``outage.back_after is None``)."""
    node = rng.choice(nodes)
    stays_down = may_stay_down and node != 1 and rng.random() < 0.5
    return NodeOutage(cluster, node, when=started.is_set, delay=(0.0, phase_seconds),
                      back_after=None if stays_down else (0.5, 3.0), seed=rng.randrange(2 ** 32))


def seeded_rng():
    """A random seed for the moment of the fault, printed so that a failing
    run can be replayed with it."""
    seed = random.randrange(2 ** 32)
    print(f"fault seed {seed}")
    return random.Random(seed), seed


def attempt(command, *args, **kwargs):
    """(exit 0?, stdout + the CommandError's message) of one command run in-process."""
    out = StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=StringIO(), **kwargs)
    except CommandError as e:
        return False, out.getvalue() + f"\nCommandError: {e}"
    return True, out.getvalue()


def live_migrating_ids(source):
    """The migrating docs live in the source, each read from every copy."""
    ids = [row['id'] for row in source.all_docs()]
    return set(live_migrating(source, DOC_TYPES, ids))


def assert_target_holds(target, before, seed):
    """Every migrating doc has the winner, leaves and attachments in the
    target it had in the source before the phase."""
    after = visible_trees(target, list(before))
    lost = sorted(doc_id for doc_id in before if after[doc_id] != before[doc_id])
    assert not lost, f"seed {seed}: the target's copies differ for {lost[:5]} ({len(lost)} docs)"


def assert_canary_never_named(output, seed):
    assert CANARY_PREFIX not in output, f"seed {seed}: the canary was named:\n{output}"
