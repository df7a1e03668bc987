"""The --continuous phase: follow the source's ``_changes`` from the last
checkpoint and keep the target's copies equal to the source.

For each changed document (the last row per id in a batch wins):
- a winner of a migrating doc type: every leaf is copied with its history;
- any other doc already in the target (a tombstone carries no doc_type, so
  deletions are recognised by id): a tombstone's leaves are copied, so the
  target holds the source's own deletion; a live doc whose doc_type left the
  migration is deleted in the target, so a live target doc of a migrating type
  always matches the source.
A checkpoint is written only after the target acknowledged the batch; replaying
from any checkpoint is harmless because every write is idempotent. With it goes
the target's seq read then (a seq pair, see pairs.py), by which a change
consumer moves to the target.

Only one follower runs per migration (a claim with a heartbeat), and before
each write it reads the phase again: once a cleanup has started, the source's
deletions must never reach the target, which is the live database by then.
"""
import time
from collections import namedtuple

from corehq.couch import copies
from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.attachments import BUDGET as ATTACHMENT_BUDGET
from corehq.doctypemigrations.errors import FollowerStopped
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.inflight import DEFAULT_WORKERS
from corehq.doctypemigrations.loader import delete_revs, live_leaf_revs
from corehq.doctypemigrations.models import FOLLOWING
from corehq.doctypemigrations.pairs import PairJudge
from corehq.doctypemigrations.selection import (
    DocTypeSelection, changes_of, is_feed_end, is_replicated_id, live_leaves, parse_change,
)
from corehq.doctypemigrations.transfer import copy_missing

FollowSettings = namedtuple(
    'FollowSettings', 'batch_size batch_seconds max_wait heartbeat_ms heartbeat_seconds attachment_bytes '
                      'workers',
    defaults=(claims.HEARTBEAT_SECONDS, ATTACHMENT_BUDGET, DEFAULT_WORKERS))
DEFAULT_SETTINGS = FollowSettings(batch_size=100, batch_seconds=5.0, max_wait=30.0, heartbeat_ms=5000)
# seconds between looks at a cluster's copies while they do not agree yet
UNSETTLED_POLL = 1.0

# A doc whose target copy differs from the source in a way no copy can mend.
Divergence = namedtuple('Divergence', 'doc_id revs cause')
TARGET_ONLY_LEAF = 'target-only leaf'
CONFLICT_DELETED_IN_TARGET = 'conflict deleted in target'


class _Batch:
    """Rows read but not yet committed, with the seq to checkpoint after them."""

    def __init__(self):
        self.changes = {}
        self.rows = 0
        self.last_seq = None
        self.started = None

    def add(self, changes, last_seq):
        if self.started is None:
            self.started = time.monotonic()
        for change in changes:
            self.changes.pop(change.id, None)  # keep the latest row per id, in feed order
            self.changes[change.id] = change
        self.rows += len(changes)
        self.last_seq = last_seq

    def age(self):
        return 0 if self.started is None else time.monotonic() - self.started


def run_continuous(migrator, source, target, settings=DEFAULT_SETTINGS, events=None, until_caught_up=False,
                   stop=lambda: False):
    """The --continuous entry point: its gate (the initial phase complete, no
    cleanup started), then the follower until ``stop()`` (or the feed's end).
    Returns the state, whose latest checkpoint is where it stopped."""
    state = states.open_state(migrator, source, target)
    states.check('continuous', state, migrator.slug)
    selection = DocTypeSelection(migrator.all_doc_types)
    ChangesFollower(source, target, selection, state, settings, events).run(stop, until_caught_up)
    return state


