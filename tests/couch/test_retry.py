"""The one table (retry.classify): every status and every failure requests
raises, to the error it is raised as and whether it is worth another try.
The failures are real ones where the real server, the proxy or the network
can give them; the rest are built as requests and urllib3 build them."""
import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ResponseError

from corehq.couch import CouchError, CouchHTTPError, CouchNotFound, CouchUnauthorized, CouchUnreachable
from corehq.couch import DatabaseMissing, PhaseBudget, RequestTooLarge, deepjson, tls
from corehq.couch.retry import (
    ANSWERED, CUT_OFF, INVALID_BODY, RATE_LIMITED, STALLED, TRANSIENT_STATUSES, RetryPolicy, classify,
)
from corehq.embedded_couch.server import free_port

FINAL, TRANSIENT = False, True
NAMED = {
    400: (CouchHTTPError, FINAL), 401: (CouchUnauthorized, FINAL), 403: (CouchUnauthorized, FINAL),
    404: (CouchNotFound, FINAL), 405: (CouchHTTPError, FINAL), 409: (CouchHTTPError, FINAL),
    412: (CouchHTTPError, FINAL), 413: (RequestTooLarge, FINAL), 415: (CouchHTTPError, FINAL),
    416: (CouchHTTPError, FINAL), 417: (CouchHTTPError, FINAL), 429: (CouchUnreachable, TRANSIENT),
    500: (CouchUnreachable, TRANSIENT), 501: (CouchHTTPError, FINAL), 502: (CouchUnreachable, TRANSIENT),
    503: (CouchUnreachable, TRANSIENT), 504: (CouchUnreachable, TRANSIENT), 505: (CouchHTTPError, FINAL),
}


def expected(status):
    if status < 400:
        return None, FINAL
    if status in NAMED:
        return NAMED[status]
    return (CouchUnreachable, TRANSIENT) if status >= 500 else (CouchHTTPError, FINAL)


@pytest.mark.parametrize('status', range(100, 600))
def test_every_status(status):
    outcome = classify(status)
    assert (outcome.error, outcome.transient) == expected(status)
    assert outcome.slow_down is (status == 429)
    assert (status in TRANSIENT_STATUSES) is outcome.transient
    if status < 400:
        assert outcome == ANSWERED


def test_the_retry_policy_retries_exactly_the_transient_statuses():
    policy = RetryPolicy.for_phase(PhaseBudget())
    assert {s for s in range(100, 600) if policy.is_retry('GET', s)} == TRANSIENT_STATUSES
    assert policy.is_retry('GET', 413, has_retry_after=True) is False
    assert classify(429).reason == RATE_LIMITED


@pytest.mark.parametrize('status', [401, 403])
def test_forbidden_is_a_refusal_of_the_request_not_of_the_credentials(status):
    assert classify(status, error='forbidden') == (CouchHTTPError, FINAL, '', False)
    assert classify(status, error='unauthorized').error is CouchUnauthorized


@pytest.mark.parametrize('reason, whole_database, error', [
    ('missing', False, CouchNotFound),
    ('deleted', False, CouchNotFound),
    ('missing', True, DatabaseMissing),
    ('Database does not exist.', False, DatabaseMissing),
    ('no_db_file', False, DatabaseMissing),
])
def test_a_404_is_the_database_or_a_document(reason, whole_database, error):
    assert classify(404, 'not_found', reason, whole_database=whole_database) == (error, FINAL, '', False)


# -- exceptions ----------------------------------------------------------------------

def raised(call):
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_a_refused_connection_is_final_once_urllib3_gave_up():
    error = raised(lambda: requests.get(f"http://127.0.0.1:{free_port()}/", timeout=5))
    assert classify(error) == (CouchUnreachable, FINAL, 'connection refused', False)


def test_an_unresolvable_host():
    error = raised(lambda: requests.get('http://no-such-host.invalid/', timeout=5))
    assert classify(error) == (CouchUnreachable, FINAL, 'host name could not be resolved', False)


