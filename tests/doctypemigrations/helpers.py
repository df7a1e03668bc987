"""Building and inspecting real revision trees for the migration tests."""
import base64
import sys
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from corehq.couch import CouchDB
from corehq.doctypemigrations.events import Events
from tests import processes
from tests.conftest import PROJECT_DIR
from tests.couchproxy import decode_seq


def rev(generation, seed=None):
    return f"{generation}-{(seed or uuid.uuid4().hex)[:32]}"


def put_history(db, doc_id, revs, body, deleted=False):
    """Write one branch with a given history (newest first), as a replicator would."""
    doc = dict(body, _id=doc_id, _rev=revs[0],
               _revisions={'start': int(revs[0].split('-')[0]), 'ids': [r.split('-', 1)[1] for r in revs]})
    if deleted:
        doc['_deleted'] = True
    assert db.bulk_docs([doc], new_edits=False) == []
    return revs[0]


def make_conflicted(db, doc_id, body, loser_body=None):
    """A doc with two live leaves (and a common ancestor); returns (winner, loser) revs."""
    root = rev(1, 'a' * 32)
    left = put_history(db, doc_id, [rev(2, 'f' * 32), root], body)
    right = put_history(db, doc_id, [rev(2, '0' * 32), root], loser_body or body)
    return left, right


def attachment(data):
    return {'content_type': 'application/octet-stream', 'data': base64.b64encode(data).decode()}


def revision_tree(db, doc_id):
    """{'winner', 'deleted', 'leaves': {rev: deleted?}, 'bodies', 'history'} or None."""
    return trees(db, [doc_id])[doc_id]


def trees(db, doc_ids):
    """Revision trees of many docs in three requests: leaves from ``_changes``,
    winners from ``_all_docs``, every leaf's body and history from ``_bulk_get``."""
    doc_ids = list(doc_ids)
    result = dict.fromkeys(doc_ids)
    leaf_rows = db.changes_for_ids(doc_ids) if doc_ids else []
    winners = {row['id']: row['value'] for row in db.all_docs(keys=doc_ids) if 'value' in row}
    leaves, _missing = db.bulk_get([(row['id'], c['rev']) for row in leaf_rows for c in row['changes']])
    for doc in leaves:
        tree = result[doc['_id']] or {'winner': winners[doc['_id']]['rev'],
                                      'deleted': bool(winners[doc['_id']].get('deleted')),
                                      'leaves': {}, 'bodies': {}, 'history': {}}
        tree['leaves'][doc['_rev']] = bool(doc.get('_deleted'))
        tree['bodies'][doc['_rev']] = _body(doc)
        tree['history'][doc['_rev']] = doc['_revisions']
        result[doc['_id']] = tree
    return result


def visible(tree):
    """What CouchDB shows of a doc: its winner, deleted state and live conflicts
    (deleted losing leaves are not conflicts)."""
    if tree is None:
        return None
    live = {r for r, deleted in tree['leaves'].items() if not deleted or r == tree['winner']}
    return {'winner': tree['winner'], 'deleted': tree['deleted'],
            'bodies': {r: tree['bodies'][r] for r in live},
            'history': {r: tree['history'][r] for r in live}}


def visible_trees(db, doc_ids):
    return {doc_id: visible(tree) for doc_id, tree in trees(db, doc_ids).items()}


def _body(doc):
    return {k: v for k, v in doc.items() if k not in ('_revisions',)}


def manage_py(env, *args, cwd, **kwargs):
    """./manage.py in a process of its own (for env-driven settings and real kills)."""
    return processes.run([sys.executable, PROJECT_DIR / 'manage.py', *args], cwd=cwd, env=env,
                         capture_output=True, text=True, **kwargs)


def state_db_ready(env, cwd):
    """The state tables in the subprocess's own database (past the blocking migration)."""
    env['UNIT_TESTING'] = '1'
    assert manage_py(env, 'migrate', cwd=cwd).returncode == 0


def initial_in_subprocess(env, cwd):
    state_db_ready(env, cwd)
    result = manage_py(env, 'run_doctype_migration', 'user_db_migration', '--initial', cwd=cwd)
    assert result.returncode == 0, result.stderr


def start_migration(env, cwd, *phase, **popen_kwargs):
    """run_doctype_migration user_db_migration in the background, to kill or interrupt
    (Ctrl-C works in it, see tests.processes; stop it with ``processes.stop``)."""
    return processes.start([sys.executable, PROJECT_DIR / 'manage.py', 'run_doctype_migration',
                            'user_db_migration', *phase], cwd=cwd, env=env, **popen_kwargs)


def run(*args, **kwargs):
    """call_command run_doctype_migration; returns stdout."""
    out = StringIO()
    call_command('run_doctype_migration', *args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


class RecordedEvents(Events):
    """What a phase reported: {stage: [total asked for, units advanced, ended?]}."""

    def __init__(self):
        self.stages = {}

    def stage(self, name, total=None, done=0, unit='docs'):
        self.stages[name] = [total() if callable(total) else total, done, False]

    def advanced(self, name, n):
        self.stages[name][1] += n

    def stage_done(self, name):
        self.stages[name][2] = True


class ServerFeed:
    """A database's changes feed as the server itself has it, past the
    --couch-proxy (whose replays would count rows from before a seq as after
    it): the tests' oracle of what comes after a seq, seqs being opaque."""

    def __init__(self, couch_server, couch_url):
        self.url = couch_server.url
        self.proxied = couch_url != couch_server.url

    def seq(self, seq):
        """The server's own seq behind one the proxy made opaque."""
        return decode_seq(seq) if self.proxied and seq is not None else seq

    def rows_after(self, db, seq):
        """{doc id: its row} of every doc changed after ``seq`` (None: from the start)."""
        direct, seq = CouchDB(f"{self.url}/{db.name}"), self.seq(seq)
        rows = {}
        while True:
            page = direct.changes(since=seq, limit=500, include_docs=True)
            for row in page['results']:
                rows[row['id']] = row
            if not page['results']:
                return rows
            seq = page['last_seq']


@pytest.fixture
def server_feed(couch_server, couch_url):
    return ServerFeed(couch_server, couch_url)
