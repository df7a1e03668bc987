import os
import stat

import pytest
from django.core.management.base import CommandError

from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import run, trees, visible_trees


def test_initial_copies_revision_trees_exactly(migration_dbs):
    source, target = migration_dbs
    migrating, staying = seed(source)
    output = run('user_db_migration', '--initial')
    assert 'Initial migration complete' in output
    assert visible_trees(target, migrating) == visible_trees(source, migrating)
    conflicted = trees(target, ['conflicted'])['conflicted']
    assert len(conflicted['leaves']) == 2 and not conflicted['deleted']


def test_attachments_arrive_byte_for_byte(migration_dbs):
    source, target = migration_dbs
    seed(source)
    run('user_db_migration', '--initial')
    original = source.request('GET', 'with-attachment/photo.bin').content
    copied = target.request('GET', 'with-attachment/photo.bin').content
    assert copied == original == bytes(range(256)) * 4


def test_non_migrating_and_design_docs_stay_behind(migration_dbs):
    source, target = migration_dbs
    _, staying = seed(source)
    target_ddocs = {r['id']: r['value']['rev'] for r in target.all_docs(startkey='_design/', endkey='_design0')}
    run('user_db_migration', '--initial')
    assert all(tree is None for tree in trees(target, staying).values())
    after = {r['id']: r['value']['rev'] for r in target.all_docs(startkey='_design/', endkey='_design0')}
    assert after == target_ddocs


def test_initial_records_the_seq_before_the_dump_and_refuses_a_second_run(migration_dbs):
    source, target = migration_dbs
    seed(source)
    seq_before = source.update_seq()
    run('user_db_migration', '--initial')
    state = states.get(users_migration.slug)
    assert states.original_seq(state) == seq_before
    assert states.latest_checkpoint(state) == seq_before
    with pytest.raises(CommandError, match='already complete.*--continuous'):
        run('user_db_migration', '--initial')


def test_dump_file_is_private_and_names_the_migration(migration_dbs):
    source, _ = migration_dbs
    seed(source)
    run('user_db_migration', '--initial')
    mode = stat.S_IMODE(os.stat('user_db_migration.log').st_mode)
    assert mode == 0o600
    with open('user_db_migration.log') as f:
        header = f.readline()
    assert '"slug":"user_db_migration"' in header and source.name in header


def test_a_doc_refused_by_the_target_is_reported_and_initial_stays_incomplete(migration_dbs):
    source, target = migration_dbs
    seed(source)
    target.put({'_id': '_design/refuse', 'validate_doc_update':
                "function (doc) { if (doc._id === 'm3') { throw({forbidden: 'no m3 here'}); } }"})
    with pytest.raises(CommandError, match=r'(?s)refused.*m3.*no m3 here'):
        run('user_db_migration', '--initial')
    assert not states.initial_complete(states.get(users_migration.slug))
    assert target.get('m4') is not None


def test_views_on_the_new_db_return_the_migrated_docs(migration_dbs):
    from corehq.apps.groups.models import Group
    from corehq.apps.users.models import CommCareUser
    source, target = migration_dbs
    user = CommCareUser(username='ada', domain='d1')
    user.save()
    Group(name='team', domain='d1', users=[user._id]).save()
    assert target.view('users', 'by_username', key='ada')['rows'] == []
    run('user_db_migration', '--initial')
    assert [r['id'] for r in target.view('users', 'by_username', key='ada')['rows']] == [user._id]
    assert [r['value'] for r in target.view('groups', 'by_user_id', key=user._id)['rows']] == ['team']
    counts = {tuple(r['key']): r['value'] for r in target.view('all_docs', 'by_doc_type', group_level=1)['rows']}
    assert counts == {('CommCareUser',): 1, ('Group',): 1}


def test_initial_without_the_view_scans_the_feed_and_copies_deleted_leaves_too(migration_dbs):
    source, target = migration_dbs
    migrating, _ = seed(source)
    ddoc = source.get('_design/all_docs')
    source.bulk_docs([{'_id': ddoc['_id'], '_rev': ddoc['_rev'], '_deleted': True}])
    run('user_db_migration', '--initial')
    assert trees(target, migrating) == trees(source, migrating)
    assert list(trees(target, ['deleted-leaf'])['deleted-leaf']['leaves'].values()).count(True) == 1


def test_a_deleted_leaf_comes_along_with_the_docs_next_change(migration_dbs):
    source, target = migration_dbs
    seed(source)
    run('user_db_migration', '--initial')
    doc = source.get('deleted-leaf')
    source.put(dict(doc, touched=True))
    run('user_db_migration', '--continuous', '--until-caught-up')
    assert trees(target, ['deleted-leaf']) == trees(source, ['deleted-leaf'])
