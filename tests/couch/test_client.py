"""The couch client's retry policy and its changes wait, against the real
server, with faults from the real proxy in front of it."""
import logging
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from corehq.couch import (
    CouchDB, CouchHTTPError, CouchUnauthorized, CouchUnreachable, DatabaseMissing, PhaseBudget,
    RequestTooLarge,
)
from corehq.couch.transport import server_of
from corehq.embedded_couch.server import free_port
from tests.conftest import PROJECT_DIR

PASSWORD = 'Sup3r-s3cret-pw'
# Short waits, so a test that has to wait out many 429s stays quick.
QUICK = dict(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0)


@pytest.fixture
def proxied(couch_proxy, db_prefix):
    """A fresh database reached through the proxy, with quick retries."""
    db = CouchDB(f"{couch_proxy.url}/{db_prefix}", budget=PhaseBudget(**QUICK))
    db.create()
    couch_proxy.reset()
    return db


@pytest.fixture
def authed_url(couch_proxy, couch_server, db_prefix):
    """A url carrying a password the proxy checks, for a database that exists."""
    CouchDB(f"{couch_server.url}/{db_prefix}").create()
    couch_proxy.require_auth = ('admin', PASSWORD)
    return couch_proxy.url.replace('http://', f'http://admin:{PASSWORD}@') + f'/{db_prefix}'


def warnings_from(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == 'corehq.couch' and r.levelno >= logging.WARNING]


# -- 429 --------------------------------------------------------------------------

def test_a_third_of_requests_rate_limited_and_every_call_still_succeeds(proxied, couch_proxy, caplog):
    couch_proxy.rate_limit_probability = 0.3
    couch_proxy.rate_limit_seed = 11
    db = proxied
    docs = [{'_id': f"d{i:02}", 'doc_type': 'CommCareUser' if i % 2 else 'Group', 'n': i} for i in range(30)]
    assert db.bulk_docs(docs) == []
    assert db.info()['doc_count'] == 30
    rows = db.all_docs(include_docs=True)
    assert [row['doc']['n'] for row in rows] == list(range(30))
    got, missing = db.bulk_get([(row['id'], row['value']['rev']) for row in rows[:10]])
    assert sorted(doc['n'] for doc in got) == list(range(10)) and missing == []
    assert all('_revisions' in doc for doc in got)
    assert len(db.changes()['results']) == 30
    assert len(db.changes(limit=5)['results']) == 5
    db.put({'_id': '_design/t', 'views': {'by_type': {
        'map': 'function (doc) { if (doc.doc_type) { emit(doc.doc_type, null); } }',
        'reduce': '_count'}}})
    counts = db.view('t', 'by_type', group=True)['rows']
    assert {row['key']: row['value'] for row in counts} == {'CommCareUser': 15, 'Group': 15}
    assert set(db.winning_revs(['d01', 'd02', 'nope'])) == {'d01', 'd02'}
    assert db.get('nope') is None
    # CouchDB also names the doc's leaves as possible ancestors; pouchdb-server names none
    diff = db.revs_diff({'d03': ['9-abc']})
    assert list(diff) == ['d03'] and diff['d03']['missing'] == ['9-abc']
    assert diff['d03'].get('possible_ancestors', [rows[3]['value']['rev']]) == [rows[3]['value']['rev']]

    assert couch_proxy.rate_limited >= 3  # the calls above really met 429s
    lines = warnings_from(caplog)
    assert len(lines) == couch_proxy.rate_limited  # one line for each wait, no more
    assert all(re.fullmatch(
        rf"{re.escape(db.display_url)}: rate limited by the server, slowing down \(429\): "
        r"retrying in \d+\.\ds", line) for line in lines), lines


@pytest.mark.parametrize('total', [0, 1])
def test_rate_limited_past_the_budget_gives_up_and_names_no_password(couch_proxy, authed_url, total):
    db = CouchDB(authed_url, budget=PhaseBudget(retries=total, **QUICK))
    couch_proxy.rate_limit_probability = 1.0
    couch_proxy.reset()
    with pytest.raises(CouchUnreachable) as raised:
        db.info()
    message = str(raised.value)
    assert f"rate limited by the server: gave up after {total} retries" in message
    assert 'admin:****@' in message and PASSWORD not in message
    assert couch_proxy.count() == total + 1


