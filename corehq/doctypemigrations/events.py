"""The one way a phase reports what it does while it runs.

The core calls these methods with plain data; the command layer overrides
them to draw progress bars and print lines. The base does nothing, so a
caller that wants no report passes ``Events()``.
"""


class Events:
    def stage(self, name, total=None, done=0, unit='docs'):
        """A stage of work begins ('Dumping', 'Loading', 'Cleaning up').
        ``total`` may be a callable: a count that costs a query, asked for
        only by a report that shows it."""

    def advanced(self, name, n):
        """``n`` more units of stage ``name`` are done, and recorded."""

    def stage_done(self, name):
        """The stage ended, complete or not."""

    def committed(self, changes_read, seq):
        """--continuous saved a checkpoint after the target acknowledged a batch."""

    def caught_up(self, seq):
        """--continuous reached the end of the source's changes feed."""

    def copies_disagree(self, reason):
        """--continuous read to the feed's end, but the source cluster's
        copies do not agree yet (``reason``), so it is not caught up yet."""

    def refused(self, errors):
        """--continuous could not copy these docs (``loader.DocError``s): they are
        recorded, and sent again with every batch until the target takes them."""

    def diverged(self, divergence):
        """A doc's copy differs in a way no copy can mend (follower.Divergence)."""
