import pytest
from django.core.exceptions import ImproperlyConfigured

from corehq.couch import mask_password
from corehq.couchsettings import CouchSettingsHelper

MAIN = 'http://admin:s3cret@couch.example:5984/commcarehq'


def test_plain_and_tuple_entries_map_to_databases():
    helper = CouchSettingsHelper(MAIN, ['domain', ('users', 'users'), ('groups', None)], ['users'])
    assert helper.get_couchdb_databases() == {
        'domain': {'URL': 'http://admin:s3cret@couch.example:5984/commcarehq'},
        'users': {'URL': 'http://admin:s3cret@couch.example:5984/commcarehq__users'},
        'groups': {'URL': 'http://admin:s3cret@couch.example:5984/commcarehq'},
    }


def test_extra_databases_are_named_after_the_main_one():
    helper = CouchSettingsHelper('http://h:1/proj/', [], ['users', 'fixtures'])
    assert helper.full_db_name(None) == 'proj'
    assert helper.full_db_name('users') == 'proj__users'
    assert helper.db_url('fixtures') == 'http://h:1/proj__fixtures'
    assert helper.all_db_names() == [None, 'users', 'fixtures']


def test_unregistered_extra_database_is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="'users'.*'typo'"):
        CouchSettingsHelper(MAIN, [('users', 'typo')], ['users2'])


def test_unknown_short_name_is_rejected():
    helper = CouchSettingsHelper(MAIN, [], ['users'])
    with pytest.raises(ImproperlyConfigured):
        helper.full_db_name('nope')


@pytest.mark.parametrize('url, masked', [
    (MAIN, 'http://admin:****@couch.example:5984/commcarehq'),
    ('https://u:p@host/db', 'https://u:****@host/db'),
    ('http://127.0.0.1:5984/db', 'http://127.0.0.1:5984/db'),
])
def test_mask_password(url, masked):
    assert mask_password(url) == masked
