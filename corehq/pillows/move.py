"""Moving a stopped pillow from a doc type migration's source to its target,
after the flip, without processing every migrated doc again.

The migration recorded seq pairs (source seq s, target seq t): every source
change after s shows up in the target's feed after t (see
doctypemigrations/pairs.py). A pillow that processed the source up to P can
go on from t on the target for any usable pair with s at or before P: what
it sees again is the changes between s and P, and it misses none. The move
takes the latest such pair, never a later one.

Seqs are opaque, so "s at or before P" is asked of the server: s is taken as
processed when at least as many changes come after it as after P. The pair's
count is read first, then P's: a write landing in between makes P's count
larger and the answer errs towards an earlier pair, never a later one.

Two more things keep the move exact:
- Only pairs recorded before the pillow's checkpoint was last saved are
  used: the pillow stopped before the flip, and a pair recorded after the
  flip could stand for a target seq after docs the app wrote to the target
  directly, which the pillow never saw on the source.
- A doc the pillow saw on the source after s that the target never got (made
  and deleted, or moved out of the doc types, before --continuous read it)
  will never show up in the target's feed: the move hands the pillow its
  deletion, as a rebuild on the target would not have it either.
"""
from collections import namedtuple

from django.db import transaction

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.selection import Change, is_replicated_id
from corehq.doctypemigrations.status import changes_after
from corehq.pillows import checkpoints
from corehq.pillows.errors import MoveRefused

MOVE = 'move_pillow_checkpoint'
# Counts for choosing the pair are exact: a lower bound cannot order two seqs.
NO_CAP = 10 ** 12
PAGE = 1000

MoveResult = namedtuple('MoveResult', 'moved source_seq target_seq gone to_process reset_would_process')


def move_checkpoint(pillow, state, source, target, app_db_name, slug):
    """Move ``pillow``'s checkpoint from ``source`` to ``target`` by the seq
    pairs ``state`` recorded; ``app_db_name`` is the database the settings
    make its app read now. Raises MoveRefused, saying why and what to do."""
    checkpoint = checkpoints.get(pillow.name)
    if checkpoint is not None and checkpoint.db_name == target.name:
        return MoveResult(False, None, checkpoints.seq(checkpoint), 0, None, None)
    _check_movable(pillow, checkpoint, state, source, target, app_db_name, slug)
    with claims.running(checkpoint, MOVE):
        checkpoint.refresh_from_db()
        pair = latest_processed_pair(pillow, checkpoint, state, source)
        gone = forget_docs_the_target_never_got(pillow, source, target, states.decode_seq(pair.source_seq))
        target_seq = states.decode_seq(pair.target_seq)
        with transaction.atomic():
            checkpoints.set_to(checkpoint, target.name, target_seq)
    to_process, _ = changes_after(target, target_seq, NO_CAP)
    reset_would_process, _ = changes_after(target, None, NO_CAP)
    return MoveResult(True, states.decode_seq(pair.source_seq), target_seq, gone, to_process,
                      reset_would_process)


def _rebuild(pillow):
    return f"`./manage.py run_pillow {pillow.name} --rebuild` (it processes the new database from its start)"


def _check_movable(pillow, checkpoint, state, source, target, app_db_name, slug):
    name = pillow.name
    if checkpoint is None or not checkpoint.db_name:
        raise MoveRefused(f"Pillow {name!r} has never run, so there is nothing to move: "
                          f"`./manage.py run_pillow {name}` starts it on the database its app reads from.")
    running = claims.running_action(checkpoint)
    if running:
        pid = claims.owner_host_pid(checkpoint.runner)[1]
        raise MoveRefused(f"Pillow {name!r} is running ({running}, pid {pid}): stop it first (Ctrl-C or "
                          f"SIGTERM saves its checkpoint), then move it.")
    if checkpoint.db_name != source.name:
        raise MoveRefused(
            f"Pillow {name!r} follows {checkpoint.db_name!r}, not {source.name!r}, the source of {slug!r}: "
            f"its checkpoint can only be moved by the migration that copied its database. If its app's "
            f"database changed otherwise, {_rebuild(pillow)}.")
    if app_db_name != target.name:
        raise MoveRefused(
            f"The settings still make {pillow.app_label!r} (what pillow {name!r} follows) read from "
            f"{app_db_name!r}, not {target.name!r}: do the flip first (Commit 2 of the guide), stop the "
            f"pillow before the deploy, and move it after. Until then, keep running it where it is.")
    if not states.initial_complete(state):
        raise MoveRefused(f"{slug!r} has no completed initial migration, so the target holds no known "
                          f"position of the source: finish the migration, or {_rebuild(pillow)}.")
    if not _candidates(checkpoint, state):
        raise _too_old(pillow, f"it stopped before {slug!r} recorded one")


def _candidates(checkpoint, state):
    """The usable pairs recorded before the pillow's checkpoint was last saved, oldest first."""
    return [pair for pair in states.usable_pairs(state)
            if checkpoint.saved_at is not None and pair.recorded_at <= checkpoint.saved_at]


def latest_processed_pair(pillow, checkpoint, state, source):
    """The latest candidate pair whose source seq the pillow had processed.

    Whether it had is monotonic along the pairs (they are in the feed's
    order), so a binary search asks the server about a few of them only."""
    pairs = _candidates(checkpoint, state)
    processed_seq = checkpoints.seq(checkpoint)
    low, high = 0, len(pairs)  # pairs[:low] processed, pairs[high:] not
    while low < high:
        middle = (low + high) // 2
        if processed(source, states.decode_seq(pairs[middle].source_seq), processed_seq):
            low = middle + 1
        else:
            high = middle
    if low == 0:
        raise _too_old(pillow, "it had not processed the source up to the end of the initial migration's "
                               "dump, or the pair it needs was thinned out")
    return pairs[low - 1]


def _too_old(pillow, why):
    return MoveRefused(
        f"The checkpoint of pillow {pillow.name!r} is older than the first seq pair the migration "
        f"recorded ({why}): no position of the target is known to hold only what it processed. "
        f"{_rebuild(pillow)[0].upper()}{_rebuild(pillow)[1:]} is the only safe answer.")


def processed(source, pair_seq, pillow_seq):
    """Whether a pillow at ``pillow_seq`` had processed the source up to
    ``pair_seq``: no fewer changes come after the pair than after the pillow.
    A feed that delivers rows again (a cluster's) makes a count larger: the
    pair's is the smaller of two, the pillow's the larger, both read in that
    order, so the answer errs towards False."""
    if pillow_seq is None:
        return False  # the pillow stands at the start of the feed
    after_pair = min(changes_after(source, pair_seq, NO_CAP)[0] for _ in range(2))
    after_pillow = max(changes_after(source, pillow_seq, NO_CAP)[0] for _ in range(2))
    return after_pair >= after_pillow


def forget_docs_the_target_never_got(pillow, source, target, since):
    """Hand the pillow the deletion of every doc changed in the source after
    ``since`` that the target does not hold at all; returns how many."""
    gone = 0
    while True:
        page = source.changes(since=since, limit=PAGE)
        ids = sorted({row['id'] for row in page['results'] if is_replicated_id(row['id'])})
        held = target.winning_revs(ids) if ids else {}
        missing = [doc_id for doc_id in ids if doc_id not in held]
        pillow.process([Change(doc_id, [], None, True, None) for doc_id in missing])
        gone += len(missing)
        if len(page['results']) < PAGE:
            return gone
        since = page['last_seq']
