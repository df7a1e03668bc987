"""What the cluster fault tests share: realistic data, a writer that meets
409s as a couchdbkit application does, and the check that the target holds
what the source holds, once the cluster's copies agree again."""
import random
import sqlite3
import threading
import time

from corehq.couch import CouchDB, CouchHTTPError, PhaseBudget
from corehq.demo import realistic
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.cluster.faults import wait_for
from tests.doctypemigrations.helpers import manage_py, put_history, rev, visible_trees

SLUG = 'user_db_migration'
MIGRATING = users_migration.all_doc_types
# A node just back may answer from copies that have not caught up yet: the
# comparison waits (this long at most) for reads that agree.
SETTLE_LIMIT = 90


def populate(source_url, total=300, seed=0):
    """Realistic docs (histories, conflicts, deletions, attachments) in the source."""
    return realistic.populate(total, seed=seed, attachment_share=0.03, db=source_url)


def holds_claim(cwd, pid, table='doctypemigrations_doctypemigration'):
    """Whether process ``pid`` holds a claim in the state database of ./manage.py runs in ``cwd``:
    past its start-up and its first answer from the server (a server that never answered in
    a run is said at once to be unreachable, by design: that is a wrong url more often)."""
    with sqlite3.connect(cwd / 'state.sqlite3') as conn:
        rows = conn.execute(f"SELECT runner FROM {table}").fetchall()
    return any(runner and f":{pid}:" in runner for runner, in rows)


def manage(env, cwd, *args, timeout=300):
    return manage_py(env, *args, cwd=cwd, timeout=timeout)


class Writer(threading.Thread):
    """Creates, edits, retypes, deletes and branches docs of migrating and
    staying types in ``db`` through the node the settings name. A write that
    meets a 409 (its own earlier try went through before a node died, or a
    replayed request) is done again on the doc as read now, as an
    application re-reads and saves again."""

    DOC_TYPES = ('CommCareUser', 'WebUser', 'Group', 'CommCareUser-Deleted', 'Domain', 'CommCareCase')

    def __init__(self, url, seed, ids=80, pause=0.01):
        super().__init__(daemon=True)
        # an application's client waits out a node restart: far longer than any test's outage
        self.db = CouchDB(url, budget=PhaseBudget(give_up_after=120))
        self.rng = random.Random(seed)
        self.ids = ids
        self.pause = pause
        self.stopping = threading.Event()
        self.writes = 0
        self.conflicts = 0
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                self._step(f"w{self.rng.randrange(self.ids)}", self.rng.random())
                self.writes += 1
                time.sleep(self.pause)
        except Exception as e:  # reported by the test, not lost in a thread
            self.error = e

    def _step(self, doc_id, action):
        for _ in range(50):
            try:
                return self._write(doc_id, action, self.db.get(doc_id))
            except CouchHTTPError as e:
                if e.status != 409:
                    raise
                self.conflicts += 1
        raise AssertionError(f"{doc_id}: 50 conflicts in a row")

    def _write(self, doc_id, action, doc):
        if doc is None:
            return self.db.put({'_id': doc_id, 'doc_type': self.rng.choice(self.DOC_TYPES[:3]),
                                'username': doc_id, 'domain': 'd', 'n': 0})
        if action < 0.1:
            return self._delete_doc(doc)
        if action < 0.2:
            return self.db.put(dict(doc, doc_type=self.rng.choice(self.DOC_TYPES)))
        if action < 0.25:  # a conflicting branch, as a replicating peer writes it
            generation = int(doc['_rev'].split('-')[0])
            return put_history(self.db, doc_id, [rev(generation + 1), doc['_rev']],
                               {k: v for k, v in doc.items() if not k.startswith('_')})
        return self.db.put(dict(doc, n=doc.get('n', 0) + 1))

    def _delete_doc(self, doc):
        errors = self.db.bulk_docs([{'_id': doc['_id'], '_rev': doc['_rev'], '_deleted': True}])
        if errors and errors[0].get('error') == 'conflict':
            raise CouchHTTPError(f"{doc['_id']}: conflict", 409)
        assert not errors, errors

    def stop(self):
        self.stopping.set()
        self.join(timeout=150)
        assert not self.is_alive(), 'the writer did not stop'
        assert self.error is None, repr(self.error)


def compared_ids(source, target):
    """The docs the target must hold as the source does: every live
    migrating doc of the source, and every doc the target holds live (a doc
    that left the doc types or was deleted must be deleted there too)."""
    live = {row['id'] for row in source.all_docs(include_docs=True)
            if (row.get('doc') or {}).get('doc_type') in MIGRATING}
    in_target = {row['id'] for row in target.all_docs() if not row['id'].startswith('_design/')}
    return sorted(live | in_target)


def differences(source, target):
    ids = compared_ids(source, target)
    theirs, ours = visible_trees(source, ids), visible_trees(target, ids)
    return ids, sorted(doc_id for doc_id in ids if theirs[doc_id] != ours[doc_id])


def assert_target_matches(source, target):
    """Every migrating doc has the source's winner, leaves, bodies and
    attachments in the target, once reads agree (a node just back may serve
    copies that have not caught up: those converge, a doc a phase missed never does)."""
    found = {}

    def same():
        found['ids'], found['differ'] = differences(source, target)
        return not found['differ']

    try:
        wait_for(same, limit=SETTLE_LIMIT, what='the target matching the source')
    except AssertionError:
        raise AssertionError(f"{len(found['differ'])} of {len(found['ids'])} docs differ: "
                             f"{found['differ'][:10]}") from None
    assert len(found['ids']) > 50  # the comparison covered the data
    return found['ids']


def assert_verify_clean(env, cwd):
    verify = manage(env, cwd, 'run_doctype_migration', SLUG, '--verify')
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return verify.stdout
