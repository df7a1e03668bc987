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
from any checkpoint is harmless because every write is idempotent.
"""
import time
from collections import namedtuple

from corehq.doctypemigrations import checkpoints
from corehq.doctypemigrations.couch import CouchHTTPError, CouchUnreachable
from corehq.doctypemigrations.loader import delete_revs, write_docs
from corehq.doctypemigrations.selection import fetch_leaves, is_replicated_id, parse_change

FollowSettings = namedtuple('FollowSettings', 'batch_size batch_seconds max_wait heartbeat_ms retry_delays max_failures')
DEFAULT_SETTINGS = FollowSettings(batch_size=100, batch_seconds=5.0, max_wait=30.0, heartbeat_ms=5000,
                                  retry_delays=(1, 2, 4, 8, 16, 30), max_failures=None)


class NotReadyToFollow(Exception):
    pass


class ContinuousWriteFailed(Exception):
    def __init__(self, errors):
        super().__init__(f"{len(errors)} documents were refused by the target")
        self.errors = errors


class FollowerEvents:
    """What the follower reports; the command layer overrides these to print."""

    def committed(self, changes_read, seq):
        pass

    def caught_up(self, seq):
        pass

    def retrying(self, error, delay):
        pass


def check_can_follow(state, slug):
    if not checkpoints.initial_complete(state):
        raise NotReadyToFollow(
            f"{slug!r} has no completed initial migration: run --initial first; "
            f"--continuous tops off from the seq that --initial recorded.")
    if state.cleanup_complete:
        raise NotReadyToFollow(
            f"{slug!r} has been cleaned up: the migrated docs were deleted from the source, and "
            f"following the source now would mirror those deletions into the target.")


def is_transient(error):
    return isinstance(error, CouchUnreachable) or (
        isinstance(error, CouchHTTPError) and error.status >= 500)


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


class ChangesFollower:
    def __init__(self, source, target, selection, state, settings=DEFAULT_SETTINGS, events=None):
        self.source = source
        self.target = target
        self.selection = selection
        self.state = state
        self.settings = settings
        self.events = events or FollowerEvents()
        self.batch = _Batch()
        self._last_beat = 0

    def run(self, stop=lambda: False, until_caught_up=False):
        """Follow until ``stop()`` is true (or the feed's end, with ``until_caught_up``).

        Transient failures (server gone, 5xx) are retried with backoff from the
        last checkpoint; Ctrl-C commits what was read, then stops.
        """
        failures = 0
        try:
            while True:
                try:
                    self._follow(stop, until_caught_up)
                    return
                except Exception as error:
                    if not is_transient(error):
                        raise
                    failures += 1
                    self._back_off(error, failures)
        except KeyboardInterrupt:
            self._commit_quietly()
            raise
        finally:
            checkpoints.stop_beating(self.state)

    def _back_off(self, error, failures):
        limit = self.settings.max_failures
        if limit is not None and failures > limit:
            raise error
        delays = self.settings.retry_delays
        delay = delays[min(failures, len(delays)) - 1]
        self.events.retrying(error, delay)
        self.batch = _Batch()  # re-read from the checkpoint: nothing read since counts
        time.sleep(delay)

    def _follow(self, stop, until_caught_up):
        since = checkpoints.latest_checkpoint(self.state)
        announced = False
        while not stop():
            self._beat()
            page = self.source.changes(since=since, limit=self.settings.batch_size, include_docs=True)
            rows = page['results']
            since = page['last_seq']
            self.batch.add([parse_change(row) for row in rows], since)
            caught_up = len(rows) < self.settings.batch_size
            if caught_up or self.batch.rows >= self.settings.batch_size \
                    or self.batch.age() >= self.settings.batch_seconds:
                self._commit()
            if rows:
                announced = False
            if caught_up:
                if not announced:
                    self.events.caught_up(since)
                    announced = True
                if until_caught_up:
                    return
                self.source.wait_for_change(since, self.settings.max_wait, self.settings.heartbeat_ms)

    def _beat(self):
        if time.monotonic() - self._last_beat >= 1:
            checkpoints.beat(self.state)
            self._last_beat = time.monotonic()

    def _commit(self):
        batch = self.batch
        if not batch.rows:
            return
        apply_changes(self.source, self.target, self.selection, list(batch.changes.values()))
        checkpoints.save_checkpoint(self.state, batch.last_seq)
        self.batch = _Batch()
        self.events.committed(batch.rows, batch.last_seq)

    def _commit_quietly(self):
        try:
            self._commit()
        except Exception:
            pass  # the previous checkpoint stands, and it is still correct


def apply_changes(source, target, selection, changes):
    """Bring the target's copies of these docs in line with the source."""
    changes = [c for c in changes if is_replicated_id(c.id)]
    wanted = [c for c in changes if selection.wants(c)]
    others = [c for c in changes if not selection.wants(c)]
    in_target = target.winning_revs([c.id for c in others]) if others else {}
    tombstones = [c for c in others if c.id in in_target and c.deleted]
    retyped = [c for c in others if c.id in in_target and not c.deleted
               and not in_target[c.id][1]]
    docs, _missing = fetch_leaves(source, wanted + tombstones)
    errors = write_docs(target, docs)
    for doc_id, live_revs in _stemmed(docs).items():
        errors.extend(delete_live_leaves(target, doc_id, keep=live_revs))
    for change in retyped:
        errors.extend(delete_live_leaves(target, change.id))
    if errors:
        raise ContinuousWriteFailed(errors)


def _stemmed(docs):
    """{doc id: its live leaf revs} for docs whose history the source cut short.

    Past revs_limit edits the history no longer reaches what the target holds,
    so the copy lands as a new branch and the target's old leaf would turn
    into a conflict the source does not have.
    """
    stemmed = {doc['_id'] for doc in docs
               if len(doc['_revisions']['ids']) < doc['_revisions']['start']}
    live = {}
    for doc in docs:
        if doc['_id'] in stemmed and not doc.get('_deleted'):
            live.setdefault(doc['_id'], set()).add(doc['_rev'])
    return {doc_id: live.get(doc_id, set()) for doc_id in stemmed}


def delete_live_leaves(db, doc_id, keep=()):
    """Delete every live leaf of a doc but ``keep``, so no other leaf resurfaces as its winner."""
    live = [item['ok'] for item in db.open_revs(doc_id) if 'ok' in item and not item['ok'].get('_deleted')]
    return delete_revs(db, [(doc_id, doc['_rev']) for doc in live if doc['_rev'] not in keep])