def test_a_read_timeout_before_the_response(couch_proxy):
    couch_proxy.latency = 1.0  # no response line within the read timeout
    error = raised(lambda: requests.get(couch_proxy.url, timeout=(5, 0.1)))
    assert isinstance(error, requests.Timeout)
    assert classify(error) == (CouchUnreachable, FINAL, 'timed out', False)


def read_body(proxy, db_prefix, **fault):
    requests.put(f"{proxy.url}/{db_prefix}", timeout=10)
    proxy.drop_paths = '_all_docs'
    for name, value in fault.items():
        setattr(proxy, name, value)
    # Read timeout: what a loaded machine answers within, and a stall outlasts.
    response = requests.get(f"{proxy.url}/{db_prefix}/_all_docs", stream=True, timeout=(5, 2.0),
                            headers={'Accept-Encoding': 'identity'})
    return raised(lambda: response.content)


def test_a_response_cut_off_midway_is_transient(couch_proxy, db_prefix):
    error = read_body(couch_proxy, db_prefix, drop_after_bytes=5)
    assert classify(error) == (CouchUnreachable, TRANSIENT, CUT_OFF, False)


def test_a_response_stalled_midway_is_transient(couch_proxy, db_prefix):
    error = read_body(couch_proxy, db_prefix, stall_after_bytes=5)
    assert isinstance(error, requests.ConnectionError)  # not a Timeout: requests wraps it so mid-body
    assert classify(error) == (CouchUnreachable, TRANSIENT, STALLED, False)


def test_a_body_that_is_not_whole_json_is_transient():
    error = raised(lambda: deepjson.loads(b'{"rows": [1, 2'))
    assert classify(error) == (CouchUnreachable, TRANSIENT, INVALID_BODY, False)


@pytest.mark.parametrize('url', ['ftp://host/db', 'host/db', 'http://'])
def test_a_url_requests_cannot_send_to_is_final(url):
    error = raised(lambda: requests.get(url, timeout=5))
    assert classify(error).error is CouchError and classify(error).transient is FINAL


def test_a_tls_mismatch_found_on_first_contact_is_final_and_says_which():
    mismatch = tls.TLSMismatch("https:// to a port that speaks plain HTTP, not TLS: use http://")
    error = requests.ConnectionError(MaxRetryError(None, '/db', mismatch))
    assert classify(error) == (CouchUnreachable, FINAL, str(mismatch), False)


def test_statuses_that_kept_failing_past_the_retries_are_final():
    error = requests.exceptions.RetryError(MaxRetryError(None, '/db', ResponseError('too many 503s')))
    assert classify(error) == (CouchUnreachable, FINAL, 'RetryError', False)


def test_the_reason_comes_from_the_exception_types_not_their_words():
    unreachable = NewConnectionError(None, 'Failed to establish a new connection: Connection refused')
    unreachable.__cause__ = OSError(101, 'Network is unreachable')
    error = requests.ConnectionError(MaxRetryError(None, '/db', unreachable))
    assert classify(error) == (CouchUnreachable, FINAL, 'ConnectionError', False)
    worded = requests.ConnectionError(ProtocolError('Connection refused, timed out'))
    assert classify(worded).reason == 'ConnectionError'


@pytest.mark.parametrize('error', [requests.exceptions.InvalidHeader('x'), ValueError('x'), KeyError('x')])
def test_what_is_not_a_failure_to_reach_couchdb_is_not_classified(error):
    assert classify(error) is None


def test_a_cluster_node_down_is_transient_and_every_other_412_final():
    # CouchDB 3.5's _changes on a 3-node cluster whose node died mid-request or is rejoining
    outcome = classify(412, error='nodedown', reason='progress not possible')
    assert (outcome.error, outcome.transient) == (CouchUnreachable, TRANSIENT)
    assert 'nodedown' in outcome.reason
    assert classify(412, error='file_exists', reason='The database could not be created').transient is FINAL
    assert classify(412, error='precondition_failed').transient is FINAL
    assert 412 not in TRANSIENT_STATUSES  # urllib3 cannot tell them apart: the transport reads the body
    assert classify(202) == ANSWERED  # accepted by fewer copies than asked: a success
