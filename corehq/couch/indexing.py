"""Waiting for a view's index to be built, however long that takes, with progress.

A view query answers only once the index has caught up with the database. On
a database of tens of millions of docs, a new or changed view takes hours to
catch up, far longer than any read timeout, so a plain query gives up ("Cannot
reach ...: timed out") while the server is still building. Here the query runs
in a worker thread with no read timeout, and the caller's thread reports
progress meanwhile.

Progress comes from ``_active_tasks`` where the server lists its indexers
(CouchDB, Cloudant with admin rights). pouchdb-server 4.2.0 always answers
``[]``, and a ``stale=ok`` query of a view being built waits behind the build
there, so the report is then the time spent so far.

A build query cut off on its way (a proxy or load balancer ending a request
that has been open too long, or answering 502/504 for it) is sent again by the
client's retry policy, like any other request: the indexer goes on where it
was. There is no retry loop here on top of it. What the wait adds is the
reason a long build may be re-sent for longer than the phase's give-up time:
while it lasts, the server is asked something every poll, and each answer
tells the phase's budget that the server is there (see _TaskWatch).
"""
import logging
import re
import threading
import time
from collections import namedtuple
from urllib.parse import quote

from corehq.couch import CouchError, CouchHTTPError, CouchUnauthorized

log = logging.getLogger('corehq.indexing')

POLL_SECONDS = 5.0
LOG_EVERY_SECONDS = 30.0

# changes_done and total_changes are None when the server shows no indexer of
# the design doc; ``tasks`` counts those it shows (one per shard on a cluster).
IndexProgress = namedtuple('IndexProgress', 'ddoc view elapsed changes_done total_changes tasks')


class IndexNotReady(CouchError):
    """The wait reached its limit; the server goes on building the index."""


def wait_for_view_index(db, ddoc, view, on_progress=None, poll_seconds=None, limit_seconds=None):
    """Block until the index of ``ddoc``/``view`` on ``db`` is up to date;
    returns the seconds it took.

    ``on_progress(IndexProgress)`` is called every ``poll_seconds`` (default
    POLL_SECONDS) while the build lasts, never when the index was already up
    to date, nor before the server has answered anything in the phase (a
    server not reached yet, e.g. ``https://`` to CouchDB's plain HTTP port,
    whose TLS handshake only times out, is building nothing we know of: the
    retry policy says why the phase waits). Past ``limit_seconds`` (None: no limit) it raises IndexNotReady.
    The build's own failures (a missing view, a server that stopped
    answering for the budget of ``db``'s retry policy) are raised as they are.
    """
    poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
    build = _IndexBuild(db, ddoc, view)
    watch = _TaskWatch(db, ddoc, poll_seconds)
    while not build.finished.wait(_next_wait(build, poll_seconds, limit_seconds)):
        if _over_limit(build, limit_seconds):
            raise IndexNotReady(
                f"{db.display_url}: the index of {ddoc}/{view} is still being built after "
                f"{limit_seconds:.0f} s; the server goes on building it, try again later")
        # Asked even when nobody listens: the answer keeps the budget fresh.
        progress = watch.progress(view, build)
        if on_progress and db.budget.has_answered(db.retry.server):
            on_progress(progress)
    return build.result()


def catch_up(db, ddoc, view):
    """Bring a view's index up to date before a phase reads it, logging
    progress to ``corehq.indexing`` while that takes a while."""
    return wait_for_view_index(db, ddoc, view, on_progress=logged_progress(db))


def logged_progress(db, every_seconds=None):
    # A warning, so that it shows at the default log level: a phase blocked
    # on an index build should say so rather than look hung.
    def report(progress):
        log.warning("%s: waiting for the index: %s", db.display_url, describe(progress))
    return throttled(report, LOG_EVERY_SECONDS if every_seconds is None else every_seconds)


def throttled(report, every_seconds):
    """``report(progress, *context)`` called for the first progress of each
    view's wait and then at most every ``every_seconds`` of it."""
    last = {}

    def on_progress(progress, *context):
        key = (progress.ddoc, progress.view)
        # elapsed starting over means another wait for the same view
        if key not in last or not 0 <= progress.elapsed - last[key] < every_seconds:
            last[key] = progress.elapsed
            report(progress, *context)
    return on_progress


