"""How the migration commands show a phase's events: tqdm bars for its
stages on a terminal (stderr, so stdout stays parseable), lines for the rest."""
import time

from tqdm import tqdm

from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.management.commands._text import describe_errors, verify_hint
from corehq.doctypemigrations.models import FOLLOWING


# seconds the source's copies disagree before --continuous says it waits for them
DISAGREEMENT_TOLD_AFTER = 10


def command_events(command, slug, verbosity):
    """A command's events, with bars on stderr when it is a terminal (as
    tqdm's own default, so stdout stays parseable)."""
    bars = command.stderr._out if verbosity and command.stderr.isatty() else None
    return CommandEvents(command, slug, bars)


class CommandEvents(Events):
    """``bars``: the stream to draw progress bars on, or None for none."""

    def __init__(self, command, slug, bars=None):
        self.command = command
        self.slug = slug
        self.bars = bars
        self._drawn = {}
        self._disagreeing_since, self._told_disagreeing = None, False

    def stage(self, name, total=None, done=0, unit='docs'):
        if self.bars is None:
            return
        if callable(total):
            total = total()  # a count that costs a query: asked only when a bar shows it
        self._drawn[name] = tqdm(desc=name, total=total, initial=done, unit=f" {unit}", file=self.bars,
                                 dynamic_ncols=True, mininterval=0.5, unit_scale=True)

    def advanced(self, name, n):
        if name in self._drawn:
            self._drawn[name].update(n)

    def stage_done(self, name):
        bar = self._drawn.pop(name, None)
        if bar is not None:
            bar.close()

    def committed(self, changes_read, seq):
        self._disagreeing_since = None  # a spell of disagreement is timed from the last rows read
        self.command.say(f"Read {changes_read} changes, saved seq {seq}")

    def caught_up(self, seq):
        self._disagreeing_since, self._told_disagreeing = None, False
        self.command.say("All caught up!", self.command.style.SUCCESS)

    def copies_disagree(self, reason):
        # said once a spell, when it lasts: a cluster under writes has internal replication
        # jobs come and go, each a moment's disagreement
        now = time.monotonic()
        self._disagreeing_since = self._disagreeing_since or now
        if not self._told_disagreeing and now - self._disagreeing_since >= DISAGREEMENT_TOLD_AFTER:
            self._told_disagreeing = True
            self.command.say(f"Read to the end of the source's feed, but its copies do not agree yet "
                             f"({reason}): waiting for them before saying caught up.")

    def diverged(self, divergence):
        hint = verify_hint(divergence.cause, FOLLOWING, self.slug)
        self.command.warn(f"{divergence.doc_id}: {divergence.cause} ({', '.join(divergence.revs)}): {hint}")

    def refused(self, errors):
        self.command.warn(f"The target refused {len(errors)} document(s); --continuous moved on and "
                          f"sends them again with every batch until they go in (see --status):\n"
                          f"{describe_errors(errors)}")
