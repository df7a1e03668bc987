"""The fault-injecting proxy, against the real pouchdb-server behind it."""
import http.client
import json
import re
import threading
import time

import pytest
import requests

from corehq.embedded_couch.server import free_port
from tests.couchproxy import BadSeq, CouchProxy, decode_seq, encode_seq
from tests.waiting import wait_for

TIMEOUT = 5
# A read timeout a loaded machine's answers keep within, and a stalled one outlasts.
STALL_TIMEOUT = 2.0
OPAQUE = re.compile(r'^\d+-g1AAAAA[A-Za-z0-9_-]+$')
BROKEN = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)


@pytest.fixture
def db(couch_server, db_prefix):
    """A fresh database's name; conftest's db_prefix deletes it afterwards."""
    requests.put(f"{couch_server.url}/{db_prefix}", timeout=TIMEOUT).raise_for_status()
    return db_prefix


def post_docs(base_url, db, docs, **body):
    response = requests.post(f"{base_url}/{db}/_bulk_docs", json={'docs': docs, **body}, timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


def put_ids(base_url, db, *ids):
    return post_docs(base_url, db, [{'_id': doc_id} for doc_id in ids])


def changes(base_url, db, **params):
    response = requests.get(f"{base_url}/{db}/_changes", params=params, timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


def ids(page):
    return [row['id'] for row in page['results']]


def id_set(page):
    # pouchdb may give the docs of one _bulk_docs their seqs in any order.
    return sorted(ids(page))


def exists(couch_server, db, doc_id):
    return requests.get(f"{couch_server.url}/{db}/{doc_id}", timeout=TIMEOUT).status_code == 200


# -- transparent forwarding -------------------------------------------------

def test_documents_make_the_round_trip_with_every_method(couch_proxy, couch_server, db):
    url = f"{couch_proxy.url}/{db}"
    created = requests.put(f"{url}/a%2Fb", json={'v': 1}, timeout=TIMEOUT)
    assert created.status_code == 201
    doc = requests.get(f"{url}/a%2Fb", params={'revs': 'true'}, timeout=TIMEOUT).json()
    assert doc['v'] == 1 and doc['_revisions']['start'] == 1
    assert doc == requests.get(f"{couch_server.url}/{db}/a%2Fb", params={'revs': 'true'}).json()

    head = requests.head(f"{url}/a%2Fb", timeout=TIMEOUT)
    assert head.status_code == 200 and head.content == b''
    copied = requests.request('COPY', f"{url}/a%2Fb", headers={'Destination': 'copy'}, timeout=TIMEOUT)
    assert copied.status_code == 201
    copy = requests.get(f"{url}/copy", timeout=TIMEOUT).json()  # pouchdb's COPY gives no rev
    assert copy['v'] == 1
    deleted = requests.delete(f"{url}/copy", params={'rev': copy['_rev']}, timeout=TIMEOUT)
    assert deleted.json()['ok'] is True
    missing = requests.get(f"{url}/copy", timeout=TIMEOUT)
    assert missing.status_code == 404 and missing.json()['error'] == 'not_found'


def test_a_chunked_request_body_arrives_whole(couch_proxy, couch_server, db):
    parts = iter([b'{"docs":[', b'{"_id":"x"},', b'{"_id":"y"}', b']}'])
    response = requests.post(f"{couch_proxy.url}/{db}/_bulk_docs", data=parts,
                             headers={'Content-Type': 'application/json'}, timeout=TIMEOUT)
    assert response.status_code == 201
    assert [row['id'] for row in response.json()] == ['x', 'y']
    assert exists(couch_server, db, 'x') and exists(couch_server, db, 'y')


def test_counters_see_every_request_until_reset(couch_proxy, db):
    with requests.Session() as session:  # one kept-alive connection for all three
        session.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT)
        session.get(f"{couch_proxy.url}/{db}/_changes", params={'limit': 1}, timeout=TIMEOUT)
        body = json.dumps({'docs': [{'_id': 'a'}]}).encode()
        session.post(f"{couch_proxy.url}/{db}/_bulk_docs", data=body,
                     headers={'Content-Type': 'application/json'}, timeout=TIMEOUT)
    assert couch_proxy.count() == 3
    assert couch_proxy.count('get') == 2
    assert couch_proxy.count('GET', r'/_changes\?limit=1$') == 1
    assert list(couch_proxy.recent)[-1] == f"POST /{db}/_bulk_docs"
    assert couch_proxy.bytes_received == len(body)
    assert couch_proxy.bytes_sent > 0
    couch_proxy.reset()
    assert couch_proxy.count() == 0 and couch_proxy.bytes_sent == 0 and not couch_proxy.recent


def test_an_unreachable_server_is_a_bad_gateway():
    proxy = CouchProxy(f"http://127.0.0.1:{free_port()}").start()
    try:
        response = requests.get(f"{proxy.url}/db", timeout=TIMEOUT)
    finally:
        proxy.stop()
    assert response.status_code == 502 and response.json()['error'] == 'bad_gateway'


def test_unknown_fault_switches_are_refused():
    with pytest.raises(TypeError):
        CouchProxy('http://127.0.0.1:1', opaque_seq=True)


# -- opaque seqs ------------------------------------------------------------------

def test_opaque_seqs_round_trip_and_refuse_everything_else():
    assert decode_seq(encode_seq(42)) == 42
    assert decode_seq('0') == 0 and decode_seq('now') == 'now'
    assert decode_seq('7-' + encode_seq(42).split('-', 1)[1]) == 42  # the prefix means nothing
    for bad in ('42', 'garbage', '', '3-g1AAAAA!!', encode_seq(4).replace('g1AAAAA', 'g1AAAAB')):
        with pytest.raises(BadSeq):
            decode_seq(bad)


def test_changes_seqs_are_opaque_and_resume_exactly(couch_proxy, db):
    couch_proxy.opaque_seqs = True
    put_ids(couch_proxy.url, db, 'a', 'b', 'c')
    first = changes(couch_proxy.url, db)
    assert id_set(first) == ['a', 'b', 'c']
    assert all(OPAQUE.match(row['seq']) for row in first['results'])
    assert OPAQUE.match(first['last_seq'])

    put_ids(couch_proxy.url, db, 'd', 'e')
    later = changes(couch_proxy.url, db, since=first['last_seq'])
    assert id_set(later) == ['d', 'e']
    assert id_set(changes(couch_proxy.url, db, since=0)) == ['a', 'b', 'c', 'd', 'e']
    assert changes(couch_proxy.url, db, since='now')['results'] == []

    info = requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).json()
    assert info['update_seq'] == later['last_seq']
    all_docs = requests.get(f"{couch_proxy.url}/{db}/_all_docs", params={'update_seq': 'true'},
                            timeout=TIMEOUT).json()
    assert OPAQUE.match(all_docs['update_seq'])