def describe(progress):
    """One line for an operator."""
    where = f"{progress.ddoc}/{progress.view}"
    if progress.total_changes:
        done = f"{100 * progress.changes_done / progress.total_changes:.0f}% " \
               f"({progress.changes_done} of {progress.total_changes} changes, " \
               f"{progress.tasks} indexer task{'s' if progress.tasks != 1 else ''})"
    else:
        done = "building (the server shows no indexer progress)"
    return f"{where}: {done}, {progress.elapsed:.0f} s so far"


def indexer_progress(tasks, db_name, ddoc):
    """(changes done, total changes, how many tasks) of the ``_active_tasks``
    indexers of ``_design/<ddoc>`` on ``db_name``; (None, None, 0) without any."""
    mine = [t for t in tasks if t.get('type') == 'indexer'
            and t.get('design_document') == f"_design/{ddoc}"
            and _same_database(t.get('database', ''), db_name)]
    if not mine:
        return None, None, 0
    return (sum(t.get('changes_done', 0) for t in mine),
            sum(t.get('total_changes', 0) for t in mine), len(mine))


def _same_database(task_database, db_name):
    # A cluster names the shard: shards/<range>/<db>.<creation time>, with an
    # account prefix on Cloudant.
    if task_database == db_name:
        return True
    return re.fullmatch(rf"shards/[^/]+/(?:[^/]+/)?{re.escape(db_name)}\.\d+", task_database) is not None


def _next_wait(build, poll_seconds, limit_seconds):
    if limit_seconds is None:
        return poll_seconds
    return max(0.0, min(poll_seconds, limit_seconds - build.elapsed()))


def _over_limit(build, limit_seconds):
    return limit_seconds is not None and build.elapsed() >= limit_seconds


class _IndexBuild:
    """The index-building query, run in a daemon thread so that a wait given
    up (a limit, Ctrl-C) does not keep the process alive."""

    def __init__(self, db, ddoc, view):
        self.db = db
        self.path = f"_design/{quote(ddoc, safe='')}/_view/{quote(view, safe='')}"
        self.error = None
        self.finished = threading.Event()
        self.started = time.monotonic()
        threading.Thread(target=self._run, name=f"index {ddoc}/{view}", daemon=True).start()

    def elapsed(self):
        return time.monotonic() - self.started

    def result(self):
        if self.error is not None:
            raise self.error
        return self.elapsed()

    def _run(self):
        try:
            self._query()
        except BaseException as e:  # handed to the waiting thread, which raises it
            self.error = e
        finally:
            self.finished.set()

    def _query(self):
        # No read timeout: the answer comes when the index is built. Rows
        # and a reduce would cost more than the build's answer needs.
        self.db.json('GET', self.path, params={'reduce': 'false', 'limit': 0},
                     timeout=(_connect_timeout(self.db), None))


class _TaskWatch:
    """Reads the server's indexer tasks for progress; asks a server that
    refuses ``_active_tasks`` (it is for admins only) for the database's info
    instead.

    Either answer is a success of the phase, so the budget of ``db``'s retry
    policy gives up on the build query only once the server has answered
    nothing for its give-up time: a build query cut off again and again (by a
    proxy ending requests open for minutes) is not the server failing while it
    answers everything else, and the build must be waited for, not given up.
    """

    def __init__(self, db, ddoc, poll_seconds):
        self.db, self.ddoc = db, ddoc
        self.allowed = True
        # A slow answer must not hold up noticing that the build is over.
        self.timeout = (_connect_timeout(db), min(_read_timeout(db), max(2 * poll_seconds, 5.0)))

    def progress(self, view, build):
        done, total, count = indexer_progress(self._tasks(), self.db.name, self.ddoc)
        return IndexProgress(self.ddoc, view, build.elapsed(), done, total, count)

    def _tasks(self):
        if not self.allowed:
            self._ask_info()
            return []
        try:
            return self.db.json('GET', '_active_tasks', server_level=True, timeout=self.timeout)
        except CouchUnauthorized:
            self.allowed = False
        except CouchHTTPError as e:
            self.allowed = e.status != 403
        except CouchError:
            pass  # no news this time; the build itself is watched by its own thread
        return []

    def _ask_info(self):
        try:
            self.db.json('GET', timeout=self.timeout)
        except CouchError:
            pass  # as above


def _connect_timeout(db):
    return db.timeout[0] if isinstance(db.timeout, tuple) else db.timeout


def _read_timeout(db):
    read = db.timeout[1] if isinstance(db.timeout, tuple) else db.timeout
    return float('inf') if read is None else read
