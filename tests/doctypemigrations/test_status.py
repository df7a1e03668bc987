"""--status: where a migration stands, in every phase, against the real server.

It reads and never writes; its exit code tells a monitor whether attention is
needed (1) or could not be told (2).
"""
import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from corehq.doctypemigrations import claim as claims
from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations import state as states, status
from corehq.doctypemigrations.events import Events
from corehq.couch import CouchDB
from corehq.doctypemigrations.initial import run_initial
from corehq.doctypemigrations.status_text import render_text
from corehq.doctypemigrations.migrator_instances import users_migration
from corehq.doctypemigrations.stats import doc_types_total
from corehq.embedded_couch.server import free_port
from tests import servers
from tests.doctypemigrations.data import seed
from tests.doctypemigrations.helpers import (  # noqa: F401 (server_feed: a fixture)
    initial_in_subprocess, manage_py, run, server_feed, start_migration, state_db_ready,
)
from tests.doctypemigrations.test_phases import straggler
from tests.doctypemigrations.test_resume import SMALL_PAGES, DieAfterTheDump, Killed, StepHook
from tests.processes import stop, wait_for_line

SLUG = users_migration.slug
DUMP = f"{SLUG}.log"  # where --initial dumps when not told otherwise, relative to the cwd


def status_text(*args):
    """--status in this process: (stdout, exit code)."""
    out = StringIO()
    try:
        call_command('run_doctype_migration', SLUG, '--status', *args, stdout=out, stderr=StringIO())
    except CommandError as e:
        return out.getvalue(), e.returncode
    return out.getvalue(), 0


def status_json(*args):
    out, code = status_text('--json', *args)
    return json.loads(out), code


def status_of_subprocess(env, cwd, *args):
    """--status --json as an operator's shell runs it: (report, exit code, stderr)."""
    result = manage_py(env, 'run_doctype_migration', SLUG, '--status', '--json', *args, cwd=cwd, timeout=60)
    return json.loads(result.stdout), result.returncode, result.stderr


def dying_once(step, progress_field):
    """Events that 'kill' --initial at its first ``step`` ('Dumping'
    or 'Loading') update after the state records some progress; ``done``
    is what that step reported done until then (docs scanned, or loaded)."""
    class Bar(StepHook):
        done = 0

        def update(self, n=1):
            if self.desc == step:
                self.done += n
                if getattr(states.get(SLUG), progress_field):
                    raise Killed()
    return Bar()


def dump_killed(source, target):
    """--initial killed after its first dumped page; returns how many docs
    (or changes of the feed) that page scanned."""
    events = dying_once('Dumping', 'docs_dumped')
    with pytest.raises(Killed):
        run_initial(users_migration, source, target, DUMP, SMALL_PAGES, events)
    return events.done


def write_users(source, prefix, n):
    source.bulk_docs([{'_id': f"{prefix}{i}", 'doc_type': 'CommCareUser'} for i in range(n)])


# -- new, and what cannot be read ---------------------------------------------------

def test_new_and_unreadable_from_the_shell(migration_dbs, subprocess_env, tmp_path):
    no_tables = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--status', cwd=tmp_path)
    assert no_tables.returncode == 2
    assert 'migrate doctypemigrations' in no_tables.stderr and 'Traceback' not in no_tables.stderr

    state_db_ready(subprocess_env, tmp_path)
    unknown = manage_py(subprocess_env, 'run_doctype_migration', 'no_such_slug', '--status', cwd=tmp_path)
    assert unknown.returncode == 2 and 'with with the following slugs' in unknown.stderr

    text = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--status', cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert 'phase       new' in text.stdout and 'Nothing needs attention.' in text.stdout
    report, code, _ = status_of_subprocess(subprocess_env, tmp_path)
    assert code == 0
    assert report['phase'] == 'new' and report['attention'] == [] and report['checkpoint'] is None
    assert report['dump'] == {'path': DUMP, 'exists': False, 'bytes': None, 'docs_dumped': 0,
                              'complete': False, 'left': None}
    assert report['couch']['reachable'] is True


@pytest.mark.parametrize('args', [(), ('no_such_slug',)])
def test_an_unknown_slug_gives_the_guide_text_and_exit_2(db, args):
    with pytest.raises(CommandError) as excinfo:
        call_command('run_doctype_migration', *args, '--status', stdout=StringIO())
    assert 'with with the following slugs' in str(excinfo.value) and excinfo.value.returncode == 2


