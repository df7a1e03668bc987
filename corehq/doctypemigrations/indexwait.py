"""Waiting for a view's index before a phase reads it, reported as a stage
of the phase's events: a phase blocked on an index build must not look hung."""
from corehq.couch import indexing
from corehq.couch.indexing import logged_progress, wait_for_view_index


def catch_up(db, ddoc, view, events=None):
    """Bring a view's index up to date before a phase reads it. A build that
    takes a while is a stage of ``events`` ('Indexing ...', in changes
    indexed where the server shows them), and it is logged as well: a run
    without a terminal shows no bars, and a phase blocked on a build must not
    look hung."""
    if events is None:
        return indexing.catch_up(db, ddoc, view)
    stage = _IndexStage(events, f"Indexing {ddoc}/{view} in {db.name}", logged_progress(db))
    try:
        return wait_for_view_index(db, ddoc, view, on_progress=stage.progress)
    finally:
        stage.done()


class _IndexStage:
    def __init__(self, events, name, log):
        self.events, self.name, self.log = events, name, log
        self.shown = None  # changes shown as done; None until the first progress

    def progress(self, progress):
        self.log(progress)
        done = progress.changes_done or 0
        if self.shown is None:
            self.events.stage(self.name, total=progress.total_changes, done=done, unit='changes')
        else:
            self.events.advanced(self.name, max(0, done - self.shown))
        self.shown = max(done, self.shown or 0)

    def done(self):
        if self.shown is not None:
            self.events.stage_done(self.name)
