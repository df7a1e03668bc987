"""What transport._Adapter relies on in requests and urllib3, pinned: an
upgrade that changes it fails here rather than in a retry gone wrong."""
import threading

from corehq.couch import PhaseBudget
from corehq.couch.retry import RetryPolicy
from corehq.couch.transport import make_session


def test_each_send_starts_from_the_retry_state_of_its_thread_and_hands_back_where_it_ended(
        couch_proxy, db_prefix):
    policy = RetryPolicy.for_phase(PhaseBudget(backoff_factor=0.01, backoff_jitter=0), label='the policy')
    session = make_session(policy)
    url = f"{couch_proxy.url}/{db_prefix}"
    assert session.put(url, timeout=10).status_code == 201
    adapter = session.get_adapter(url)
    own = policy.new(label='this call')
    other_thread = []
    couch_proxy.reset()
    couch_proxy.fail_status, couch_proxy.fail_count = 503, 1
    with adapter.retrying_from(own):
        # requests reads max_retries at each send, and urllib3 starts from it...
        inside = session.get(url, timeout=10)
        # ...in this thread only
        worker = threading.Thread(target=lambda: other_thread.append(session.get(url, timeout=10)))
        worker.start()
        worker.join()
    outside = session.get(url, timeout=10)
    assert inside.status_code == 200 and couch_proxy.failures == 1
    # urllib3 hands the state it ended in back on the response: the retry it made is in it
    assert inside.raw.retries.label == 'this call' and len(inside.raw.retries.history) == 1
    assert inside.raw.retries.history[0].status == 503
    assert other_thread[0].raw.retries.label == 'the policy' and not other_thread[0].raw.retries.history
    assert outside.raw.retries.label == 'the policy'
