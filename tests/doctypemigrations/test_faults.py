"""Faults between the migrator and the server, injected by a real proxy."""
import gzip
import os
import random
import sqlite3
import threading
import time

import pytest
from django.core.management.base import CommandError

from corehq.doctypemigrations import state as states
from corehq.couch import CouchDB
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import manage_py, put_history, rev, run, visible_trees


def test_a_413_splits_the_batch_until_it_fits(proxied_dbs):
    proxy, source, target = proxied_dbs
    migrating, _ = seed(source)
    proxy.max_request_bytes = 3000
    run('user_db_migration', '--initial')
    proxy.max_request_bytes = None
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
    assert proxy.count('POST', r'_bulk_docs') > 10


def test_a_doc_too_large_even_alone_is_reported(proxied_dbs):
    proxy, source, target = proxied_dbs
    source.put({'_id': 'big', 'doc_type': 'CommCareUser', 'blob': 'x' * 20000})
    source.put({'_id': 'small', 'doc_type': 'CommCareUser'})
    proxy.max_request_bytes = 10000
    with pytest.raises(CommandError, match=r'(?s)refused.*big.*too_large'):
        run('user_db_migration', '--initial')
    assert target.get('small') is not None


def test_a_forbidden_doc_in_a_201_is_reported_and_the_phase_fails(proxied_dbs):
    proxy, source, target = proxied_dbs
    seed(source)
    proxy.inject_doc_errors = {'m5': ('forbidden', 'not on my watch')}
    with pytest.raises(CommandError, match=r'(?s)1 documents were refused.*m5.*forbidden.*not on my watch'):
        run('user_db_migration', '--initial')
    assert not states.initial_complete(states.get(users_migration.slug))
    proxy.inject_doc_errors = None
    run('user_db_migration', '--initial')
    assert target.get('m5') is not None


def test_a_forbidden_doc_never_stops_continuous_and_is_sent_again_until_it_goes_in(proxied_dbs):
    import json
    from tests.doctypemigrations.test_status import status_text
    proxy, source, target = proxied_dbs
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    before = states.latest_checkpoint(state)
    source.put({'_id': 'late', 'doc_type': 'Group'})
    source.put({'_id': 'after', 'doc_type': 'Group'})
    proxy.inject_doc_errors = {'late': ('forbidden', 'nope')}
    out = run('user_db_migration', '--continuous', '--until-caught-up')
    assert 'refused 1 document(s)' in out and 'late' in out and 'nope' in out
    assert states.latest_checkpoint(state) != before  # it moved on
    assert target.get('after') is not None and target.get('late') is None  # every other doc flows
    assert states.follow_refusals(state) == ['late']
    text, code = status_text()
    assert code == 1 and 'late' in text and 'refused document(s) --continuous copied' in text
    report = json.loads(status_text('--json')[0])
    assert report['attention'] == ['refused_while_following', 'follower_dead']
    run('user_db_migration', '--continuous', '--until-caught-up')  # refused again: still recorded
    assert states.follow_refusals(state) == ['late']
    proxy.inject_doc_errors = None  # the cause fixed
    run('user_db_migration', '--continuous', '--until-caught-up')  # no new change of it: sent again
    assert target.get('late') is not None and states.follow_refusals(state) == []
    assert 'agree on every migrating doc' in run('user_db_migration', '--verify')


def test_responses_cut_off_midway_are_retried(proxied_dbs):
    proxy, source, target = proxied_dbs
    migrating, _ = seed(source, n=60)
    proxy.drop_paths = r'_changes|_bulk_get|_all_docs'
    proxy.drop_after_bytes = 200
    proxy.drop_count = 4
    run('user_db_migration', '--initial')
    source.bulk_docs([{'_id': f"late{i}", 'doc_type': 'WebUser'} for i in range(30)])
    proxy.drop_count = 3
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert proxy.drops == 7
    ids = migrating + [f"late{i}" for i in range(30)]
    assert visible_trees(target, ids) == visible_trees(source, ids)