@pytest.mark.parametrize('since', ['3', 'garbage', '3-g1AAAAAbm9kZTI6Mw'])
def test_seqs_the_server_never_handed_out_are_bad_requests(couch_proxy, db, since):
    couch_proxy.opaque_seqs = True
    response = requests.get(f"{couch_proxy.url}/{db}/_changes", params={'since': since}, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()['error'] == 'bad_request'


def test_a_continuous_feed_gets_opaque_seqs_row_by_row(couch_proxy, couch_server, db):
    put_ids(couch_server.url, db, 'a', 'b')
    couch_proxy.opaque_seqs = True
    params = {'feed': 'continuous', 'heartbeat': 100}
    with requests.get(f"{couch_proxy.url}/{db}/_changes", params=params, stream=True,
                      timeout=TIMEOUT) as response:
        rows = []
        for line in response.iter_lines():
            rows += [json.loads(line)] if line else []  # blank lines are heartbeats
            if len(rows) == 2:
                break
    assert sorted(row['id'] for row in rows) == ['a', 'b']
    assert all(OPAQUE.match(row['seq']) for row in rows)


# -- at-least-once delivery -------------------------------------------------------

def read_feed_in_pages(proxy, db, limit, most_pages=30):
    """Page through _changes as a client does; every page's ids, in order."""
    pages, since = [], 0
    while len(pages) < most_pages:
        page = changes(proxy.url, db, since=since, limit=limit)
        pages.append(ids(page))
        if page['last_seq'] == since:
            return pages
        since = page['last_seq']
    raise AssertionError(f"the feed never ended: {pages}")


@pytest.mark.parametrize('opaque', [False, True])
def test_replayed_changes_repeat_rows_but_lose_none(couch_proxy, couch_server, db, opaque):
    doc_ids = [f"doc{i}" for i in range(7)]
    put_ids(couch_server.url, db, *doc_ids)
    couch_proxy.opaque_seqs = opaque
    couch_proxy.replay_changes = True

    pages = read_feed_in_pages(couch_proxy, db, limit=3)
    seen = [doc_id for page in pages for doc_id in page]
    assert set(seen) == set(doc_ids)
    assert len(seen) > len(doc_ids)
    assert couch_proxy.replayed_rows == len(seen) - len(doc_ids)
    assert all(len(page) <= 3 for page in pages)
    assert pages[1][0] in pages[0]  # the second page starts with a row the first one had


def test_replay_choices_follow_the_seed(couch_proxy, couch_server, db):
    put_ids(couch_server.url, db, *[f"doc{i}" for i in range(9)])
    couch_proxy.replay_changes = True
    couch_proxy.replay_probability = 0.5
    runs = []
    for seed in (7, 7, 8):
        couch_proxy.replay_seed = seed
        runs.append(read_feed_in_pages(couch_proxy, db, limit=2))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# -- dropped connections ----------------------------------------------------------

def test_a_dropped_response_breaks_off_after_the_given_bytes(couch_proxy, couch_server, db):
    put_ids(couch_server.url, db, 'a', 'b', 'c')
    couch_proxy.drop_after_bytes = 20
    couch_proxy.drop_paths = r'^GET /[^/]+/_all_docs'
    with pytest.raises(BROKEN):
        requests.get(f"{couch_proxy.url}/{db}/_all_docs", timeout=TIMEOUT)

    conn = http.client.HTTPConnection('127.0.0.1', couch_proxy.port, timeout=TIMEOUT)
    conn.request('GET', f"/{db}/_all_docs")
    with pytest.raises(http.client.IncompleteRead) as cut:
        conn.getresponse().read()
    conn.close()
    assert len(cut.value.partial) == 20
    assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).ok  # other paths go through
    assert couch_proxy.drops == 2


