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
from collections import namedtuple

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.attachments import BUDGET as ATTACHMENT_BUDGET
from corehq.doctypemigrations.errors import CleanupRefused
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.inflight import ordered, parts
from corehq.doctypemigrations.loader import DocError, delete_revs, live_leaf_revs, write_docs
from corehq.doctypemigrations.models import CLEANED, CLEANING, FOLLOWING
from corehq.doctypemigrations.selection import migrating_leaves
from corehq.doctypemigrations.transfer import copy_revisions

CleanupResult = namedtuple('CleanupResult', 'deleted differing changed copied errors')


def is_complete(result):
    return not (result.differing or result.changed or result.errors)


CleanupSettings = namedtuple('CleanupSettings', 'page_size dry_run copy_missing workers canary_wait '
                                                'attachment_bytes',
                             defaults=(1000, False, False, 1, 10.0, ATTACHMENT_BUDGET))


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
    doc_id = f"doctype-migration-canary-{uuid.uuid4().hex}"
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
    ``attachment_bytes`` of attachment data in memory at a time."""
    events = events or Events()
    totals = _sum([])
    copy_budget = settings.attachment_bytes if settings.copy_missing else None

    def clean(listed):
        # in smaller parts while the server rate-limits
        return _sum(_clean_page(source, target, dict(part), settings.dry_run, copy_budget)
                    for part in parts(listed[0], source.budget))

    pages = migrating_leaves(source, migrator.all_doc_types, settings.page_size, events)
    events.stage('Cleaning up', unit='docs scanned')
    try:
        for (_leaves, scanned), page in ordered(pages, clean, settings.workers, source.budget):
            totals = _sum([totals, page])
            events.advanced('Cleaning up', scanned)
    finally:
        events.stage_done('Cleaning up')
    return totals


def _sum(results):
    totals = CleanupResult(0, [], [], 0, [])
    for result in results:
        totals = CleanupResult(*(a + b for a, b in zip(totals, result)))
    return totals


def _clean_page(source, target, leaves, dry_run, copy_budget):
    """``copy_budget``: the attachment bytes to copy the lacking revisions
    with, or None not to copy them."""
    lacking = _lacking_in_target(target, leaves)
    copied, errors = 0, []
    if copy_budget is not None and lacking and not dry_run:
        copied_ids, errors = _copy_into_target(source, target, lacking, copy_budget)
        copied = len(copied_ids)
        lacking = {doc_id: revs for doc_id, revs in lacking.items() if doc_id not in copied_ids}
    held = {doc_id: revs for doc_id, revs in leaves.items() if doc_id not in lacking}
    if dry_run:
        return CleanupResult(len(held), sorted(lacking), [], 0, [])
    errors += delete_revs(source, [(doc_id, rev) for doc_id, revs in held.items() for rev in revs])
    changed, live, retry_errors = _confirm_gone(source, target, list(held))
    errors = [e for e in errors + retry_errors if e.id in live or e.id in lacking]
    named = {e.id for e in errors}
    errors += [DocError(doc_id, None, 'still live', 'a live revision is left after its deletion')
               for doc_id in sorted(live - set(changed) - named)]
    return CleanupResult(len(held) - len(live), sorted(lacking), changed, copied, errors)


def _lacking_in_target(target, leaves):
    """{doc id: the live source revs the target lacks}.

    ``_revs_diff`` answers from the rev trees alone, without the bodies, and
    says "not missing" for a rev the target has built on since.
    """
    missing = target.revs_diff(leaves) if leaves else {}
    return {doc_id: entry['missing'] for doc_id, entry in missing.items()}


def _copy_into_target(source, target, lacking, budget):
    """Copy the revisions the target lacks, with their history and a bounded
    amount of attachment data at a time; returns (ids copied, errors). Copies
    made this way add leaves, never remove any."""
    pairs = [(doc_id, rev) for doc_id, revs in lacking.items() for rev in revs]
    _docs, errors, gone = copy_revisions(source, target, pairs, budget)
    failed = {e.id for e in errors} | {doc_id for doc_id, _rev in gone}
    return {doc_id for doc_id in lacking if doc_id not in failed}, errors


def _confirm_gone(source, target, doc_ids):
    """(docs changed during the cleanup, docs with a live leaf left, errors).

    A leaf that appeared after the doc was listed (a late writer, a new
    conflict) is deleted too if the target holds it; otherwise the doc stays
    and is reported as changed during the cleanup.
    """
    live = _still_live(source, doc_ids)
    if not live:
        return [], set(), []
    leaves = {doc_id: live_leaf_revs(source, doc_id) for doc_id in live}
    lacking = _lacking_in_target(target, leaves)
    errors = delete_revs(source, [(doc_id, rev) for doc_id, revs in leaves.items()
                                  if doc_id not in lacking for rev in revs])
    live = set(_still_live(source, live))
    return sorted(live & set(lacking)), live, errors


def _still_live(db, doc_ids):
    live = db.live_ids(doc_ids)
    return [doc_id for doc_id in doc_ids if doc_id in live]
