import threading
import time

import pytest

from corehq.doctypemigrations.inflight import ordered, read_ahead


def test_results_come_in_the_order_of_the_work_whatever_order_it_finishes_in():
    def work(n):
        time.sleep(0.02 * (5 - n))  # the first item finishes last
        return n * 10
    assert list(ordered(range(5), work, workers=4)) == [(n, n * 10) for n in range(5)]


def test_an_error_of_the_producer_comes_after_every_item_before_it():
    def pages():
        yield 1
        yield 2
        raise ValueError('page 3 could not be read')
    seen = []
    with pytest.raises(ValueError, match='page 3'):
        for item, result in ordered(pages(), lambda n: n, workers=3):
            seen.append(item)
    assert seen == [1, 2]


def test_the_next_piece_is_read_while_the_caller_works_on_the_last():
    read = [threading.Event() for _ in range(3)]

    def pages():
        for n in range(3):
            time.sleep(0.05)  # a round trip to a remote cluster
            read[n].set()
            yield n
    for n in read_ahead(pages()):
        # the caller's work on page n lasts until page n + 1 is read: read one
        # after the other, it never would be (the wait would end at its timeout)
        if n + 1 < len(read):
            assert read[n + 1].wait(timeout=10), f"page {n + 1} was not read during the work on page {n}"


def test_a_caller_that_stops_early_stops_and_closes_the_producer():
    produced, closed = [], threading.Event()

    def pages():
        try:
            for n in range(1000):
                produced.append(n)
                yield n
        finally:
            closed.set()
    for n in read_ahead(pages(), depth=2):
        if n == 1:
            break
    assert closed.wait(2)
    assert len(produced) <= 5  # it stopped within the read-ahead, not at the end