def test_a_one_shot_drop_hits_only_the_next_responses(couch_proxy, couch_server, db):
    couch_proxy.drop_after_bytes = 0
    couch_proxy.drop_paths = '_bulk_docs'
    couch_proxy.drop_count = 1
    with pytest.raises(BROKEN):
        put_ids(couch_proxy.url, db, 'a')
    assert exists(couch_server, db, 'a')  # the write went in; only its answer was lost
    assert put_ids(couch_proxy.url, db, 'b')[0]['ok'] is True
    assert couch_proxy.drops == 1 and couch_proxy.drop_count == 0


def test_a_drop_larger_than_the_response_leaves_it_whole(couch_proxy, db):
    couch_proxy.drop_after_bytes = 10_000
    couch_proxy.drop_count = 1
    assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).ok
    assert couch_proxy.drops == 0 and couch_proxy.drop_count == 1


def test_a_stalled_response_sends_the_given_bytes_then_nothing_until_the_client_hangs_up(
        couch_proxy, couch_server, db):
    put_ids(couch_server.url, db, 'a', 'b', 'c')
    couch_proxy.stall_after_bytes = 20
    couch_proxy.drop_paths = r'^GET /[^/]+/_all_docs'
    couch_proxy.drop_count = 2
    conn = http.client.HTTPConnection('127.0.0.1', couch_proxy.port, timeout=STALL_TIMEOUT)
    conn.request('GET', f"/{db}/_all_docs")
    response = conn.getresponse()
    assert response.status == 200
    assert len(response.read(20)) == 20
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        response.read(1)  # the connection stays open, silent
    assert time.monotonic() - started >= STALL_TIMEOUT
    conn.close()

    with pytest.raises(requests.exceptions.ConnectionError, match='Read timed out'):
        requests.get(f"{couch_proxy.url}/{db}/_all_docs", timeout=(TIMEOUT, STALL_TIMEOUT)).content
    assert couch_proxy.stalls == 2 and couch_proxy.drops == 0 and couch_proxy.drop_count == 0
    assert requests.get(f"{couch_proxy.url}/{db}/_all_docs", timeout=TIMEOUT).json()['total_rows'] == 3