# -- dumping and loading ----------------------------------------------------------

@pytest.fixture
def dumping(migration_dbs):
    """A dump of the by_doc_type view killed after its first page: (source,
    the view rows left to dump)."""
    source, target = migration_dbs
    seed(source, n=40)
    scanned = dump_killed(source, target)
    left = doc_types_total(source, users_migration.all_doc_types) - scanned
    assert scanned > 0 and left > 3
    return source, left


def test_dumping_interrupted_has_an_eta(dumping):
    _source, left = dumping
    recorded = states.get(SLUG)
    report, code = status_json()
    assert code == 1 and report['attention'] == [status.INITIAL_STOPPED]  # killed: nothing runs
    assert report['phase'] == 'dumping'
    # recorded absolute, so --status finds it from any folder
    assert report['dump'] == {'path': os.path.abspath(DUMP), 'exists': True, 'bytes': os.path.getsize(DUMP),
                              'docs_dumped': recorded.docs_dumped, 'complete': False,
                              'left': {'count': left, 'lower_bound': False, 'of': 'view'}}
    assert recorded.docs_dumped > 0
    assert report['load'] == {'docs_loaded': 0, 'of': None}
    assert report['pending'] is None
    # what is left at the rate so far
    elapsed = (datetime.fromisoformat(report['as_of']) - recorded.created).total_seconds()
    assert report['eta_basis'] == 'dump rate'
    assert report['eta_seconds'] == pytest.approx(max(0.1, left * elapsed / recorded.docs_dumped), abs=0.06)
    text, code = status_text()
    assert code == 1
    assert "phase       dumping" in text and f"{recorded.docs_dumped} docs dumped, {left} docs left" in text
    assert 'about ' in text and '(from the dump rate)' in text


@pytest.mark.pouchdb_only("pouchdb-server reduces at query time, so rows are counted by reading them; "
                          "CouchDB keeps reduce values")
def test_what_the_dump_has_left_is_counted_only_up_to_the_cap_on_pouchdb_server(dumping):
    """pouchdb-server counts rows only by reading them: past the cap the status
    says it does not know, rather than make one up."""
    source, left = dumping
    assert not status.keeps_reductions(source.info())
    report = status.migration_status(users_migration, states.get(SLUG), source, cap=3)
    assert report['dump']['left'] == {'count': 3, 'lower_bound': True, 'of': 'view'}
    assert report['eta_seconds'] is None and report['attention'] == [status.INITIAL_STOPPED]
    text = render_text(report)
    assert '>= 3 docs left to dump' in text
    assert 'ETA         unknown: at least 3 left, and this server counts them only by reading' in text


def test_a_server_that_keeps_reduce_values_counts_what_the_dump_has_left_at_once(
        dumping, monkeypatch, couch_kind):
    """CouchDB's reduce over the rest of the view; on pouchdb-server asked as if
    it kept reduce values (the count is the same, only its cost differs)."""
    source, left = dumping
    if couch_kind == servers.POUCHDB:
        monkeypatch.setattr(status, 'keeps_reductions', lambda info: True)
    else:
        assert status.keeps_reductions(source.info())
    report = status.migration_status(users_migration, states.get(SLUG), source, cap=3)
    assert report['dump']['left'] == {'count': left, 'lower_bound': False, 'of': 'view'}
    assert report['eta_seconds'] > 0


