"""Several requests in flight, results in order.

Over a link to a remote cluster most of a phase's time is spent waiting for
answers; keeping a few requests going at once (CouchDB's replicator keeps
about 8) hides that latency. Results come back in the order of the work, so
a caller can record progress only up to the last piece done with everything
before it done too, and memory holds at most the window.
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor

DEFAULT_WORKERS = 4


def ordered(items, work, workers=DEFAULT_WORKERS, budget=None):
    """Yield (item, work(item)) in the order of ``items``, with up to ``workers``
    calls running at once; fewer while the server rate-limits (``budget``'s
    scale, see couch.PhaseBudget). An error stops the iteration where it
    happened: what was yielded before it is complete."""
    if workers <= 1:
        for item in items:
            yield item, work(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='couch') as pool:
        window = deque()
        try:
            for item in items:
                while len(window) >= _allowed(workers, budget):
                    done_item, future = window.popleft()
                    yield done_item, future.result()
                window.append((item, pool.submit(work, item)))
            while window:
                done_item, future = window.popleft()
                yield done_item, future.result()
        finally:
            for _item, future in window:
                future.cancel()


def _allowed(workers, budget):
    return workers if budget is None else budget.scale(workers)