def test_a_stall_ends_when_the_proxy_stops(couch_server, db):
    proxy = CouchProxy(couch_server.url, stall_after_bytes=0).start()
    response = requests.get(f"{proxy.url}/{db}", timeout=TIMEOUT, stream=True)
    threading.Timer(0.3, proxy.stop).start()
    started = time.monotonic()
    with pytest.raises(BROKEN):
        response.content
    assert time.monotonic() - started < TIMEOUT


# -- answers of the proxy's own ---------------------------------------------------

def test_a_count_of_requests_is_answered_with_a_5xx_and_not_forwarded(couch_proxy, couch_server, db):
    couch_proxy.fail_status, couch_proxy.fail_count = 503, 2
    couch_proxy.fail_paths = r'^PUT '
    refused = requests.put(f"{couch_proxy.url}/{db}/a", json={}, timeout=TIMEOUT)
    assert refused.status_code == 503 and refused.json()['error'] == 'service_unavailable'
    assert not exists(couch_server, db, 'a')
    assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).ok  # other paths go through
    assert requests.put(f"{couch_proxy.url}/{db}/a", json={}, timeout=TIMEOUT).status_code == 503
    assert requests.put(f"{couch_proxy.url}/{db}/a", json={}, timeout=TIMEOUT).status_code == 201
    assert couch_proxy.failures == 2 and couch_proxy.fail_count == 0


@pytest.mark.parametrize('status, error', [(500, 'internal_server_error'), (502, 'bad_gateway')])
def test_a_share_of_requests_is_answered_with_a_5xx_chosen_by_the_seed(couch_proxy, db, status, error):
    couch_proxy.fail_status, couch_proxy.fail_probability = status, 0.3
    runs = []
    for seed in (4, 4, 5):
        couch_proxy.fail_seed = seed
        runs.append(statuses(couch_proxy, db))
    assert set(runs[0]) == {200, status}
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert 8 <= runs[0].count(status) <= 30
    assert couch_proxy.failures == sum(run.count(status) for run in runs)
    couch_proxy.fail_probability = 1.0
    assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).json()['error'] == error


# -- refusals ---------------------------------------------------------------------

def test_a_request_over_the_size_limit_is_refused_unforwarded(couch_proxy, couch_server, db):
    couch_proxy.max_request_bytes = 200
    big = requests.put(f"{couch_proxy.url}/{db}/big", json={'x': 'y' * 500}, timeout=TIMEOUT)
    assert big.status_code == 413
    assert big.json() == {'error': 'too_large', 'reason': 'the request entity is too large'}
    assert not exists(couch_server, db, 'big')
    small = requests.put(f"{couch_proxy.url}/{db}/small", json={'x': 'y'}, timeout=TIMEOUT)
    assert small.status_code == 201


def test_a_size_limit_still_refuses_when_rate_limiting_is_on(couch_proxy, couch_server, db):
    couch_proxy.max_request_bytes = 200
    couch_proxy.rate_limit_probability = 1.0
    big = requests.put(f"{couch_proxy.url}/{db}/big", json={'x': 'y' * 500}, timeout=TIMEOUT)
    assert big.status_code == 413 and big.json()['error'] == 'too_large'
    small = requests.put(f"{couch_proxy.url}/{db}/small", json={'x': 'y'}, timeout=TIMEOUT)
    assert small.status_code == 429
    assert not exists(couch_server, db, 'big') and not exists(couch_server, db, 'small')


def test_rate_limiting_answers_429_without_retry_after_and_forwards_nothing(couch_proxy, couch_server, db):
    couch_proxy.rate_limit_probability = 1.0
    couch_proxy.rate_limit_paths = r'^PUT '
    refused = requests.put(f"{couch_proxy.url}/{db}/a", json={}, timeout=TIMEOUT)
    assert refused.status_code == 429
    assert refused.json()['error'] == 'too_many_requests' and refused.json()['reason']
    assert 'Retry-After' not in refused.headers
    assert not exists(couch_server, db, 'a')
    assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).ok  # other paths go through
    assert couch_proxy.rate_limited == 1 and couch_proxy.count() == 2


