"""Several requests in flight, results in order.

Over a link to a remote cluster most of a phase's time is spent waiting for
answers; keeping a few requests going at once (CouchDB's replicator keeps
about 8) hides that latency. Results come back in the order of the work, so
a caller can record progress only up to the last piece done with everything
before it done too, and memory holds at most the window.

The pieces of work themselves (view or feed pages, each asking for the one
before it) are read ahead in a thread of their own, so that read's round trip
overlaps the caller's work on the previous piece instead of adding to it.

A process told to stop (couch.stop_requests) does not wait for the work in
flight: its threads are daemons, abandoned with their requests.
"""
import queue
import threading
from collections import deque
from concurrent.futures import Future, wait

from corehq.couch.transport import stop_event

DEFAULT_WORKERS = 4
READ_AHEAD = 2
_END = object()


def ordered(items, work, workers=DEFAULT_WORKERS, budget=None, ahead=READ_AHEAD):
    """Yield (item, work(item)) in the order of ``items``, with up to ``workers``
    calls running at once; fewer while the server rate-limits (``budget``'s
    scale, see couch.PhaseBudget). An error stops the iteration where it
    happened: what was yielded before it is complete. ``ahead`` items are
    read ahead (see read_ahead; 0 for items that cost no round trip, such as
    batches read from a local file). Work already under way
    when producing the next item fails is finished and yielded first, so its
    progress is not lost."""
    if workers <= 1:
        for item in items:
            yield item, work(item)
        return
    pool = Workers(workers)
    window = deque()
    upcoming = read_ahead(items, ahead) if ahead else iter(items)
    try:
        while True:
            try:
                item = next(upcoming)
            except StopIteration:
                break
            except Exception:
                while window:
                    yield _done(window)
                raise
            while len(window) >= scaled(workers, budget):
                yield _done(window)
            window.append((item, pool.submit(work, item)))
        while window:
            yield _done(window)
    finally:
        getattr(upcoming, 'close', lambda: None)()
        for _item, future in window:
            future.cancel()
        pool.shutdown([future for _item, future in window])


class Workers:
    """A thread pool for ``ordered``, as ThreadPoolExecutor but of daemon
    threads: the interpreter waits at exit for ThreadPoolExecutor's threads,
    so a stopping process would wait for its slowest request in flight."""

    def __init__(self, size):
        self._size = size
        self._tasks = queue.SimpleQueue()
        self._threads = []
        self._stopped = stop_event()

    def submit(self, work, item):
        future = Future()
        self._tasks.put((future, work, item))
        if len(self._threads) < self._size:  # one more thread per task, up to the size
            thread = threading.Thread(target=self._run, name=f"couch-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return future

    def shutdown(self, futures):
        """Let the threads end; wait for ``futures`` under way, unless the process
        is stopping (then they are abandoned: nothing records their results)."""
        for _thread in self._threads:
            self._tasks.put(None)
        running = [future for future in futures if not future.done()]
        while running and not self._stopped.is_set():
            running = list(wait(running, timeout=0.2).not_done)

    def _run(self):
        while (task := self._tasks.get()) is not None:
            future, work, item = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work(item))
            except BaseException as error:  # handed to the caller, raised there
                future.set_exception(error)


def _done(window):
    item, future = window.popleft()
    return item, future.result()


def scaled(size, budget):
    """``size`` (requests in flight, docs in a request) as large as the
    server allows now: smaller after a 429, growing back with each success
    (see couch.PhaseBudget)."""
    return size if budget is None else budget.scale(size)


def parts(items, budget):
    """``items`` in consecutive parts as large as the server allows now."""
    size = max(1, scaled(len(items), budget))
    return [items[i:i + size] for i in range(0, len(items), size)]


def read_ahead(items, depth=READ_AHEAD):
    """``items``, produced in a thread of their own up to ``depth`` ahead of
    the caller; an error of the producer is raised where it happened, after
    the items before it. A caller that stops early stops the producer after
    the item it is making (it is left to finish a request, not waited for)."""
    slots = queue.Queue(maxsize=depth)
    stop = threading.Event()
    threading.Thread(target=_produce, args=(items, slots, stop), name='couch-read-ahead', daemon=True).start()
    try:
        while True:
            item, error = slots.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def _produce(items, slots, stop):
    try:
        for item in items:
            if not _offer(slots, (item, None), stop):
                return
    except BaseException as error:  # handed to the consumer, raised there
        _offer(slots, (_END, error), stop)
    else:
        _offer(slots, (_END, None), stop)
    finally:
        close = getattr(items, 'close', None)
        if close is not None:
            close()


def _offer(slots, entry, stop):
    """Put ``entry`` once there is room; False if the consumer stopped first."""
    while not stop.is_set():
        try:
            slots.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class SizesByBytes:
    """Docs per request (a fetch, a feed page): ``most``, or fewer when docs
    are large, so that a request holds about ``max_bytes`` and the requests
    in flight are bounded by bytes, not by a count of docs of any size. The
    first requests are small: the docs' size is known only once some have
    been read (``saw``)."""

    FIRST = 16

    def __init__(self, most, max_bytes):
        self.most, self.max_bytes = most, max_bytes
        self.per_doc = None

    def saw(self, nbytes, ndocs):
        if ndocs:
            size = nbytes / ndocs
            self.per_doc = size if self.per_doc is None else (self.per_doc + size) / 2

    def __call__(self):
        if self.per_doc is None:
            return min(self.most, self.FIRST)
        return max(1, min(self.most, int(self.max_bytes / self.per_doc)))
