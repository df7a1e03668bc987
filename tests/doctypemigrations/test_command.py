"""The command's contract with the operator: forms, errors, output."""
import pytest
from django.core.management.base import CommandError

from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.migrator import Migrator
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.helpers import run

USAGE = """You may run either of the following commands

./manage.py run_doctype_migration <slug> --initial
./manage.py run_doctype_migration <slug> --continuous

with with the following slugs:

user_db_migration
"""


@pytest.mark.parametrize('args', [(), ('no_such_slug',), ('no_such_slug', '--stats')])
def test_no_arguments_or_an_unknown_slug_give_the_guide_text(args):
    with pytest.raises(CommandError) as excinfo:
        run(*args)
    message = str(excinfo.value)
    if args:
        assert message.startswith("'no_such_slug' is not a known migration slug")
        message = message.split('\n\n', 1)[1]
    assert message.startswith(USAGE)


def test_a_slug_without_a_phase_names_the_phases():
    with pytest.raises(CommandError, match='--stats, --initial, --continuous, --verify, --cleanup'):
        run('user_db_migration')


@pytest.mark.parametrize('phases', [('--initial', '--continuous'), ('--cleanup', '--stats'),
                                    ('--cleanup', '--initial')])
def test_phases_run_alone(phases):
    with pytest.raises(CommandError, match='not allowed with'):
        run('user_db_migration', *phases)


def test_stats_table_matches_the_guide(migration_dbs):
    source, target = migration_dbs
    source.bulk_docs([{'doc_type': 'CommCareUser'}] * 3 + [{'doc_type': 'Group-Deleted'}]
                     + [{'doc_type': 'Domain'}])
    lines = run('user_db_migration', '--stats').splitlines()
    assert lines[0] == f"Source DB: {source.display_url}"
    assert lines[1] == f"Target DB: {target.display_url}"
    assert lines[2] == ''
    assert lines[3] == '           doc_type             Source  Target'
    rows = lines[4:]
    assert len(rows) == 18 and rows == sorted(rows)
    assert 'CommCareUser                    3       0' in rows
    assert 'Group-Deleted                   1       0' in rows
    assert 'AdminUserRole                   0       0' == rows[0]
    assert not any(row.startswith('Domain ') for row in rows)


def test_stats_without_the_couchapps_view_says_how_to_fix_it(couch_settings, source_db, target_db, db):
    with pytest.raises(CommandError, match='sync_couch_views'):
        run('user_db_migration', '--stats')


def test_unreachable_server_is_one_clear_line(db, settings, couch_settings):
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(
        'http://admin:hunter2@127.0.0.1:9/commcarehq', settings.COUCHDB_APPS, ['users'])
    with pytest.raises(CommandError) as excinfo:
        run('user_db_migration', '--initial')
    message = str(excinfo.value)
    assert 'Cannot reach http://admin:****@127.0.0.1:9/commcarehq' in message
    assert 'connection refused' in message and 'hunter2' not in message
    assert states.get(users_migration.slug) is None


def test_unknown_host_is_one_clear_line(db, settings, couch_settings):
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(
        'http://couch.invalid:5984/commcarehq', settings.COUCHDB_APPS, ['users'])
    with pytest.raises(CommandError, match='host name could not be resolved'):
        run('user_db_migration', '--stats')


@pytest.mark.parametrize('url', ['couch.example.com:5984/commcarehq',
                                 'htp://admin:hunter2@couch:5984/commcarehq',
                                 'http://admin:hunter2@/commcarehq'])
def test_a_malformed_server_url_is_one_clear_line(db, settings, couch_settings, url):
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(url, settings.COUCHDB_APPS, ['users'])
    with pytest.raises(CommandError, match=r'is not a CouchDB url .*: it needs to be http\(s\)://') \
            as excinfo:
        run('user_db_migration', '--stats')
    assert 'hunter2' not in str(excinfo.value)
    assert states.get(users_migration.slug) is None


def test_wrong_credentials_are_named_without_the_password(db, settings, couch_server, couch_settings):
    url = couch_server.url.replace('http://', 'http://admin:hunter2@') + '/commcarehq'
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(url, settings.COUCHDB_APPS, ['users'])
    with pytest.raises(CommandError) as excinfo:
        run('user_db_migration', '--initial')
    assert 'refused the credentials' in str(excinfo.value) and 'admin:****@' in str(excinfo.value)
    assert 'hunter2' not in str(excinfo.value)
    assert states.get(users_migration.slug) is None


def test_missing_target_database_is_named_and_nothing_is_recorded(couch_settings, source_db, db, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    source_db.put({'_id': 'u', 'doc_type': 'CommCareUser'})
    with pytest.raises(CommandError,
                       match=rf"database .*{couch_settings.full_db_name('users')} does not exist"):
        run('user_db_migration', '--initial')
    assert states.get(users_migration.slug) is None
    assert not (tmp_path / 'user_db_migration.log').exists()


def test_a_changed_migrator_never_reuses_the_checkpoint(migration_dbs, monkeypatch):
    run('user_db_migration', '--initial')
    changed = Migrator('user_db_migration', None, 'users', users_migration.doc_types + ('Extra',))
    monkeypatch.setattr('corehq.doctypemigrations.migrator_instances.registry._by_slug',
                        {'user_db_migration': changed})
    for phase in (('--continuous',), ('--cleanup', '--noinput'), ('--initial',)):
        with pytest.raises(CommandError, match='belongs to a different migrator'):
            run('user_db_migration', *phase)


def test_verbosity_zero_is_quiet(migration_dbs):
    source, _ = migration_dbs
    source.put({'_id': 'u', 'doc_type': 'CommCareUser'})
    assert run('user_db_migration', '--initial', verbosity=0) == ''
    assert run('user_db_migration', '--continuous', '--until-caught-up', verbosity=0) == ''


def test_missing_state_tables_say_which_migrate_to_run(couch_settings, source_db, target_db, subprocess_env,
                                                       tmp_path):
    from tests.doctypemigrations.helpers import manage_py
    result = manage_py(subprocess_env, 'run_doctype_migration', 'user_db_migration', '--initial',
                       cwd=tmp_path)
    assert result.returncode != 0
    assert ('migrate doctypemigrations 0010_pair_changes' in result.stderr
            and 'Traceback' not in result.stderr)


def test_the_allocator_is_told_to_give_memory_back_on_glibc():
    import platform
    from corehq.doctypemigrations.management.commands._allocator import keep_memory_flat
    # True only when glibc accepted both settings; this CI machine runs glibc
    assert keep_memory_flat() is (platform.libc_ver()[0] == 'glibc')


@pytest.mark.parametrize('phase, given, gives_up_after', [
    ('initial', None, 600), ('continuous', None, None), ('cleanup', 30.0, 30.0),
    ('initial', 0.0, None), ('continuous', 5.0, 5.0)])
def test_give_up_after_defaults_per_phase_and_0_means_never(phase, given, gives_up_after):
    from corehq.doctypemigrations.management.commands.run_doctype_migration import Command
    assert Command._budget(phase, {'give_up_after': given}).give_up_after == gives_up_after
