"""Each sample doc type saves to the database COUCHDB_APPS gives its app."""
import json
import subprocess
import sys

import pytest

from corehq.apps.domain.models import Domain
from corehq.apps.groups.models import DeleteGroupRecord, Group
from corehq.apps.users.models import (
    AdminUserRole, CommCareUser, DomainRemovalRecord, Invitation, OrgRemovalRecord,
    UserRole, WebUser,
)
from corehq.couch import CouchDB
from tests.conftest import PROJECT_DIR

USERS_GROUPS_CLASSES = [CommCareUser, WebUser, Invitation, UserRole, AdminUserRole,
                        DomainRemovalRecord, OrgRemovalRecord, Group, DeleteGroupRecord]

SAVE_ALL = """
import json
from corehq.apps.domain.models import Domain
from corehq.apps.groups.models import Group, DeleteGroupRecord
from corehq.apps.users.models import *
saved = {}
for cls in [CommCareUser, WebUser, Invitation, UserRole, AdminUserRole, DomainRemovalRecord,
            OrgRemovalRecord, Group, DeleteGroupRecord, Domain]:
    doc = cls()
    doc.save()
    saved[cls.__name__] = doc._id
print(json.dumps(saved))
"""


def ids_by_db(couch_settings, saved):
    found = {}
    for short_name in (None, 'users'):
        db = CouchDB(couch_settings.db_url(short_name))
        for doc_type, doc_id in saved.items():
            if db.exists() and db.get(doc_id):
                found[doc_type] = short_name
    return found


def test_before_the_flip_everything_saves_to_the_main_db(couch_settings):
    saved = {}
    for cls in USERS_GROUPS_CLASSES + [Domain]:
        doc = cls()
        doc.save()
        saved[cls.__name__] = doc._id
    assert ids_by_db(couch_settings, saved) == {name: None for name in saved}
    assert CouchDB(couch_settings.db_url(None)).get(saved['CommCareUser'])['doc_type'] == 'CommCareUser'


def test_after_the_flip_users_and_groups_save_to_the_new_db(couch_settings, subprocess_env):
    subprocess_env['USERS_GROUPS_DB'] = 'users'
    result = subprocess.run([sys.executable, 'manage.py', 'shell', '-c', SAVE_ALL],
                            cwd=PROJECT_DIR, env=subprocess_env, capture_output=True, text=True,
                            check=True)
    saved = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {cls.__name__: 'users' for cls in USERS_GROUPS_CLASSES}
    expected['Domain'] = None
    assert ids_by_db(couch_settings, saved) == expected


@pytest.mark.parametrize('value', ['typo'])
def test_flipping_to_an_unregistered_db_fails_at_start(subprocess_env, value):
    subprocess_env['USERS_GROUPS_DB'] = value
    result = subprocess.run([sys.executable, 'manage.py', 'check'], cwd=PROJECT_DIR,
                            env=subprocess_env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "not registered with COUCH_SETTINGS_HELPER" in result.stderr