def test_dumping_the_feed_without_the_view_has_an_eta(migration_dbs, feed_replays, server_feed):  # noqa: F811
    source, target = migration_dbs
    seed(source, n=40)
    ddoc = source.get('_design/all_docs')
    source.bulk_docs([{'_id': ddoc['_id'], '_rev': ddoc['_rev'], '_deleted': True}])
    dump_killed(source, target)
    report, code = status_json()
    assert code == 1 and report['phase'] == 'dumping'
    left = report['dump']['left']
    # the feed's rows after the dump's position: a server that filters the feed by doc type
    # passes over the other docs' rows without handing them over
    position = states.decode_seq(states.get(SLUG).dump_since)['changes']
    expected = len(server_feed.rows_after(source, position))
    assert left['of'] == 'feed' and left['lower_bound'] is False
    assert expected <= left['count'] <= expected + feed_replays and expected > 0
    # the changes left at the rate the feed was scanned so far
    info, created = source.info(), states.get(SLUG).created
    scanned_so_far = info['doc_count'] + info.get('doc_del_count', 0) - left['count']
    elapsed = (datetime.fromisoformat(report['as_of']) - created).total_seconds()
    assert report['eta_basis'] == 'dump rate'
    expected_eta = max(0.1, left['count'] * elapsed / scanned_so_far)
    assert report['eta_seconds'] == pytest.approx(expected_eta, abs=0.06)
    text, _ = status_text()  # read again: a replaying feed may count a few more
    shown = re.search(r"(\d+) changes of the feed left to scan", text)
    assert shown and expected <= int(shown.group(1)) <= expected + feed_replays
    assert '(from the dump rate)' in text


def test_dumping_before_any_progress_says_why_there_is_no_eta(migration_dbs):
    source, target = migration_dbs
    seed(source)

    class DyingAtTheStart(Events):
        def stage(self, name, **kwargs):
            raise Killed()

    with pytest.raises(Killed):
        run_initial(users_migration, source, target, DUMP, SMALL_PAGES, DyingAtTheStart())
    report, code = status_json()
    assert code == 1 and report['phase'] == 'dumping' and report['dump']['docs_dumped'] == 0
    assert report['dump']['left'] is None and report['eta_seconds'] is None
    assert 'ETA         unknown: the dump has recorded no progress yet' in status_text()[0]


def test_loading_interrupted_has_an_eta(migration_dbs):
    source, target = migration_dbs
    seed(source, n=40)
    with pytest.raises(Killed):
        run_initial(users_migration, source, target, DUMP, SMALL_PAGES, DieAfterTheDump())
    recorded = states.get(SLUG)
    report, code = status_json()
    assert code == 1 and report['phase'] == 'loading'
    assert report['dump']['complete'] is True
    assert report['load'] == {'docs_loaded': recorded.docs_loaded, 'of': recorded.docs_dumped}
    assert 0 < recorded.docs_loaded < recorded.docs_dumped
    assert report['eta_seconds'] > 0 and report['eta_basis'] == 'initial rate'
    text, _ = status_text()
    assert f"{recorded.docs_loaded} of {recorded.docs_dumped} docs loaded" in text and 'about ' in text


def test_loading_with_a_refusal_needs_attention(proxied_dbs):
    proxy, source, target = proxied_dbs
    seed(source)
    proxy.inject_doc_errors = {'m5': ('forbidden', 'not on my watch')}
    with pytest.raises(CommandError, match='refused'):
        run(SLUG, '--initial')
    report, code = status_json()
    assert code == 1
    assert report['phase'] == 'loading' and report['attention'] == ['refused_docs']
    [refusal] = report['refusals']
    assert refusal['doc_id'] == 'm5' and refusal['error'] == 'forbidden'
    assert refusal['reason'] == 'not on my watch' and refusal['rev'].startswith('1-')
    assert report['load']['docs_loaded'] == report['load']['of'] > 0
    assert report['eta_seconds'] is None  # waiting cannot help: the operator must
    text, code = status_text()
    assert code == 1
    assert 'm5 1-' in text and 'forbidden (not on my watch)' in text
    assert 'Attention needed:' in text and 'refused 1 document(s)' in text


# -- following ---------------------------------------------------------------------

