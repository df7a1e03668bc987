"""doctype_migration_views: which views a migration touches, where they live, what breaks."""
import json
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command

from corehq.couchsettings import CouchSettingsHelper
from corehq.couch import CouchDB
from corehq.doctypemigrations.migrator import Migrator
from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug
from corehq.preindex.registry import ExtraPreindexPlugin
from corehq.preindex.viewreport import build_report, compared_doc_types, mentions

MIXED_DESIGN_DIR = Path(__file__).resolve().parent / 'mixedapp' / '_design'
USERS_MIGRATION = 'user_db_migration'

# The settings before the flip, spelled out so that a USERS_GROUPS_DB in the
# environment does not change what these tests expect.
BEFORE_FLIP = CouchSettingsHelper(
    'http://couch.invalid/cchq', ['couchapps', 'domain', ('groups', None), ('users', None)], ['users'])
MAIN, NEW = 'cchq', 'cchq__users'


def report_for(migrator, helper=BEFORE_FLIP, extra_registrations=()):
    return build_report(migrator, helper, apps.get_app_configs(),
                        ExtraPreindexPlugin.registrations() + list(extra_registrations))


def view_names(views):
    return [view.name for view in views]


def write_view(tmp_path, ddoc, view, map_js):
    view_dir = tmp_path / '_design' / ddoc / 'views' / view
    view_dir.mkdir(parents=True)
    (view_dir / 'map.js').write_text(map_js)
    return tmp_path / '_design'


def test_doc_types_match_as_whole_string_literals():
    assert mentions("doc.doc_type === 'CommCareUser'", 'CommCareUser')
    assert mentions('doc.doc_type === "CommCareUser"', 'CommCareUser')
    assert not mentions("doc.doc_type === 'CommCareUserX'", 'CommCareUser')
    assert not mentions("doc.doc_type === 'CommCareUser-Deleted'", 'CommCareUser')
    assert not mentions("doc.doc_type === 'MyCommCareUser'", 'CommCareUser')
    assert not mentions("// CommCareUser", 'CommCareUser')
    assert mentions("doc.doc_type === 'CommCareUser-Deleted'", 'CommCareUser-Deleted')


def test_doc_types_compared_with_doc_type_are_found_both_ways_round():
    js = "if (doc.doc_type !== 'Foo' && 'Bar-Deleted' == doc.doc_type && doc.name === 'Baz') {}"
    assert compared_doc_types(js) == {'Foo', 'Bar-Deleted'}


def test_users_migration_lists_its_views_with_databases_today_and_after_the_flip():
    report = report_for(get_migrator_by_slug(USERS_MIGRATION))
    assert (report.source_db, report.target_db) == (MAIN, NEW)
    assert report.flipping_apps == ['groups', 'users']
    by_doc_type = report.views_by_doc_type
    assert view_names(by_doc_type['CommCareUser']) == ['users/by_domain', 'users/by_username']
    assert view_names(by_doc_type['WebUser']) == ['users/by_domain', 'users/by_username']
    assert view_names(by_doc_type['Group']) == ['groups/by_domain', 'groups/by_user_id']
    assert by_doc_type['CommCareUser-Deleted'] == []
    by_username = by_doc_type['CommCareUser'][1]
    assert (by_username.app_label, by_username.doc_id) == ('users', '_design/users')
    # ExtraPreindexPlugin puts it on both today; after the flip COUCHDB_APPS
    # and the plugin agree on the new db
    assert (by_username.today, by_username.after) == ((MAIN, NEW), (NEW,))
    assert not any('domain/by_name' in view_names(views) for views in by_doc_type.values())
    [generic] = report.generic_views
    assert (generic.name, generic.today, generic.after) == ('all_docs/by_doc_type', (MAIN, NEW), (MAIN, NEW))
    assert report.mixed_views == []


def test_a_view_mixing_migrating_and_staying_doc_types_is_flagged():
    report = report_for(get_migrator_by_slug(USERS_MIGRATION),
                        extra_registrations=[('mixedapp', MIXED_DESIGN_DIR, None)])
    [mixed] = report.mixed_views
    assert mixed.view.name == 'mixed/users_and_domains'
    assert (mixed.migrating, mixed.staying) == (['CommCareUser'], ['Domain'])
    # an app without migrating Document classes stays where it is
    assert (mixed.view.today, mixed.view.after) == ((MAIN,), (MAIN,))


