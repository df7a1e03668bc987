from io import StringIO

from django.core.management import call_command

from corehq.apps.groups.models import Group
from corehq.apps.users.models import CommCareUser, WebUser
from corehq.couch import CouchDB


def sync(*args):
    out = StringIO()
    call_command('sync_couch_views', *args, stdout=out)
    return out.getvalue()


def design_doc_ids(db):
    return {row['id'] for row in db.all_docs(startkey='_design/', endkey='_design0')}


def test_design_docs_go_where_couchdb_apps_and_plugins_say(couch_settings):
    sync()
    main = CouchDB(couch_settings.db_url(None))
    new = CouchDB(couch_settings.db_url('users'))
    assert design_doc_ids(main) == {'_design/all_docs', '_design/domain', '_design/users', '_design/groups'}
    # the new db gets users/groups (ExtraPreindexPlugin) and couchapps, not domain
    assert design_doc_ids(new) == {'_design/all_docs', '_design/users', '_design/groups'}


def test_unchanged_design_docs_are_left_alone_and_changed_ones_updated(couch_settings):
    sync()
    main = CouchDB(couch_settings.db_url(None))
    rev = main.get('_design/users')['_rev']
    assert 'created' not in sync()
    assert main.get('_design/users')['_rev'] == rev
    stale = main.get('_design/users')
    stale['views'] = {'old': {'map': 'function (doc) {}'}}
    main.put(stale)
    output = sync()
    assert '_design/users (users): updated' in output
    assert 'by_username' in main.get('_design/users')['views']


def test_views_return_the_right_rows(couch_settings):
    alice = CommCareUser(username='alice', domain='d1')
    alice.save()
    bob = WebUser(username='bob', domains=['d1', 'd2'])
    bob.save()
    Group(name='team', domain='d1', users=[alice._id, bob._id]).save()
    Group(name='other', domain='d2', users=[bob._id]).save()
    sync()
    main = CouchDB(couch_settings.db_url(None))
    by_username = main.view('users', 'by_username', key='bob')['rows']
    assert [row['id'] for row in by_username] == [bob._id]
    by_domain = main.view('users', 'by_domain', startkey=['d1'], endkey=['d1', {}], reduce=False)['rows']
    assert sorted(row['id'] for row in by_domain) == sorted([alice._id, bob._id])
    groups = main.view('groups', 'by_domain', startkey=['d2'], endkey=['d2', {}])['rows']
    assert [row['key'] for row in groups] == [['d2', 'other']]
    by_user = main.view('groups', 'by_user_id', key=bob._id)['rows']
    assert sorted(row['value'] for row in by_user) == ['other', 'team']
    counts = main.view('all_docs', 'by_doc_type', group_level=1)['rows']
    assert {tuple(r['key']): r['value'] for r in counts} == {
        ('CommCareUser',): 1, ('WebUser',): 1, ('Group',): 2}
    assert CommCareUser.by_username('alice')._id == alice._id


def test_an_unreachable_database_is_named_without_its_password(settings, couch_settings):
    import pytest
    from django.core.management.base import CommandError
    from corehq.couchsettings import CouchSettingsHelper
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(
        'http://admin:hunter2@127.0.0.1:9/proj', settings.COUCHDB_APPS, ['users'])
    with pytest.raises(CommandError) as excinfo:
        sync()
    assert 'http://admin:****@127.0.0.1:9/proj' in str(excinfo.value)
    assert 'hunter2' not in str(excinfo.value)