def statuses(proxy, db, n=60):
    with requests.Session() as session:
        return [session.get(f"{proxy.url}/{db}", timeout=TIMEOUT).status_code for _ in range(n)]


def test_rate_limit_choices_follow_the_seed_and_the_share(couch_proxy, db):
    couch_proxy.rate_limit_probability = 0.3
    runs = []
    for seed in (7, 7, 8):
        couch_proxy.rate_limit_seed = seed
        runs.append(statuses(couch_proxy, db))
    assert set(runs[0]) == {200, 429}
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert 8 <= runs[0].count(429) <= 30
    assert couch_proxy.rate_limited == sum(run.count(429) for run in runs)
    couch_proxy.clear_faults()
    assert set(statuses(couch_proxy, db, 10)) == {200}


def test_the_rate_limit_seed_can_be_given_to_the_constructor(couch_server, db):
    proxies = [CouchProxy(couch_server.url, rate_limit_probability=0.5, rate_limit_seed=3).start()
               for _ in range(2)]
    try:
        assert statuses(proxies[0], db, 20) == statuses(proxies[1], db, 20)
    finally:
        for proxy in proxies:
            proxy.stop()


def test_basic_auth_is_required_and_checked(couch_proxy, db):
    couch_proxy.require_auth = ('admin', 's3cret')
    url = f"{couch_proxy.url}/{db}"
    anonymous = requests.get(url, timeout=TIMEOUT)
    assert anonymous.status_code == 401 and anonymous.json()['error'] == 'unauthorized'
    wrong = requests.get(url, auth=('admin', 'nope'), timeout=TIMEOUT)
    assert wrong.status_code == 401
    assert wrong.json() == {'error': 'unauthorized', 'reason': 'Name or password is incorrect.'}
    right = requests.get(url, auth=('admin', 's3cret'), timeout=TIMEOUT)
    assert right.status_code == 200 and right.json()['db_name'] == db
    assert requests.get(f"{couch_proxy.url}/", timeout=TIMEOUT).ok  # the welcome needs none


# -- per-document errors ------------------------------------------------------------

def test_injected_errors_reject_chosen_docs_of_a_bulk_write(couch_proxy, couch_server, db):
    couch_proxy.inject_doc_errors = {'b': ('forbidden', 'b is not welcome')}
    rows = post_docs(couch_proxy.url, db, [{'_id': 'a'}, {'_id': 'b'}, {'v': 'no id'}, {'_id': 'c'}])
    assert [rows[i]['id'] for i in (0, 1, 3)] == ['a', 'b', 'c']
    assert rows[0]['ok'] and rows[2]['ok'] and rows[3]['ok']
    assert rows[1] == {'id': 'b', 'error': 'forbidden', 'reason': 'b is not welcome'}
    assert exists(couch_server, db, 'a') and exists(couch_server, db, 'c')
    assert exists(couch_server, db, rows[2]['id'])  # the id the server made up
    assert not exists(couch_server, db, 'b')
    assert couch_proxy.injected_errors == 1


def test_injected_errors_in_a_replicator_style_write(couch_proxy, couch_server, db):
    couch_proxy.inject_doc_errors = lambda doc: ('forbidden', 'no') if doc.get('kind') == 'bad' else None
    docs = [{'_id': 'x', '_rev': '1-abc'}, {'_id': 'y', '_rev': '1-def', 'kind': 'bad'}]
    rows = post_docs(couch_proxy.url, db, docs, new_edits=False)
    assert rows == [{'id': 'y', 'rev': '1-def', 'error': 'forbidden', 'reason': 'no'}]
    assert exists(couch_server, db, 'x') and not exists(couch_server, db, 'y')
    assert post_docs(couch_proxy.url, db, [{'_id': 'z', '_rev': '1-abc'}], new_edits=False) == []


# -- slow feeds and a server that goes away ------------------------------------------

def open_longpoll(proxy, db):
    since = requests.get(f"{proxy.url}/{db}", timeout=TIMEOUT).json()['update_seq']
    params = {'feed': 'longpoll', 'since': since, 'heartbeat': 100}
    return requests.get(f"{proxy.url}/{db}/_changes", params=params, stream=True, timeout=(2, 2))