class ChangesFollower:
    def __init__(self, source, target, selection, state, settings=DEFAULT_SETTINGS, events=None):
        self.source = source
        self.target = target
        self.selection = selection
        self.state = state
        self.settings = settings
        self.events = events or Events()
        self.batch = _Batch()
        self._heartbeat = None
        self._pairs = PairJudge(state, source)
        self._copies = copies.Watch(source)
        self._refusals_sent_at = float('-inf')

    def run(self, stop=lambda: False, until_caught_up=False):
        """Follow until ``stop()`` is true (or the feed's end, with ``until_caught_up``).

        A server that goes away is waited for by the couch client's retry
        policy, as long as the databases' budget allows (--continuous: for
        ever); Ctrl-C commits what was read, then stops.
        """
        with claims.running(self.state, claims.CONTINUOUS, self.settings.heartbeat_seconds) as heartbeat:
            self._heartbeat = heartbeat
            try:
                self._follow(stop, until_caught_up)
            except KeyboardInterrupt:
                self._commit_quietly()
                raise

    def _follow(self, stop, until_caught_up):
        since = states.latest_checkpoint(self.state)
        announced = False
        while not stop():
            page = self.source.changes(since=since, limit=self._batch_size(), include_docs=True,
                                       conflicts='true')
            rows = page['results']
            since = page['last_seq']
            self.batch.add([parse_change(row) for row in rows], since)
            caught_up = is_feed_end(page, self._last_limit)
            if caught_up or self.batch.rows >= self.settings.batch_size \
                    or self.batch.age() >= self.settings.batch_seconds:
                self._commit()
            if rows:
                announced = False
            if caught_up and not announced:
                if not self._feed_end_is_the_clusters():
                    self.source.wait_for_change(since, UNSETTLED_POLL, self.settings.heartbeat_ms)
                    continue
                self.events.caught_up(since)
                announced = True
            if caught_up:
                if until_caught_up:
                    return
                self.source.wait_for_change(since, self.settings.max_wait, self.settings.heartbeat_ms)

    def _feed_end_is_the_clusters(self):
        """Whether the end of the feed as read is the end of what the cluster
        acknowledged. Each range of a cluster's feed comes from one copy, and
        a copy on a node that was down lacks what was written meanwhile until
        internal replication pushes it over; while a node is down, a write
        acknowledged by it and one other copy may be missing from the copy
        read. "Caught up" is said only while the copies agree (each asked to
        push to the others once a node is back), the feed read again after."""
        if self._copies.agreed():
            return True
        self.events.copies_disagree(self._copies.reason)
        return False

    def _batch_size(self):
        """Smaller pages after the server rate-limited the phase (see PhaseBudget)."""
        budget = self.source.budget
        self._last_limit = budget.scale(self.settings.batch_size) if budget else self.settings.batch_size
        return self._last_limit

    def _check_still_allowed(self):
        """Before any write: is this run still the follower, in the following phase?"""
        if self._heartbeat.lost.is_set():
            raise FollowerStopped(f"Another --continuous of {self.state.slug!r} took over the claim "
                                  f"(this run's heartbeat had lapsed): this one stopped without writing.")
        if states.current_phase(self.state) != FOLLOWING:
            raise FollowerStopped(
                f"The cleanup of {self.state.slug!r} has started: --continuous stopped without "
                f"writing what it had read, so the cleanup's deletions never reach the target.")

    def _commit(self):
        """Copy the batch (and the docs refused before, even with nothing new
        to read), then checkpoint after it, once the target acknowledged."""
        batch = self.batch
        if not batch.rows and time.monotonic() < self._refusals_sent_at + self.settings.max_wait:
            return  # with nothing new read, refused docs go again at the pace of the feed's wait
        refused = states.follow_refusals(self.state)
        if not batch.rows and not refused:
            return
        self._refusals_sent_at = time.monotonic()
        self._check_still_allowed()
        changes = list(batch.changes.values())
        changes += refused_before(self.source, refused, {c.id for c in changes})
        divergences, errors = apply_changes(self.source, self.target, self.selection, changes,
                                            self.settings.attachment_bytes, self.settings.workers)
        for divergence in divergences:
            self.events.diverged(divergence)
        # Not stuck on a doc the target refuses: recorded (and sent again with
        # every batch until it goes in), and the checkpoint moves on.
        states.save_follow_refusals(self.state, errors, [c.id for c in changes])
        if errors:
            self.events.refused(errors)
        if not batch.rows:
            return
        target_seq = self.target.update_seq()  # read after the target acknowledged the batch
        states.save_checkpoint(self.state, batch.last_seq, target_seq, self._pairs.usable(batch.last_seq),
                               batch.rows)
        self.batch = _Batch()
        self.events.committed(batch.rows, batch.last_seq)

    def _commit_quietly(self):
        try:
            self._commit()
        except Exception:
            pass  # the previous checkpoint stands, and it is still correct