def test_a_429_wait_prints_one_line_to_stderr_without_the_password(couch_proxy, authed_url):
    couch_proxy.rate_limit_probability = 1.0
    script = (
        "import os, django\n"
        "django.setup()\n"
        "from corehq.couch import CouchDB, CouchUnreachable, PhaseBudget\n"
        "try:\n"
        "    CouchDB(os.environ['TEST_URL'], "
        "budget=PhaseBudget(retries=1, backoff_factor=0.2, backoff_jitter=0)).info()\n"
        "except CouchUnreachable as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, TEST_URL=authed_url, DJANGO_SETTINGS_MODULE='settings')
    env.pop('LOG_LEVEL', None)
    result = subprocess.run([sys.executable, '-c', script], cwd=PROJECT_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    lines = result.stderr.splitlines()
    assert lines == [f"{authed_url.replace(PASSWORD, '****')}: rate limited by the server, "
                     f"slowing down (429): retrying in 0.2s"], result.stderr
    assert 'gave up after 1 retries' in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


# -- answers that are final -----------------------------------------------------------

def refused_credentials(db, proxy, url):
    proxy.require_auth = ('admin', PASSWORD)
    CouchDB(url.replace('http://', 'http://admin:wrong@'), budget=PhaseBudget(**QUICK)).info()


def missing_database(db, proxy, url):
    CouchDB(f"{url}-missing", budget=PhaseBudget(**QUICK)).info()


def conflict(db, proxy, url):
    db.request('PUT', 'twice', body={})


def database_exists(db, proxy, url):
    db.request('PUT')


def too_large(db, proxy, url):
    proxy.max_request_bytes = 100
    db.put({'_id': 'big', 'blob': 'x' * 200})


def bad_request(db, proxy, url):
    db.request('PUT', '_nope', body={})  # only reserved ids may start with _


def forbidden(db, proxy, url):
    db.put({'_id': '_design/guard', 'validate_doc_update':
            "function (doc) { if (doc.locked) { throw({forbidden: 'locked'}); } }"})
    proxy.reset()
    db.put({'_id': 'locked', 'locked': True})


def server_says(status):
    def call(db, proxy, url):
        proxy.fail_status = status
        db.info()
    call.__name__ = f"server_says_{status}"
    return call


@pytest.mark.parametrize('status, error, call', [
    (401, CouchUnauthorized, refused_credentials),
    (403, CouchHTTPError, forbidden),
    (404, DatabaseMissing, missing_database),
    (409, CouchHTTPError, conflict),
    (412, CouchHTTPError, database_exists),
    (413, RequestTooLarge, too_large),
    (400, CouchHTTPError, bad_request),
    # They never heal: the server does not speak the method or the protocol.
    (501, CouchHTTPError, server_says(501)),
    (505, CouchHTTPError, server_says(505)),
])
def test_final_answers_are_not_retried(proxied, couch_proxy, status, error, call, caplog):
    proxied.put({'_id': 'twice'})
    url = f"{couch_proxy.url}/{proxied.name}"
    couch_proxy.reset()
    with pytest.raises(error) as raised:
        call(proxied, couch_proxy, url)
    assert couch_proxy.count() == 1
    assert getattr(raised.value, 'status', status) == status
    assert warnings_from(caplog) == []


# -- 5xx --------------------------------------------------------------------------------

@pytest.mark.parametrize('status', [500, 502, 503, 504])
def test_5xx_answers_are_retried_and_the_call_then_succeeds(proxied, couch_proxy, status, caplog):
    couch_proxy.fail_status, couch_proxy.fail_count = status, 2
    assert proxied.info()['db_name'] == proxied.name
    assert couch_proxy.failures == 2 and couch_proxy.count() == 3
    wait = f"{proxied.display_url}: the server answered {status}: retrying in 0.0s"
    assert warnings_from(caplog) == [wait, wait]


def test_a_share_of_503s_is_retried_under_the_phase_budget(couch_proxy, db_prefix):
    db = CouchDB(f"{couch_proxy.url}/{db_prefix}", budget=PhaseBudget(10, **QUICK))
    db.create()
    couch_proxy.fail_status, couch_proxy.fail_probability, couch_proxy.fail_seed = 503, 0.3, 5
    assert db.bulk_docs([{'_id': f"d{i:02}", 'n': i} for i in range(30)]) == []
    assert [row['doc']['n'] for row in db.all_docs(include_docs=True)] == list(range(30))
    for i in range(10):
        assert db.get(f"d{i:02}")['n'] == i
    assert couch_proxy.failures >= 3


# -- cut off mid-body -----------------------------------------------------------------

def test_a_response_cut_off_midway_is_retried_with_the_policys_backoff(proxied, couch_proxy, caplog):
    proxied.bulk_docs([{'_id': f"d{i}"} for i in range(20)])
    couch_proxy.drop_after_bytes = 50
    couch_proxy.drop_paths = '_all_docs'
    couch_proxy.drop_count = 3
    db = CouchDB(proxied.url, budget=PhaseBudget(backoff_factor=0.1, backoff_jitter=0))
    assert len(db.all_docs()) == 20
    assert couch_proxy.drops == 3 and couch_proxy.count('GET', '_all_docs') == 4
    assert warnings_from(caplog) == [
        f"{db.display_url}: the response was cut off: retrying in {delay}s"
        for delay in ('0.1', '0.2', '0.4')]


def test_a_response_that_stalls_midway_is_retried_with_the_policys_backoff(proxied, couch_proxy, caplog):
    proxied.bulk_docs([{'_id': f"d{i}"} for i in range(20)])
    couch_proxy.stall_after_bytes = 50
    couch_proxy.drop_paths = '_all_docs'
    couch_proxy.drop_count = 2
    # A read timeout that a loaded machine's answers keep well within: only the stalls pass it.
    db = CouchDB(proxied.url, timeout=(5, 1.5), budget=PhaseBudget(backoff_factor=0.1, backoff_jitter=0))
    assert len(db.all_docs()) == 20
    assert couch_proxy.stalls == 2 and couch_proxy.count('GET', '_all_docs') == 3
    assert warnings_from(caplog) == [
        f"{db.display_url}: the response stalled past the read timeout: retrying in {delay}s"
        for delay in ('0.1', '0.2')]


def test_a_response_that_keeps_stalling_gives_up_with_the_phase_budget(proxied, couch_proxy):
    couch_proxy.stall_after_bytes = 5
    couch_proxy.drop_paths = '_all_docs'
    db = CouchDB(proxied.url, timeout=(5, 1.0), budget=PhaseBudget(3, **QUICK))
    started = time.monotonic()
    with pytest.raises(CouchUnreachable, match=r'stalled past the read timeout \(GET _all_docs\): gave up'):
        db.all_docs()
    assert 3 < time.monotonic() - started < 30
    assert couch_proxy.stalls >= 3


def test_cut_offs_and_429s_spend_one_budget(proxied, couch_proxy):
    couch_proxy.drop_after_bytes = 10
    couch_proxy.drop_paths = '_all_docs'
    couch_proxy.rate_limit_probability = 0.5
    couch_proxy.rate_limit_seed = 3
    db = CouchDB(proxied.url, budget=PhaseBudget(retries=5, **QUICK))
    with pytest.raises(CouchUnreachable, match='gave up after 5 retries'):
        db.all_docs()
    assert couch_proxy.count() == 6
    assert couch_proxy.drops > 0 and couch_proxy.rate_limited > 0  # both kinds took their share


# -- first contact, per server ---------------------------------------------------

def test_an_unreachable_second_server_fails_at_once_after_the_first_answered(couch_proxy, db_prefix):
    budget = PhaseBudget(give_up_after=30)
    source = CouchDB(f"{couch_proxy.url}/{db_prefix}", budget=budget)
    source.create()
    target = CouchDB(f"http://127.0.0.1:{free_port()}/{db_prefix}", budget=budget)
    started = time.monotonic()
    with pytest.raises(CouchUnreachable, match=r'^Cannot reach .*: connection refused$'):
        target.info()
    assert time.monotonic() - started < 10


def test_a_server_that_answered_and_goes_away_is_waited_for(couch_proxy, db_prefix):
    budget = PhaseBudget(give_up_after=30)
    source = CouchDB(f"{couch_proxy.url}/{db_prefix}", budget=budget)
    source.create()
    other = CouchDB(f"{couch_proxy.url}/{db_prefix}-other", budget=budget)  # another db, the same server
    assert server_of('http://admin:pw@Host/db') == server_of('HTTP://host:80/other') == ('http', 'host', 80)
    couch_proxy.pause()
    comeback = threading.Timer(1.5, couch_proxy.resume)
    comeback.start()
    try:
        assert other.exists() is False
    finally:
        comeback.join()


# -- waiting on the changes feed ---------------------------------------------------

def test_a_quiet_feed_is_no_failure(couch_server, db_prefix, caplog):
    db = CouchDB(f"{couch_server.url}/{db_prefix}")  # straight to pouchdb-server, which gzips
    db.create()
    since = db.update_seq()
    started = time.monotonic()
    assert db.wait_for_change(since, max_wait=3, heartbeat_ms=500) is False
    assert 3 <= time.monotonic() - started < 30  # the upper bound only catches a wait that hangs
    assert warnings_from(caplog) == []


def test_a_change_during_the_wait_ends_it_at_once(couch_server, db_prefix):
    db = CouchDB(f"{couch_server.url}/{db_prefix}")
    db.create()
    since = db.update_seq()
    # a client of its own, with the credentials (db.url has none)
    writer = threading.Timer(1.0, lambda: CouchDB(f"{couch_server.url}/{db_prefix}").put({'_id': 'late'}))
    writer.start()
    started = time.monotonic()
    try:
        assert db.wait_for_change(since, max_wait=60, heartbeat_ms=500) is True
    finally:
        writer.join()
    assert 1 <= time.monotonic() - started < 30  # woken by the write, far before its 60 s


def test_live_ids_are_the_docs_with_a_live_leaf(couch_server, db_prefix):
    db = CouchDB(f"{couch_server.url}/{db_prefix}")
    db.create()
    live_rev = db.put({'_id': 'live', 'n': 1})['rev']
    gone_rev = db.put({'_id': 'gone', 'n': 1})['rev']
    db.bulk_docs([{'_id': 'gone', '_rev': gone_rev, '_deleted': True}])
    # 'half': one branch deleted, one live; 'dead': both branches deleted
    for doc_id, deleted in (('half', (True, False)), ('dead', (True, True))):
        db.bulk_docs([{'_id': doc_id, '_rev': f"1-{branch}", '_deleted': dead, '_revisions': {
            'start': 1, 'ids': [branch]}} for branch, dead in zip(('aaa', 'bbb'), deleted)], new_edits=False)
    assert db.live_ids(['live', 'gone', 'half', 'dead', 'never']) == {'live', 'half'}
    assert db.live_ids([]) == set() and live_rev
