"""The --cleanup phase: delete migrated documents from the source.

A document goes only when the target holds every live leaf revision the
source has (as a leaf or in its history: docs edited in the target after the
flip go too); every live leaf of it is deleted, so no conflict resurfaces in
the source. Docs with revisions the target lacks are listed and left alone,
unless ``copy_missing`` copies those revisions into the target first (as
--continuous would have: new_edits=false, which never deletes or overwrites
what the target has). A doc counts as deleted only once the source shows no
live leaf of it. Rerunning resumes: deleted docs are no longer listed.

The phase moves to "cleaning" before the first deletion, which from then on
refuses --continuous: it would mirror these deletions into the target. The
cleanup holds the migration's one claim while it runs, so no --continuous
starts beside it, and none may be running when it starts.
"""
import time
import uuid
from array import array
from collections import namedtuple

from corehq.couch import copies
from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.attachments import BUDGET as ATTACHMENT_BUDGET
from corehq.doctypemigrations.errors import CleanupRefused
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.idhash import id_hash
from corehq.doctypemigrations.inflight import ordered, parts
from corehq.doctypemigrations.loader import DocError, delete_revs, write_docs
from corehq.doctypemigrations.models import CLEANED, CLEANING, FOLLOWING
from corehq.doctypemigrations.selection import (
    CANARY_PREFIX, current_winners, live_leaves, live_migrating, migrating_leaves, missing_revs,
)
from corehq.doctypemigrations.transfer import copy_revisions

# ``deleted``: how many docs (a page's result: their ids); ``unproven``: why the final pass could
# not show that nothing else is left (empty: it did); ``again``: docs written to the source again
# after their deletion, in revisions the target holds, and deleted again (counted once)
CleanupResult = namedtuple('CleanupResult', 'deleted differing changed copied errors unproven again',
                           defaults=([],))


def is_complete(result):
    return not (result.differing or result.changed or result.errors or result.unproven)


# settle_wait: seconds to wait for a cluster's copies to agree before the final pass
CleanupSettings = namedtuple('CleanupSettings', 'page_size dry_run copy_missing workers canary_wait '
                                                'attachment_bytes settle_wait',
                             defaults=(1000, False, False, 1, 10.0, ATTACHMENT_BUDGET, 120.0))
PROOF_ROUNDS = 3


def run_cleanup(migrator, source, target, settings=CleanupSettings(), events=None, confirm=lambda: None):
    """The --cleanup entry point. Its gate (the initial phase complete), then
    ``confirm()`` (which raises to cancel); then, holding the migration's
    claim (refused while a --continuous runs) and with no follower seen
    copying (the canary), it records the cleaning phase before the first
    deletion, deletes, and records "cleaned" when nothing was left behind.
    A dry run only lists, and records nothing."""
    state = states.open_state(migrator, source, target)
    states.check('cleanup', state, migrator.slug)
    if settings.dry_run:
        return clean_up(migrator, source, target, settings, events)
    confirm()
    with claims.running(state, claims.CLEANUP):
        refuse_if_copying(source, target, migrator.all_doc_types[0], settings.canary_wait)
        if state.phase == FOLLOWING:
            # before the first deletion: a follower that commits after this stops without writing
            states.set_phase(state, CLEANING)
        result = clean_up(migrator, source, target, settings, events)
        if is_complete(result):
            states.set_phase(state, CLEANED)
    return result


def refuse_if_copying(source, target, doc_type, canary_wait):
    """Refuse while any --continuous copies from the source, even one with a
    state database of its own that the claim cannot see: a canary doc written
    to the source, watched for in the target."""
    if canary_wait and _canary_arrives(source, target, doc_type, canary_wait):
        raise CleanupRefused("A --continuous run is copying from the source (a canary doc reached "
                             "the target): stop it first, or the cleanup's deletions would reach the target.")