def test_no_password_anywhere(couch_proxy, db_prefix, settings, subprocess_env, tmp_path):
    password = 'Sup3r-s3cret-pw'
    couch_proxy.require_auth = ('admin', password)
    authed = couch_proxy.url.replace('http://', f'http://admin:{password}@')
    subprocess_env.update(COUCH_SERVER_URL=authed, UNIT_TESTING='1', LOG_LEVEL='DEBUG')
    outputs = []

    def manage(*args):
        result = manage_py(subprocess_env, *args, cwd=tmp_path)
        outputs.extend([result.stdout, result.stderr])
        return result

    assert manage('migrate').returncode == 0
    assert manage('sync_couch_views').returncode == 0
    source = CouchDB(f"{authed}/{db_prefix}")
    seed(source)
    for phase in (['--stats'], ['--initial', '--keep-dump'], ['--continuous', '--until-caught-up'],
                  ['--verify'], ['--cleanup', '--noinput', '--canary-wait', '0'], ['--stats']):
        assert manage('run_doctype_migration', 'user_db_migration', *phase).returncode == 0, outputs[-1]
    wrong = dict(subprocess_env, COUCH_SERVER_URL=authed.replace(password, 'wrong-' + password))
    failed = manage_py(wrong, 'run_doctype_migration', 'user_db_migration', '--stats', cwd=tmp_path)
    assert failed.returncode != 0 and 'refused the credentials' in failed.stderr
    outputs.extend([failed.stdout, failed.stderr])
    assert 'admin:****@' in outputs[4]  # --stats shows the masked url
    for text in outputs:
        assert password not in text
    header, compressed = (tmp_path / 'user_db_migration.log').read_bytes().split(b'\n', 1)
    dump = header + gzip.decompress(compressed)
    assert b'"doc_type"' in dump and password.encode() not in dump
    assert oct(os.stat(tmp_path / 'user_db_migration.log').st_mode & 0o777) == '0o600'
    state_db = subprocess_env['DATABASE_URL'].replace('sqlite:///', '')
    with sqlite3.connect(state_db) as conn:
        for table in ('doctypemigrations_doctypemigration', 'doctypemigrations_doctypemigrationcheckpoint'):
            assert password not in repr(conn.execute(f"select * from {table}").fetchall())


def test_edge_documents(migration_dbs):
    source, target = migration_dbs
    source.put({'_id': 'huge', 'doc_type': 'CommCareUser', 'blob': 'y' * (5 * 1024 * 1024)})
    source.put({'_id': '_local/checkpoint', 'doc_type': 'CommCareUser'})
    source.put({'_id': '_design/app', 'views': {}, 'doc_type': 'CommCareUser'})
    history = [rev(n, f"{n:032x}") for n in range(1000, 0, -1)]
    put_history(source, 'deep', history, {'doc_type': 'Group'})
    run('user_db_migration', '--initial')
    assert target.get('huge')['blob'] == 'y' * (5 * 1024 * 1024)
    assert visible_trees(target, ['deep']) == visible_trees(source, ['deep'])
    assert target.get('_local/checkpoint') is None
    assert target.get('_design/app') is None


@pytest.mark.slow
def test_soak_four_writers_then_verify_finds_no_difference(migration_dbs):
    source, target = migration_dbs
    seed(source, n=100)
    stop = threading.Event()
    failures = []

    def writer(name):
        rng = random.Random(name)
        try:
            for i in range(2000):
                if stop.is_set():
                    return
                doc_id = f"{name}-{rng.randrange(60)}"
                current = source.get(doc_id)
                action = rng.random()
                if current is None:
                    source.put({'_id': doc_id, 'doc_type': rng.choice(['CommCareUser', 'Group', 'Domain'])})
                elif action < 0.15:
                    source.bulk_docs([{'_id': doc_id, '_rev': current['_rev'], '_deleted': True}])
                elif action < 0.25:
                    # a conflicting edit, as a replicating peer would write it
                    gen = int(current['_rev'].split('-')[0])
                    put_history(source, doc_id, [rev(gen + 1), current['_rev']],
                                {'doc_type': current.get('doc_type', 'Group'), 'peer': i})
                elif action < 0.3:
                    source.put(dict(current, doc_type=rng.choice(['CommCareUser', 'Domain', 'WebUser'])))
                else:
                    source.put(dict(current, n=i))
        except Exception as e:  # surfaced below: a writer must not die silently
            failures.append(e)

    threads = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    try:
        run('user_db_migration', '--initial')
        from tests.doctypemigrations.test_follower import follower
        follower(source, target).run(stop=lambda: time.monotonic() > deadline
                                     or not any(t.is_alive() for t in threads))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures
    run('user_db_migration', '--continuous', '--until-caught-up')
    output = run('user_db_migration', '--verify')
    assert ' 0 missing in target, 0 stale, 0 extra' in output
