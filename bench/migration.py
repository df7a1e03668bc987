"""The migrator's own phases, each timed end to end in a process of its own."""
import json
import re
import time
from dataclasses import dataclass

from bench.commands import SLUG
from bench.couchclient import CouchRequestError

INITIAL_TIMEOUT = 3600
READER_TIMEOUT = 1800      # --stats / --status: bounded, and reported however long they take


@dataclass
class PhaseResult:
    seconds: float
    peak_rss_mb: float
    count: int          # docs the phase moved (loaded into the target, or deleted from the source)
    cpu_seconds: float = None

    def as_dict(self):
        return dict(self.__dict__)


def index_doc_type_view(db):
    """Build ``all_docs/by_doc_type`` now (pouchdb indexes lazily, on the first
    query), so no measured phase pays for it; returns the seconds it took.

    CouchDB answers a query that waited longer than its request timeout for
    the build with ``500 timeout`` while the build goes on: asked again until
    it answers."""
    started = time.monotonic()
    while True:
        try:
            db.view('all_docs', 'by_doc_type', limit=1, reduce=False, timeout=INITIAL_TIMEOUT)
            return time.monotonic() - started
        except CouchRequestError as error:
            if error.status != 500 or '"timeout"' not in str(error) \
                    or time.monotonic() - started > INITIAL_TIMEOUT:
                raise


def prepare_fresh_run(project, server):
    """An empty target (with the design docs sync_couch_views puts there) and an
    empty state database: what a first --initial meets."""
    target = server.db(project.target_db)
    target.delete_if_exists()
    project.fresh_state()
    project.sync_design_docs()


def run_initial(project, *extra, wrapper=()):
    finished = project.run('run_doctype_migration', SLUG, '--initial', *extra, timeout=INITIAL_TIMEOUT,
                           wrapper=wrapper)
    match = re.search(r"complete: (\d+) docs loaded", finished.stdout)
    if not match:
        raise RuntimeError(f"--initial did not report completion:\n{finished.stdout[-1000:]}")
    return PhaseResult(finished.seconds, finished.peak_rss_mb, int(match.group(1)), finished.cpu_seconds)


def run_cleanup(project, *extra):
    finished = project.run('run_doctype_migration', SLUG, '--cleanup', '--noinput', *extra,
                           timeout=INITIAL_TIMEOUT)
    match = re.search(r"Deleted (\d+) docs", finished.stdout)
    if not match:
        raise RuntimeError(f"--cleanup did not report its deletions:\n{finished.stdout[-1000:]}")
    return PhaseResult(finished.seconds, finished.peak_rss_mb, int(match.group(1)), finished.cpu_seconds)


def run_verify(project):
    """``--continuous --until-caught-up`` (the lag phases stop their follower
    with writes maybe still unread), then ``--verify``: its exit code and its
    counts line, whatever they are."""
    project.run('run_doctype_migration', SLUG, '--continuous', '--until-caught-up', timeout=INITIAL_TIMEOUT)
    finished = project.run('run_doctype_migration', SLUG, '--verify', timeout=INITIAL_TIMEOUT,
                           ok_codes=range(256))
    lines = [line.strip() for line in finished.stdout.splitlines() if line.strip()]
    counts = next((line for line in lines if re.search(r"\d+ equal", line)), lines[0] if lines else '')
    error = finished.stderr.strip().splitlines()
    return {'exit_code': finished.returncode, 'seconds': finished.seconds, 'line': counts,
            'error': error[0] if finished.returncode and error else None,
            'peak_rss_mb': finished.peak_rss_mb}


def time_readers(project, server):
    """How long the read-only commands take to answer, as an operator runs them.

    ``--stats`` runs twice: the first time it waits for the target's
    by_doc_type index to catch up with the docs --initial just wrote (pouchdb
    indexes on the first query; CouchDB in the background), the second time
    the index is current. ``--status`` may exit 1 (attention: no follower
    runs), which is an answer too.
    """
    readers = {}
    for key, args, ok_codes in (
            ('stats_first', ('--stats',), (0,)),
            ('stats', ('--stats',), (0,)),
            ('status', ('--status',), (0, 1)),
            ('status_json', ('--status', '--json'), (0, 1))):
        finished = project.run('run_doctype_migration', SLUG, *args, timeout=READER_TIMEOUT,
                               ok_codes=ok_codes)
        readers[key] = {'seconds': finished.seconds, 'peak_rss_mb': finished.peak_rss_mb,
                        'exit_code': finished.returncode}
    readers['server_queries'] = _time_stats_queries(server, project)
    return readers


def _time_stats_queries(server, project):
    """The queries behind --stats, asked of the server directly with the index
    current: a lookup of one row, and the reduce --stats makes (``group_level=1``
    over the whole view). What the reduce costs is the server's, not the command's."""
    timings = {}
    for role, name in (('source', project.main_db), ('target', project.target_db)):
        db = server.db(name)
        for key, params in (('lookup', {'reduce': False, 'limit': 1}), ('reduce', {'group_level': 1})):
            started = time.monotonic()
            db.view('all_docs', 'by_doc_type', timeout=READER_TIMEOUT, **params)
            timings[f"{role}_{key}_s"] = time.monotonic() - started
    return timings


def phase_of(project):
    """The migration's recorded phase, as ``--status --json`` tells it."""
    finished = project.run('run_doctype_migration', SLUG, '--status', '--json', timeout=READER_TIMEOUT,
                           ok_codes=(0, 1, 2))
    try:
        return json.loads(finished.stdout).get('phase')
    except ValueError:
        return None


def design_docs(db):
    rows = db.json('GET', '_all_docs', params={'startkey': '"_design/"', 'endkey': '"_design0"',
                                               'include_docs': 'true'})['rows']
    return [row['doc'] for row in rows]


def live_docs(db):
    """Docs in a database, design docs left out: what a copy is checked against."""
    return db.info()['doc_count'] - len(design_docs(db))
