import pytest

from corehq.doctypemigrations.djangomigrations import MigrationNotComplete, assert_initial_complete
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.helpers import manage_py, run


@pytest.fixture
def not_unit_testing(settings, monkeypatch):
    settings.UNIT_TESTING = False
    monkeypatch.delenv('CCHQ_IS_FRESH_INSTALL', raising=False)


def test_blocks_before_initial_and_passes_after(migration_dbs, not_unit_testing):
    source, _ = migration_dbs
    source.put({'_id': 'u', 'doc_type': 'CommCareUser'})
    check = assert_initial_complete(users_migration)
    with pytest.raises(MigrationNotComplete) as excinfo:
        check(None, None)
    message = str(excinfo.value)
    for step in ('sync_couch_views', 'run_doctype_migration user_db_migration --initial',
                 './manage.py migrate', 'CCHQ_IS_FRESH_INSTALL=1', 'live swap'):
        assert step in message
    assert (message.index('sync_couch_views') < message.index('--initial')
            < message.rindex('./manage.py migrate'))
    run('user_db_migration', '--initial')
    check(None, None)


def test_fresh_install_and_unit_testing_skip_the_check(db, settings, monkeypatch):
    check = assert_initial_complete(users_migration)
    settings.UNIT_TESTING = True
    check(None, None)
    settings.UNIT_TESTING = False
    monkeypatch.setenv('CCHQ_IS_FRESH_INSTALL', '1')
    check(None, None)
    monkeypatch.setenv('CCHQ_IS_FRESH_INSTALL', '0')
    with pytest.raises(MigrationNotComplete):
        check(None, None)


def test_the_shipped_blocking_migration_stops_migrate_until_initial(couch_settings, subprocess_env, tmp_path):
    subprocess_env.pop('UNIT_TESTING', None)
    subprocess_env.pop('CCHQ_IS_FRESH_INSTALL', None)

    def manage(*args):
        return manage_py(subprocess_env, *args, cwd=tmp_path)

    manage('sync_couch_views')
    blocked = manage('migrate')
    assert blocked.returncode != 0 and 'MigrationNotComplete' in blocked.stderr
    assert manage('run_doctype_migration', 'user_db_migration', '--initial').returncode == 0
    passed = manage('migrate')
    assert passed.returncode == 0, passed.stderr
