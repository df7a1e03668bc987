"""--status tells the truth: a database it cannot read is exit 2 with the
reason in any phase, a phase that stopped without finishing needs attention
and names the command to run, and "Nothing needs attention" only when so."""
import pytest

from corehq.doctypemigrations import claim as claims
from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations import state as states, status
from corehq.embedded_couch.server import free_port
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import run
from tests.doctypemigrations.test_status import SLUG, dump_killed, status_json, status_text


def migrated(source):
    seed(source)
    run(SLUG, '--initial')


def point_at(settings, url, db_prefix):
    helper = CouchSettingsHelper(f"{url}/{db_prefix}", settings.COUCHDB_APPS, ['users'])
    settings.COUCH_SETTINGS_HELPER = helper


def problems(report):
    return {(p['database'], p['reason']) for p in report['couch']['problems']}


@pytest.mark.parametrize('phase', ['new', 'dumping', 'following', 'cleaned'])
def test_a_missing_target_is_exit_2_with_the_reason_in_every_phase(migration_dbs, phase):
    source, target = migration_dbs
    if phase == 'dumping':
        seed(source, n=40)
        dump_killed(source, target)
    elif phase in ('following', 'cleaned'):
        migrated(source)
        if phase == 'cleaned':
            run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    assert states.phase(states.get(SLUG)) == phase
    target.delete_database()
    report, code = status_json()
    assert code == status.UNREADABLE
    assert problems(report) == {('target', 'missing database')}
    text, code = status_text()
    assert code == status.UNREADABLE and 'MISSING DATABASE' in text
    assert 'Cannot be told, since it cannot read the target database: missing database' in text
    assert 'Nothing needs attention' not in text


@pytest.mark.parametrize('how', ['wrong password', 'closed port', 'unknown host'])
def test_an_unreachable_source_while_following_is_exit_2_with_the_reason(
        migration_dbs, settings, db_prefix, couch_proxy, how):
    source, _ = migration_dbs
    migrated(source)
    if how == 'wrong password':
        couch_proxy.require_auth = ('admin', 'right')
        url = couch_proxy.url.replace('http://', 'http://admin:wrong-pw@')
    elif how == 'closed port':
        url = f"http://127.0.0.1:{free_port()}"
    else:
        url = "http://no-such-host.invalid:5984"
    point_at(settings, url, db_prefix)
    report, code = status_json()
    assert code == status.UNREADABLE
    reason = 'unauthorized' if how == 'wrong password' else 'unreachable'
    assert ('source', reason) in problems(report)
    assert 'wrong-pw' not in str(report)
    text, code = status_text()
    assert code == status.UNREADABLE and reason.upper() in text and 'wrong-pw' not in text


def test_an_initial_that_is_running_needs_no_attention_and_one_that_stopped_does(migration_dbs):
    source, target = migration_dbs
    seed(source, n=40)
    dump_killed(source, target)
    report, code = status_json()
    assert code == 1 and report['attention'] == [status.INITIAL_STOPPED]
    assert f"run_doctype_migration {SLUG} --initial" in status_text()[0]
    row = states.get(SLUG)
    claims.claim(row, 'another-host:4242:abc:initial')  # an --initial running elsewhere
    report, code = status_json()
    assert code == 0 and report['attention'] == [] and report['heartbeat']['action'] == 'initial'
    assert 'Nothing needs attention.' in status_text()[0]


def test_a_second_initial_is_refused_while_one_runs(migration_dbs):
    from django.core.management.base import CommandError
    source, target = migration_dbs
    seed(source, n=40)
    dump_killed(source, target)
    claims.claim(states.get(SLUG), 'another-host:4242:abc:initial')
    with pytest.raises(CommandError, match='Another --initial .* is running'):
        run(SLUG, '--initial')
    assert states.get(SLUG).phase == 'dumping'


def test_a_cleanup_that_stopped_needs_attention_and_a_running_one_does_not(migration_dbs):
    source, _ = migration_dbs
    migrated(source)
    row = states.get(SLUG)
    claims.claim(row, 'another-host:4242:abc:cleanup')  # a cleanup running elsewhere, still in following
    report, code = status_json()
    assert code == 0 and report['attention'] == []
    claims.release(row, 'another-host:4242:abc:cleanup')
    states.set_phase(row, 'cleaning')  # as a cleanup killed after its first deletion leaves it
    report, code = status_json()
    assert code == 1 and report['attention'] == [status.CLEANUP_STOPPED]
    assert f"run_doctype_migration {SLUG} --cleanup" in status_text()[0]