def _canary_arrives(source, target, doc_type, wait):
    doc_id = f"{CANARY_PREFIX}{uuid.uuid4().hex}"
    # A rev of our own, written as is: a write retried after its answer was
    # lost writes the same revision again, where a plain PUT would get 409.
    rev = f"1-{uuid.uuid4().hex}"
    refused = write_docs(source, [{'_id': doc_id, '_rev': rev, 'doc_type': doc_type, 'canary': True}])
    if refused:
        raise CleanupRefused(f"The canary doc that shows whether a --continuous is copying could not "
                             f"be written to the source ({refused[0].reason}); nothing was deleted.")
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if target.get(doc_id) is not None:
                return True
            time.sleep(0.2)
        return False
    finally:
        delete_revs(source, [(doc_id, rev)])


def clean_up(migrator, source, target, settings=CleanupSettings(), events=None):
    """Delete from the source every migrating doc whose every live leaf the
    target holds, with up to ``settings.workers`` pages in flight; with
    ``copy_missing``, copy what the target lacks first, with at most
    ``attachment_bytes`` of attachment data in memory at a time. Then, unless
    a dry run, prove that no migrating doc it did not name is left live."""
    events = events or Events()
    doc_types = migrator.all_doc_types
    copy_budget = settings.attachment_bytes if settings.copy_missing else None

    def clean(listed):
        # in smaller parts while the server rate-limits
        return _sum((_clean_page(source, target, doc_types, dict(part), settings.dry_run, copy_budget)
                     for part in parts(listed[0], source.budget)), start=_PAGE)

    pages = migrating_leaves(source, doc_types, settings.page_size, events)
    totals, deleted = _TOTALS, DeletedDocs()
    events.stage('Cleaning up', unit='docs scanned')
    try:
        for (_leaves, scanned), page in ordered(pages, clean, settings.workers, source.budget):
            totals = deleted.add(totals, page)
            events.advanced('Cleaning up', scanned)
    finally:
        events.stage_done('Cleaning up')
    if settings.dry_run:
        return totals
    return _prove_none_left(source, doc_types, settings, totals, clean, deleted, events)


def _prove_none_left(source, doc_types, settings, totals, clean, deleted, events):
    """The last pass, on which "Cleanup complete" rests: no migrating doc the
    cleanup has not named is live in the source.

    A listing on a cluster takes each shard range from one copy; it holds
    every live doc only while no copy lags behind the others. So the copies
    are first seen to agree (``copies.settle``: every node up, each copy
    asked to push to the others, no internal replication job left), then the
    by_doc_type view (or the feed) is read brought up to date on each copy
    that answers; a doc it lists is read again from every copy and cleaned
    like any other. The listing is read again until one lists nothing new,
    the copies having agreed all along (``copies.still_settled``: no node
    went down or restarted meanwhile, nothing left to replicate). Otherwise
    the result says why it is not proven, and a rerun proves it. A doc this
    cleanup had deleted that is live again (written to the source since) is
    counted once, and named (``again``).
    """
    for _round in range(PROOF_ROUNDS):
        try:
            snapshot = copies.settle(source, settings.settle_wait)
        except copies.CopiesUnsettled as e:
            return totals._replace(unproven=[str(e)])
        named = set(_named(totals))
        found = False
        for leaves, _scanned in migrating_leaves(source, doc_types, settings.page_size, events, fresh=True):
            left = [(doc_id, revs) for doc_id, revs in leaves if doc_id not in named]
            if left:
                found = True
                totals = deleted.add(totals, clean((left, len(left))), again=True)
        if not found and copies.still_settled(source, snapshot):
            return totals
    return totals._replace(unproven=[f"migrating docs kept showing up in the source over {PROOF_ROUNDS} "
                                     f"listings (something still writes them there?)"])


def _named(result):
    return list(result.differing) + list(result.changed) + [e.id for e in result.errors]


_TOTALS = CleanupResult(0, [], [], 0, [], [])
_PAGE = _TOTALS._replace(deleted=[])


def _sum(results, start=_TOTALS):
    totals = start
    for result in results:
        totals = CleanupResult(*(a + b for a, b in zip(totals, result)))
    return totals