@pytest.fixture
def follower_process(migration_dbs, subprocess_env, tmp_path):
    """A --continuous of its own, caught up, in a subprocess; stopped at the end."""
    initial_in_subprocess(subprocess_env, tmp_path)
    proc = start_migration(subprocess_env, tmp_path, '--continuous', stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(proc, 'All caught up')
        yield proc
    finally:
        stop(proc)


def test_following_with_a_live_follower(follower_process, subprocess_env, tmp_path, feed_replays):
    report, code, stderr = status_of_subprocess(subprocess_env, tmp_path)
    assert code == 0, stderr
    assert report['phase'] == 'following' and report['attention'] == []
    heartbeat = report['heartbeat']
    assert heartbeat['fresh'] is True and heartbeat['age_seconds'] < claims.HEARTBEAT_MAX_AGE
    assert heartbeat['owner']['pid'] == str(follower_process.pid)
    assert report['checkpoint']['seq'] is not None and report['checkpoint']['at']
    assert 0 <= report['pending'] <= feed_replays and report['pending_lower_bound'] is False
    if not feed_replays:
        assert report['eta_seconds'] == 0
    text = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--status', cwd=tmp_path)
    assert text.returncode == 0
    assert f"alive: --continuous, pid {follower_process.pid}" in text.stdout
    assert 'Nothing needs attention.' in text.stdout


def test_following_with_a_dead_follower(follower_process, migration_dbs, subprocess_env, tmp_path):
    source, _ = migration_dbs
    follower_process.send_signal(signal.SIGKILL)
    follower_process.wait()
    write_users(source, 'after-the-kill', 5)
    report, code, stderr = status_of_subprocess(subprocess_env, tmp_path)
    assert code == 1 and 'needs attention: follower_dead' in stderr
    assert report['attention'] == ['follower_dead']
    assert report['heartbeat']['fresh'] is False
    assert report['heartbeat']['owner']['pid'] == str(follower_process.pid)  # the claim it left
    assert report['pending'] >= 5 and report['eta_seconds'] is None
    behind, code, _ = status_of_subprocess(subprocess_env, tmp_path, '--max-pending', '3')
    assert code == 1 and behind['attention'] == ['follower_dead', 'behind']
    text = manage_py(subprocess_env, 'run_doctype_migration', SLUG, '--status', cwd=tmp_path)
    assert text.returncode == 1
    assert f"DEAD: --continuous, pid {follower_process.pid}" in text.stdout
    assert 'no --continuous is running' in text.stdout


@pytest.fixture
def following(migration_dbs):
    """In the following phase with two checkpoints, and this process holding
    the follower's claim (a fresh heartbeat)."""
    source, target = migration_dbs
    write_users(source, 'before', 50)
    run(SLUG, '--initial')
    write_users(source, 'during', 50)
    time.sleep(0.05)  # two checkpoints with some time between them
    run(SLUG, '--continuous', '--until-caught-up')
    row = states.get(SLUG)
    claims.claim(row, claims.new_owner())
    return source, row


def test_pending_and_eta_from_the_recent_checkpoints(following, feed_replays, couch_settings):
    source, row = following
    write_users(source, 'pending', 20)
    # the source's url with its credentials (source.url has none)
    report = status.migration_status(users_migration, row, status.quick_db(couch_settings.db_url(None)))
    assert 20 <= report['pending'] <= 20 + feed_replays and not report['pending_lower_bound']
    assert report['rate_per_second'] > 0
    assert report['eta_seconds'] > 0 and report['eta_basis'] == 'checkpoints'
    assert report['attention'] == []


def test_pending_beyond_the_cap_is_a_lower_bound_unless_the_server_counts(following, couch_kind):
    """pouchdb-server's feed gives no pending count: the changes are counted by
    reading them, up to the cap. CouchDB's feed counts them itself, exactly."""
    source, row = following
    write_users(source, 'pending', 5)
    report = status.migration_status(users_migration, row, source, cap=3, max_pending=2)
    assert report['attention'] == ['behind'] and status.exit_code(report) == 1
    if couch_kind == servers.POUCHDB:
        assert report['pending'] == 3 and report['pending_lower_bound'] is True
        assert report['eta_seconds'] is None
        assert 'pending     >= 3 changes after the checkpoint' in render_text(report)
    else:
        assert report['pending'] == 5 and report['pending_lower_bound'] is False
        assert 'pending     5 changes after the checkpoint' in render_text(report)


def test_the_changes_behind_a_follower_checkpoint_are_counted_on_the_real_server(
        following, feed_replays, couch_kind):
    """pouchdb-server's feed gives no ``pending``: the status counts the feed's
    rows after the checkpoint instead, up to the cap. CouchDB's does, and its
    count is used as is."""
    source, row = following
    seq = states.latest_checkpoint(row)
    # which path this test covers on this server
    given = status.pending_from(source.json('GET', '_changes', params={'since': seq, 'limit': 0}))
    assert given is None if couch_kind == servers.POUCHDB else given == 0
    caught_up, code = status_json()
    assert code == 0 and caught_up['pending'] <= feed_replays
    write_users(source, 'pending', 7)
    report, code = status_json()
    assert code == 0 and report['checkpoint']['seq'] == seq
    assert 7 <= report['pending'] <= 7 + feed_replays and report['pending_lower_bound'] is False
    assert 'pending     7 changes after the checkpoint' in status_text()[0] or feed_replays
    if not feed_replays:
        assert status.changes_after(source, seq, cap=8) == (7, False)
        # pouchdb-server: rows read up to the cap (7 or more: it stopped reading); CouchDB: its exact count
        assert status.changes_after(source, seq, cap=7) == (7, couch_kind == servers.POUCHDB)


def test_the_servers_own_pending_count_is_used_when_given():
    assert status.pending_from({'results': [], 'pending': 7, 'last_seq': 'x'}) == 7
    assert status.pending_from({'results': [{'seq': 'a'}], 'pending': 6, 'last_seq': 'a'}) == 7
    assert status.pending_from({'results': [{'seq': 'a'}], 'last_seq': 'a'}) is None


def test_status_writes_nothing(following):
    source, row = following
    write_users(source, 'pending', 3)
    seq_before = source.update_seq()
    with CaptureQueriesContext(connection) as queries:
        _, code = status_json()
    assert code == 0
    assert queries.captured_queries
    assert all(q['sql'].lstrip().upper().startswith('SELECT') for q in queries.captured_queries)
    assert source.update_seq() == seq_before


def test_an_unreachable_source_answers_fast_with_what_the_state_says(following, settings):
    source, row = following
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(
        f"http://127.0.0.1:{free_port()}/{source.name}", settings.COUCHDB_APPS, ['users'])
    started = time.monotonic()
    report, code = status_json()
    assert time.monotonic() - started < 10
    assert code == 2  # nothing known to be wrong, but whether it keeps up cannot be told
    assert report['couch']['reachable'] is False and 'connection refused' in report['couch']['error']
    assert report['phase'] == 'following' and report['checkpoint']['seq'] is not None
    assert report['pending'] is None
    text, _ = status_text()
    assert 'UNREACHABLE' in text and 'unknown: the source is unreachable' in text


# -- after the flip ---------------------------------------------------------------

def test_cleaning_and_cleaned(migration_dbs):
    source, target = migration_dbs
    seed(source)
    run(SLUG, '--initial')
    straggler(source, 'm2')
    with pytest.raises(CommandError, match='not complete'):
        run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    report, code = status_json()
    assert code == 1 and report['phase'] == 'cleaning'
    # the cleanup stopped short: rerun it; no follower belongs here
    assert report['attention'] == [status.CLEANUP_STOPPED] and report['pending'] is None
    text, _ = status_text()
    assert 'phase       cleaning' in text and f"run_doctype_migration {SLUG} --cleanup" in text
    run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0', '--copy-missing')
    report, code = status_json()
    assert code == 0 and report['phase'] == 'cleaned' and report['attention'] == []
    assert report['checkpoint'] is not None and report['dump']['docs_dumped'] > 0
    text, _ = status_text()
    assert 'phase       cleaned' in text and 'Nothing needs attention.' in text


def test_no_password_in_the_status(couch_proxy, db_prefix, settings, db, tmp_path, monkeypatch):
    password = 'Sup3r-s3cret-pw'
    couch_proxy.require_auth = ('admin', password)
    authed = couch_proxy.url.replace('http://', f"http://admin:{password}@")
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(f"{authed}/{db_prefix}", settings.COUCHDB_APPS,
                                                         ['users'])
    monkeypatch.chdir(tmp_path)
    CouchDB(f"{authed}/{db_prefix}").create()
    CouchDB(f"{authed}/{db_prefix}__users").create()
    text, code = status_text()
    report, _ = status_json()
    assert code == 0 and report['couch']['reachable'] and 'admin:****@' in report['couch']['source']
    assert password not in text and password not in json.dumps(report)
    settings.COUCH_SETTINGS_HELPER = CouchSettingsHelper(
        f"{authed.replace(password, 'wrong-' + password)}/{db_prefix}", settings.COUCHDB_APPS, ['users'])
    report, _ = status_json()
    assert 'refused the credentials' in report['couch']['error'] and password not in json.dumps(report)
