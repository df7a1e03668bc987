"""Which seq pairs (source seq, target seq) a change consumer may move by.

A pair (s, t) is usable when every source change after s shows up in the
target's feed after t: a consumer that processed the source up to s then
misses nothing by going on from t on the target.

--continuous copies exactly the leaf revisions named by the feed rows it
read, and reads the target's seq after the target acknowledged them, so a
source change after s is copied after t, as a new change of the target, with
one exception: changes written while the dump ran may already be in the
target through the load, and --continuous copying them again writes nothing
the target's feed would show. So the pair recorded when --initial completes
is (the source's seq read after the dump, the target's seq after the load),
and a pair of --continuous is usable only once its source seq is at or after
that dump end. Seqs are opaque: whether one is at or after another is asked
of the server, by how many changes come after each (see ``at_or_after``).
"""
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.status import PENDING_CAP, changes_after


def at_or_after(db, seq, mark, cap=PENDING_CAP):
    """Whether ``seq`` is known to be at or after ``mark`` in ``db``'s feed: no
    more changes come after it than after ``mark``. The changes after ``mark``
    are counted first, so a write landing between the two counts makes the
    answer False, never wrongly True; a count that hits the cap is a lower
    bound, which can only make it False too."""
    after_mark, _mark_capped = changes_after(db, mark, cap)
    after_seq, seq_capped = changes_after(db, seq, cap)
    return not seq_capped and after_seq <= after_mark


class PairJudge:
    """Decides, checkpoint by checkpoint, whether --continuous's pairs are usable.

    Within one run the follower's position only moves forward, so once a
    checkpoint is at or after the dump end, every later one is: the server is
    asked until then, and not again. A new run asks again (after
    --erase-continuous-progress it starts before the dump end)."""

    def __init__(self, state, source):
        self.state = state
        self.source = source
        self._passed = False

    def usable(self, source_seq):
        if not self._passed:
            dump_end = states.dump_end_seq(self.state)
            # a state recorded before dump ends were has no mark: its pairs stay unusable
            self._passed = dump_end is not None and at_or_after(self.source, source_seq, dump_end)
        return self._passed