def test_a_doc_type_no_document_class_defines_counts_as_staying(tmp_path):
    design_dir = write_view(tmp_path, 'legacy', 'groups_and_teams',
                            "function (doc) { if (doc.doc_type === 'Group' || doc.doc_type === 'OldTeam') "
                            "{ emit(doc.name, null); } }")
    report = report_for(Migrator('groups_only', None, 'users', ['Group']),
                        extra_registrations=[('legacy', design_dir, None)])
    [mixed] = report.mixed_views
    assert mixed.view.name == 'legacy/groups_and_teams'
    assert (mixed.migrating, mixed.staying) == (['Group'], ['OldTeam'])


def test_doc_types_without_a_view_on_the_target_after_the_flip_are_flagged(tmp_path):
    # the only view mentioning OrgRemovalRecord belongs to an app that stays on the main db
    design_dir = write_view(tmp_path, 'left', 'org_removals',
                            "function (doc) { if (doc.doc_type === 'OrgRemovalRecord') "
                            "{ emit(doc.org, null); } }")
    migrator = Migrator('partial', None, 'users', ['Group', 'DeleteGroupRecord', 'OrgRemovalRecord'])
    report = report_for(migrator, extra_registrations=[('left', design_dir, None)])
    assert view_names(report.views_by_doc_type['OrgRemovalRecord']) == ['left/org_removals']
    assert report.uncovered_doc_types == [
        'DeleteGroupRecord', 'DeleteGroupRecord-Deleted', 'Group-Deleted',
        'OrgRemovalRecord', 'OrgRemovalRecord-Deleted']


def test_after_the_flip_nothing_moves_again():
    flipped = CouchSettingsHelper('http://couch.invalid/cchq',
                                  ['couchapps', 'domain', ('groups', 'users'), ('users', 'users')], ['users'])
    report = report_for(get_migrator_by_slug(USERS_MIGRATION), helper=flipped)
    assert report.flipping_apps == []
    [by_domain, by_username] = report.views_by_doc_type['CommCareUser']
    assert by_username.today == by_username.after == (NEW,)


def test_the_databases_today_are_where_sync_couch_views_puts_the_views(couch_settings):
    call_command('sync_couch_views', '--no-build', stdout=StringIO())
    report = report_for(get_migrator_by_slug(USERS_MIGRATION), helper=couch_settings)
    views = {view for views in report.views_by_doc_type.values() for view in views}
    views.update(report.generic_views)
    assert {view.name for view in views} == {
        'users/by_domain', 'users/by_username', 'groups/by_domain', 'groups/by_user_id',
        'all_docs/by_doc_type'}
    for short_name in couch_settings.all_db_names():
        db = CouchDB(couch_settings.db_url(short_name))
        for view in views:
            ddoc = db.get(view.doc_id) or {'views': {}}
            on_server = view.name.split('/')[1] in ddoc['views']
            expected = couch_settings.full_db_name(short_name) in view.today
            assert on_server == expected, (view.name, short_name)


def run(*args):
    out = StringIO()
    call_command('doctype_migration_views', *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def before_flip(settings):
    settings.COUCH_SETTINGS_HELPER = BEFORE_FLIP


def test_command_prints_views_and_flags(before_flip):
    output = run(USERS_MIGRATION)
    assert f"users/by_username (app users): today {MAIN}, {NEW}; after the flip {NEW}" in output
    assert "No view mixes migrating and staying doc types." in output
    assert "No view on cchq__users mentions these doc types" in output
    assert "AdminUserRole, AdminUserRole-Deleted, CommCareUser-Deleted" in output


def test_command_json(before_flip):
    report = json.loads(run(USERS_MIGRATION, '--json'))
    assert report['flipping_apps'] == ['groups', 'users']
    assert report['views_by_doc_type']['Group'][0] == {
        'view': 'groups/by_domain', 'app': 'groups', 'design_doc': '_design/groups',
        'today': [MAIN, NEW], 'after_flip': [NEW]}
    assert 'UserRole' in report['uncovered_doc_types']


def test_command_rejects_an_unknown_slug_naming_the_known_ones():
    with pytest.raises(CommandError, match=f"'nope'.*{USERS_MIGRATION}"):
        run('nope')