def apply_changes(source, target, selection, changes, attachment_bytes=ATTACHMENT_BUDGET,
                  workers=DEFAULT_WORKERS):
    """Bring the target's copies of these docs in line with the source, with
    at most ``attachment_bytes`` of attachment data in memory at a time (read
    with up to ``workers`` requests in flight).

    Returns (the docs whose copy still differs in a way a copy cannot mend,
    the writes the target refused).
    """
    changes = [c for c in changes if is_replicated_id(c.id)]
    wanted = [c for c in changes if selection.wants(c)]
    others = [c for c in changes if not selection.wants(c)]
    in_target = target.winning_revs([c.id for c in others]) if others else {}
    tombstones = [c for c in others if c.id in in_target and c.deleted]
    retyped = [c for c in others if c.id in in_target and not c.deleted
               and not in_target[c.id][1]]
    docs, errors, _gone = copy_missing(source, target, wanted + tombstones, attachment_bytes, workers)
    live = {c.id: set(live_leaves(c.doc)) for c in wanted}  # the winner and its live conflicts
    divergences = []
    for doc_id in _stemmed(docs):
        divergences.extend(_repair_stemmed(source, target, doc_id, live.get(doc_id, set()), errors))
    for change in retyped:
        errors.extend(delete_revs(target, [(change.id, rev) for rev in live_leaf_revs(target, change.id)]))
    conflicted = {doc_id: revs for doc_id, revs in live.items() if len(revs) > 1}
    return divergences + _conflicts_deleted_in_target(target, conflicted), errors


def refused_before(source, refused_ids, batch_ids):
    """The source's changes of the docs the target refused before, that this
    batch does not hold already: each batch sends them again."""
    doc_ids = [doc_id for doc_id in refused_ids if doc_id not in batch_ids]
    return changes_of(source, doc_ids)


def _stemmed(docs):
    """Ids of docs whose history the source cut short.

    Past revs_limit edits the history no longer reaches what the target holds,
    so the copy lands as a new branch and the target's old leaf would turn
    into a conflict the source does not have.
    """
    return {doc['_id'] for doc in docs if len(doc['_revisions']['ids']) < doc['_revisions']['start']}


def _repair_stemmed(source, target, doc_id, live_revs, errors):
    """Delete the target's other live leaves that the source's rev tree knows
    (the source built past them); keep a leaf the source never had, which was
    written in the target (after the flip), and report it."""
    others = [rev for rev in live_leaf_revs(target, doc_id) if rev not in live_revs]
    unknown = set(source.revs_diff({doc_id: others}).get(doc_id, {}).get('missing', ())) if others else set()
    errors.extend(delete_revs(target, [(doc_id, rev) for rev in others if rev not in unknown]))
    return [Divergence(doc_id, sorted(unknown), TARGET_ONLY_LEAF)] if unknown else []


def _conflicts_deleted_in_target(target, conflicted):
    """Conflicted docs whose live source leaves the target holds only as deleted.

    A doc that left the migration's doc types had every live leaf deleted in
    the target; when it comes back, CouchDB cannot revive those leaves, so a
    conflict the source still has is missing from the target.
    """
    divergences = []
    for doc_id, revs in conflicted.items():
        lost = revs - set(live_leaf_revs(target, doc_id))
        if lost:
            divergences.append(Divergence(doc_id, sorted(lost), CONFLICT_DELETED_IN_TARGET))
    return divergences