class DeletedDocs:
    """The docs this cleanup deleted, 8 bytes each (see idhash), so that a
    doc deleted twice (written to the source again after its deletion, in a
    revision the target holds) counts once, and is named once."""

    def __init__(self):
        self._hashes = array('Q')
        self._again = set()

    def add(self, totals, page, again=False):
        """``totals`` with a page's result added. ``again``: look for docs
        deleted before among its deletions, a read of every hash: done in the
        final pass, which finds what came back. The first pass lists each doc
        once from the by_doc_type view; from the feed (a source without the
        view) a doc written again while it runs is listed, and counted, again."""
        hashes = {id_hash(doc_id): doc_id for doc_id in page.deleted}
        before = hashes.keys() & self._hashes if again and hashes else set()
        self._hashes.extend(hashes.keys() - before)
        named = sorted(hashes[h] for h in before - self._again)
        self._again |= before
        return _sum([totals, page._replace(deleted=len(hashes) - len(before), again=named)])


def _clean_page(source, target, doc_types, listed, dry_run, copy_budget):
    """Clean the listed docs (ids: the revs listed are only a hint). Each is
    read again from every copy first: a doc no longer live, or no longer of
    the migrating types, is not the cleanup's (a listing from a lagging
    copy, a feed that delivered it again, the cleanup's own canary).
    ``copy_budget``: the attachment bytes to copy the lacking revisions
    with, or None not to copy them."""
    leaves = live_migrating(source, doc_types, list(listed))
    lacking = missing_revs(target, leaves)
    copied, errors = 0, []
    if copy_budget is not None and lacking and not dry_run:
        copied_ids, errors = _copy_into_target(source, target, lacking, copy_budget)
        copied = len(copied_ids)
        lacking = {doc_id: revs for doc_id, revs in lacking.items() if doc_id not in copied_ids}
    held = {doc_id: revs for doc_id, revs in leaves.items() if doc_id not in lacking}
    if dry_run:
        return CleanupResult(list(held), sorted(lacking), [], 0, [], [])
    errors += delete_revs(source, [(doc_id, rev) for doc_id, revs in held.items() for rev in revs])
    changed, live, retry_errors = _confirm_gone(source, target, list(held))
    errors = [e for e in errors + retry_errors if e.id in live or e.id in lacking]
    named = {e.id for e in errors}
    errors += [DocError(doc_id, None, 'still live', 'a live revision is left after its deletion')
               for doc_id in sorted(live - set(changed) - named)]
    return CleanupResult([doc_id for doc_id in held if doc_id not in live], sorted(lacking), changed, copied,
                         errors, [])


def _copy_into_target(source, target, lacking, budget):
    """Copy the revisions the target lacks, with their history and a bounded
    amount of attachment data at a time; returns (ids copied, errors). Copies
    made this way add leaves, never remove any."""
    pairs = [(doc_id, rev) for doc_id, revs in lacking.items() for rev in revs]
    _docs, errors, gone = copy_revisions(source, target, pairs, budget)
    failed = {e.id for e in errors} | {doc_id for doc_id, _rev in gone}
    return {doc_id for doc_id in lacking if doc_id not in failed}, errors


def _confirm_gone(source, target, doc_ids):
    """(docs changed during the cleanup, docs with a live leaf left, errors),
    as every copy holds them.

    A leaf that appeared after the doc was read (a late writer, a new
    conflict) is deleted too if the target holds it; otherwise the doc stays
    and is reported as changed during the cleanup.
    """
    leaves = _live_leaves(source, doc_ids)
    if not leaves:
        return [], set(), []
    lacking = missing_revs(target, leaves)
    errors = delete_revs(source, [(doc_id, rev) for doc_id, revs in leaves.items()
                                  if doc_id not in lacking for rev in revs])
    live = set(_live_leaves(source, list(leaves)))
    return sorted(live & set(lacking)), live, errors


def _live_leaves(source, doc_ids):
    # most are deleted by now: which are not is asked first (without bodies
    # where the server can answer so), then only those are read whole
    live = [doc_id for doc_id, doc in current_winners(source, doc_ids, bodies=False).items()
            if not doc.get('_deleted')]
    return {doc_id: live_leaves(doc) for doc_id, doc in current_winners(source, live).items()
            if not doc.get('_deleted')}
