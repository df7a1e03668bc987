"""The migrator's own phases, each timed end to end in a process of its own."""
import re
import time
from dataclasses import dataclass

from bench.commands import SLUG

INITIAL_TIMEOUT = 3600


@dataclass
class PhaseResult:
    seconds: float
    peak_rss_mb: float
    count: int          # docs the phase moved (loaded into the target, or deleted from the source)

    def as_dict(self):
        return dict(self.__dict__)


def index_doc_type_view(db):
    """Build ``all_docs/by_doc_type`` now (pouchdb indexes lazily, on the first
    query), so no measured phase pays for it; returns the seconds it took."""
    started = time.monotonic()
    db.view('all_docs', 'by_doc_type', limit=1, reduce=False, timeout=INITIAL_TIMEOUT)
    return time.monotonic() - started


def prepare_fresh_run(project, server):
    """An empty target (with the design docs sync_couch_views puts there) and an
    empty state database: what a first --initial meets."""
    target = server.db(project.target_db)
    target.delete_if_exists()
    project.fresh_state()
    project.sync_design_docs()


def run_initial(project, wrapper=()):
    finished = project.run('run_doctype_migration', SLUG, '--initial', timeout=INITIAL_TIMEOUT,
                           wrapper=wrapper)
    match = re.search(r"complete: (\d+) docs loaded", finished.stdout)
    if not match:
        raise RuntimeError(f"--initial did not report completion:\n{finished.stdout[-1000:]}")
    return PhaseResult(finished.seconds, finished.peak_rss_mb, int(match.group(1)))


def run_cleanup(project):
    finished = project.run('run_doctype_migration', SLUG, '--cleanup', '--noinput', '--canary-wait', '0',
                           timeout=INITIAL_TIMEOUT)
    match = re.search(r"Deleted (\d+) docs", finished.stdout)
    if not match:
        raise RuntimeError(f"--cleanup did not report its deletions:\n{finished.stdout[-1000:]}")
    return PhaseResult(finished.seconds, finished.peak_rss_mb, int(match.group(1)))


def design_docs(db):
    rows = db.json('GET', '_all_docs', params={'startkey': '"_design/"', 'endkey': '"_design0"',
                                                'include_docs': 'true'})['rows']
    return [row['doc'] for row in rows]


def live_docs(db):
    """Docs in a database, design docs left out: what a copy is checked against."""
    return db.info()['doc_count'] - len(design_docs(db))
