"""The --cleanup phase: delete migrated documents from the source.

A document goes only when the target holds every live leaf revision the
source has (as a leaf or in its history: docs edited in the target after the
flip go too); every live leaf of it is deleted, so no conflict resurfaces in
the source. Docs with revisions the target lacks are listed and left alone.
Rerunning resumes: deleted docs are no longer of a migrating type in the source.
"""
import time
import uuid
from collections import namedtuple

from corehq.doctypemigrations import checkpoints
from corehq.doctypemigrations.loader import delete_revs
from corehq.doctypemigrations.selection import migrating_leaves

CleanupResult = namedtuple('CleanupResult', 'deleted differing errors')
HEARTBEAT_MAX_AGE = 90  # seconds; a running --continuous beats at least every max_wait (30 s)


class CleanupRefused(Exception):
    pass


def check_can_clean_up(state, slug):
    if not checkpoints.initial_complete(state):
        raise CleanupRefused(f"{slug!r} has no completed initial migration: there is nothing "
                             f"in the target to trust yet. Run --initial (and --continuous) first.")


def check_not_following(state, source, target, doc_type, canary_wait):
    """Refuse while a --continuous is copying: it would mirror the deletions.

    The heartbeat sees a follower using this state database; the canary (a doc
    written to the source, watched for in the target) sees any follower at all.
    """
    if checkpoints.heartbeat_is_fresh(state, HEARTBEAT_MAX_AGE):
        raise CleanupRefused("A --continuous run is active (its heartbeat is fresh): stop it "
                             "with Ctrl-C first, or the cleanup's deletions would reach the target.")
    if canary_wait and _canary_arrives(source, target, doc_type, canary_wait):
        raise CleanupRefused("A --continuous run is copying from the source (a canary doc reached "
                             "the target): stop it first, or the cleanup's deletions would reach the target.")


def _canary_arrives(source, target, doc_type, wait):
    doc_id = f"doctype-migration-canary-{uuid.uuid4().hex}"
    rev = source.put({'_id': doc_id, 'doc_type': doc_type, 'canary': True})['rev']
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if target.get(doc_id) is not None:
                return True
            time.sleep(0.2)
        return False
    finally:
        source.bulk_docs([{'_id': doc_id, '_rev': rev, '_deleted': True}])


def clean_up(migrator, source, target, page_size=1000, dry_run=False, progress=None):
    """Delete from the source every migrating doc whose every live leaf the target holds."""
    deleted, differing, errors = 0, [], []
    for leaves, scanned in migrating_leaves(source, migrator.all_doc_types, page_size):
        same, different = _split_by_target(target, leaves)
        differing.extend(different)
        if not dry_run:
            errors.extend(delete_revs(source, [(doc_id, rev) for doc_id, revs in same for rev in revs]))
        deleted += len(same)
        if progress:
            progress.update(scanned)
    return CleanupResult(deleted, differing, errors)


def _split_by_target(target, leaves):
    """(the (id, leaves) whose every leaf the target holds, ids of the others).

    ``_revs_diff`` answers from the rev trees alone, without the bodies, and
    says "not missing" for a rev the target has built on since.
    """
    missing = target.revs_diff(dict(leaves)) if leaves else {}
    same = [(doc_id, revs) for doc_id, revs in leaves if doc_id not in missing]
    return same, [doc_id for doc_id, _revs in leaves if doc_id in missing]


def mark_complete(state):
    checkpoints.save_progress(state, cleanup_complete=True)
