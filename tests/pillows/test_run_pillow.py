"""run_pillow: the user index, its checkpoint, one run at a time, clean stops, bad input."""
import json
import signal
import sqlite3
import subprocess
import time

import pytest
from django.core.management.base import CommandError

from corehq.couch import CouchDB
from corehq.doctypemigrations import claim as claims
from corehq.pillows import checkpoints
from corehq.pillows.pillow import get_pillow
from tests.doctypemigrations.helpers import state_db_ready
from tests.pillows.helpers import flip, index, pillow, rebuilt_index, start_manage, stop


@pytest.fixture
def main_db(couch_settings, source_db, db):
    return source_db


def users(db, prefix, n, doc_type='CommCareUser', **fields):
    db.bulk_docs([{'_id': f"{prefix}{i}", 'doc_type': doc_type, 'username': f"{prefix}{i}@d",
                   'domain': 'd', **fields} for i in range(n)])


def test_the_user_index_follows_every_change(main_db):
    users(main_db, 'u', 5)
    main_db.bulk_docs([{'_id': 'g1', 'doc_type': 'Group', 'name': 'nurses', 'domain': 'd'},
                       {'_id': 'w1', 'doc_type': 'WebUser', 'username': 'web@x', 'domains': ['d', 'e']},
                       {'_id': 'dom', 'doc_type': 'Domain', 'name': 'd'}])
    out = pillow('user_index', '--until-caught-up')
    assert 'caught up' in out
    assert sorted(index()) == ['g1', 'u0', 'u1', 'u2', 'u3', 'u4', 'w1']
    assert index()['g1'] == {'doc_type': 'Group', 'domain': 'd', 'name': 'nurses', 'active': True}
    assert index()['w1']['domain'] == 'd,e'
    u0, u1, u2 = (main_db.get(f"u{i}") for i in range(3))
    main_db.bulk_docs([dict(u0, is_active=False), {'_id': 'u1', '_rev': u1['_rev'], '_deleted': True},
                       dict(u2, doc_type='CommCareUser-Deleted')])
    pillow('user_index', '--until-caught-up')
    assert index()['u0']['active'] is False
    assert 'u1' not in index() and 'u2' not in index()  # deleted; left the doc types
    checkpoint = checkpoints.get('user_index')
    assert checkpoint.db_name == main_db.name and checkpoints.seq(checkpoint) is not None
    assert checkpoint.runner is None  # the claim is released
    assert rebuilt_index() == {k: v for k, v in index().items()}
    assert checkpoints.get('user_index').processed == len(main_db.changes()['results'])


def test_rebuild_starts_over_and_clears_the_sink(main_db):
    users(main_db, 'u', 3)
    pillow('user_index', '--until-caught-up')
    from corehq.pillows.models import UserIndexEntry
    UserIndexEntry.objects.create(doc_id='stale', doc_type='CommCareUser')
    pillow('user_index', '--rebuild', '--until-caught-up')
    assert sorted(index()) == ['u0', 'u1', 'u2']


def test_unknown_pillow_and_missing_database(couch_settings, db):
    with pytest.raises(CommandError, match="no pillow named 'nope'; the pillows are: user_index"):
        pillow('nope', '--until-caught-up')
    with pytest.raises(CommandError, match='does the database exist'):
        pillow('user_index', '--until-caught-up', '--give-up-after', '5')
    assert checkpoints.get('user_index') is None  # nothing recorded for a database that is not there


def test_a_flipped_app_needs_the_checkpoint_moved(main_db, settings, target_db):
    users(main_db, 'u', 2)
    pillow('user_index', '--until-caught-up')
    flip(settings)
    with pytest.raises(CommandError, match=r"belongs to the database .* move_pillow_checkpoint user_index "
                                           r"<migration slug>.*--rebuild"):
        pillow('user_index', '--until-caught-up')


def test_only_one_runs_per_pillow(main_db):
    checkpoint = checkpoints.get_or_create('user_index')
    owner = claims.new_owner('run_pillow')  # this very process: alive
    claims.claim(checkpoint, owner)
    try:
        with pytest.raises(CommandError, match=r"Another run_pillow of pillow user_index is running .* "
                                               r"only one process works on pillow user_index at a time"):
            pillow('user_index', '--until-caught-up')
    finally:
        claims.release(checkpoint, owner)
    pillow('user_index', '--until-caught-up')


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_it_with_its_checkpoint_saved(couch_settings, source_db, subprocess_env,
                                                              tmp_path, sig):
    state_db_ready(subprocess_env, tmp_path)
    users(source_db, 'u', 30)
    proc = start_manage(subprocess_env, tmp_path, 'run_pillow', 'user_index', '--batch-size', '10',
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while _processed(subprocess_env, tmp_path) < 30:
            assert time.monotonic() < deadline and proc.poll() is None, 'the pillow did not get through'
            time.sleep(0.2)
        users(source_db, 'later', 3)
    finally:
        out = stop(proc, sig)
    assert proc.returncode == 0, out
    assert 'Stopped; checkpoint saved at seq ' in out
    seq, runner, _processed_count = _checkpoint(subprocess_env, tmp_path)
    assert out.strip().endswith(f"seq {seq} of {source_db.name}") and runner is None


def _checkpoint(env, cwd):
    """(seq, runner, processed) in the state database of ./manage.py runs, or None."""
    with sqlite3.connect(cwd / 'state.sqlite3') as conn:
        row = conn.execute("SELECT seq, runner, processed FROM pillows_pillowcheckpoint "
                           "WHERE name = 'user_index'").fetchone()
    return None if row is None else (json.loads(row[0]) if row[0] else None, row[1], row[2])


def _processed(env, cwd):
    row = _checkpoint(env, cwd)
    return row[2] if row else 0


def test_the_pillow_registry_names_its_app():
    assert get_pillow('user_index').app_label == 'users'
    assert CouchDB  # the client the commands use
