"""Running a pillow: follow its database's ``_changes`` from the checkpoint,
put each page into the sink, then record the page's last seq. A page is
recorded only after the sink took it, so a run killed at any point processes
that page again at the next start: at least once, never skipped.

One process runs a pillow at a time (the claim and heartbeat of
doctypemigrations.claim). A server that goes away is waited for under the
couch client's retry budget.
"""
from collections import namedtuple

from django.db import transaction

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations.selection import is_feed_end, parse_change
from corehq.pillows import checkpoints
from corehq.pillows.errors import PillowMoved, PillowStopped

RUN = 'run_pillow'

RunSettings = namedtuple('RunSettings', 'batch_size max_wait heartbeat_ms heartbeat_seconds',
                         defaults=(claims.HEARTBEAT_SECONDS,))
DEFAULT_SETTINGS = RunSettings(batch_size=100, max_wait=30.0, heartbeat_ms=5000)


def run_pillow(pillow, db, stop=lambda: False, until_caught_up=False, rebuild=False,
               settings=DEFAULT_SETTINGS, on_page=lambda rows, seq: None):
    """Run ``pillow`` on ``db`` until ``stop()`` (or the feed's end, with
    ``until_caught_up``); ``rebuild`` first clears the sink and starts over at
    the start of ``db``'s feed. Returns the checkpoint row."""
    db.info()  # a database that does not exist fails here, before anything is recorded
    checkpoint = checkpoints.get_or_create(pillow.name)
    with claims.running(checkpoint, RUN, settings.heartbeat_seconds) as heartbeat:
        if rebuild:
            with transaction.atomic():  # one commit where the sink is a Django table too
                checkpoints.set_to(checkpoint, db.name, None)
                pillow.sink.clear()
        _check_follows(pillow, checkpoint, db)
        try:
            _follow(pillow, checkpoint, db, heartbeat, stop, until_caught_up, settings, on_page)
        finally:
            checkpoints.touch(checkpoint)
    return checkpoint


def _check_follows(pillow, checkpoint, db):
    if not checkpoint.db_name:
        checkpoints.set_to(checkpoint, db.name, None)  # its first run: from the start of the feed
    elif checkpoint.db_name != db.name:
        raise PillowMoved(
            f"The checkpoint of pillow {pillow.name!r} belongs to the database {checkpoint.db_name!r}, "
            f"and its app ({pillow.app_label!r}) now reads from {db.name!r}: a seq of one database means "
            f"nothing in another. After a doc type migration's flip, move it with `./manage.py "
            f"move_pillow_checkpoint {pillow.name} <migration slug>`; otherwise `./manage.py run_pillow "
            f"{pillow.name} --rebuild` processes {db.name!r} from its start.")


def _follow(pillow, checkpoint, db, heartbeat, stop, until_caught_up, settings, on_page):
    since = checkpoints.seq(checkpoint)
    while not stop():
        page = db.changes(since=since, limit=settings.batch_size, include_docs=True)
        rows = page['results']
        if rows:
            if heartbeat.lost.is_set():
                raise PillowStopped(f"Another run of pillow {pillow.name!r} took over its claim (this "
                                    f"one's heartbeat had lapsed): this one stopped without processing more.")
            pillow.process([parse_change(row) for row in rows])
            checkpoints.advance(checkpoint, db.name, page['last_seq'], len(rows))
            on_page(len(rows), page['last_seq'])
        since = page['last_seq']
        if is_feed_end(page, settings.batch_size):
            if until_caught_up:
                return
            db.wait_for_change(since, settings.max_wait, settings.heartbeat_ms)