def read_until_heartbeat(chunks, within=10.0):
    """What arrives up to and with the first heartbeat newline."""
    received, deadline = b'', time.monotonic() + within
    for chunk in chunks:
        received += chunk
        if chunk.strip() == b'':
            return received
        assert time.monotonic() < deadline, f"no heartbeat came through: {received!r}"
    raise AssertionError(f"the feed ended before a heartbeat: {received!r}")


@pytest.mark.parametrize('opaque', [False, True])
def test_a_longpoll_streams_heartbeats_and_returns_on_a_change(couch_proxy, couch_server, db, opaque):
    couch_proxy.opaque_seqs = opaque
    with open_longpoll(couch_proxy, db) as response:
        chunks = response.iter_content(chunk_size=None)
        received = read_until_heartbeat(chunks)
        put_ids(couch_server.url, db, 'late')
        received += b''.join(chunks)
    page = json.loads(received)
    assert ids(page) == ['late']
    assert bool(OPAQUE.match(str(page['last_seq']))) is opaque


def test_pause_refuses_connections_and_cuts_open_ones_until_resume(couch_proxy, db):
    with open_longpoll(couch_proxy, db) as response:
        chunks = response.iter_content(chunk_size=None)
        read_until_heartbeat(chunks)
        couch_proxy.pause()
        with pytest.raises(BROKEN):
            b''.join(chunks)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(couch_proxy.url, timeout=TIMEOUT)
    couch_proxy.resume()
    assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).ok


# -- held requests ---------------------------------------------------------------

def test_a_held_request_reaches_the_server_only_once_released(couch_proxy, couch_server, db):
    couch_proxy.hold_paths = r'^PUT '
    put = threading.Thread(target=requests.put, args=(f"{couch_proxy.url}/{db}/a",),
                           kwargs={'json': {}, 'timeout': TIMEOUT})
    put.start()
    try:
        wait_for(lambda: couch_proxy.held == 1, what='the PUT held')
        assert requests.get(f"{couch_proxy.url}/{db}", timeout=TIMEOUT).ok  # other paths go through
        assert not exists(couch_server, db, 'a')
    finally:
        couch_proxy.release()
        put.join()
    wait_for(lambda: exists(couch_server, db, 'a'), what='the released PUT forwarded')
    assert couch_proxy.hold_paths is None


def test_a_request_held_when_the_proxy_stops_is_cut_off_unforwarded(couch_server, db):
    proxy = CouchProxy(couch_server.url, hold_paths=r'^PUT ').start()
    try:
        cut = []
        put = threading.Thread(target=lambda: cut.append(_put_fails(f"{proxy.url}/{db}/a")))
        put.start()
        wait_for(lambda: proxy.held == 1, what='the PUT held')
    finally:
        proxy.stop()
    put.join()
    assert cut == [True] and not exists(couch_server, db, 'a')


def test_a_hold_never_released_fails_the_block_and_forwards_what_it_held(couch_proxy, couch_server, db):
    with pytest.raises(AssertionError, match='never released'):
        with couch_proxy.holding(r'^PUT ', until=lambda: False, limit=0.5):
            assert requests.put(f"{couch_proxy.url}/{db}/a", json={}, timeout=TIMEOUT).status_code == 201
    assert couch_proxy.held == 1 and exists(couch_server, db, 'a')


def test_a_request_held_across_a_pause_is_cut_off_unforwarded_after_resume(couch_proxy, couch_server, db):
    couch_proxy.hold_paths = r'^PUT '
    cut = []
    put = threading.Thread(target=lambda: cut.append(_put_fails(f"{couch_proxy.url}/{db}/a")))
    put.start()
    try:
        wait_for(lambda: couch_proxy.held == 1, what='the PUT held')
        couch_proxy.pause()
        couch_proxy.resume()
    finally:
        couch_proxy.release()
        put.join()
    assert cut == [True] and not exists(couch_server, db, 'a')


def _put_fails(url):
    try:
        requests.put(url, json={}, timeout=TIMEOUT)
    except BROKEN:
        return True
    return False
