"""The tests' CouchProxy in a process of its own: a simulated link to a remote
cluster (a fixed delay per request) and/or a Cloudant-like rate limit (a
share of requests answered 429 with no Retry-After).

It runs in its own process so its relaying never competes for the GIL with
the bench's own clients (the raw loops run in the bench process). It prints
its url on the first line, runs until its stdin closes (so it ends with the
bench, however the bench ends), then prints its counters as one JSON line.

    python -m bench.linkproxy UPSTREAM_URL [--latency S] [--rate-limit P] [--seed N]
"""
import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time

from bench.commands import PROJECT_DIR

START_TIMEOUT = 30


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('upstream')
    parser.add_argument('--latency', type=float, default=0.0)
    parser.add_argument('--rate-limit', type=float, default=0.0)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PROJECT_DIR))
    from tests.couchproxy import CouchProxy
    proxy = CouchProxy(args.upstream, latency=args.latency, rate_limit_probability=args.rate_limit,
                       rate_limit_seed=args.seed).start()
    print(proxy.url, flush=True)
    try:
        sys.stdin.read()   # until the bench closes our stdin, or goes away
    except KeyboardInterrupt:
        pass
    counters = {'requests': proxy.count(), 'max_in_flight': proxy.max_in_flight,
                'rate_limited': proxy.rate_limited, 'bytes_sent': proxy.bytes_sent,
                'bytes_received': proxy.bytes_received}
    proxy.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counters['cpu_s'] = usage.ru_utime + usage.ru_stime
    print(json.dumps(counters), flush=True)


@contextlib.contextmanager
def link(upstream_url, latency=0.0, rate_limit=0.0, seed=1):
    """A running proxy process; yields a ``Link`` whose ``counters`` are filled
    in once the block ends (the process is stopped and reaped either way)."""
    process = subprocess.Popen(
        [sys.executable, '-m', 'bench.linkproxy', upstream_url, '--latency', str(latency),
         '--rate-limit', str(rate_limit), '--seed', str(seed)],
        cwd=PROJECT_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    handle = Link(process)
    try:
        handle.url = _first_line(process)
        yield handle
    finally:
        handle.close()


class Link:
    def __init__(self, process):
        self.process = process
        self.url = None
        self.counters = {}

    def close(self):
        if self.process.poll() is None:
            try:
                # An empty input closes the proxy's stdin: it prints its counters and ends.
                out, _ = self.process.communicate(input='', timeout=15)
                lines = [line for line in out.splitlines() if line.startswith('{')]
                if lines:
                    self.counters = json.loads(lines[-1])
            except (subprocess.TimeoutExpired, OSError, ValueError):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _first_line(process):
    deadline = time.monotonic() + START_TIMEOUT
    line = process.stdout.readline().strip()
    if not line.startswith('http') or time.monotonic() > deadline:
        raise RuntimeError(f"the link proxy did not start (said {line!r})")
    return line


if __name__ == '__main__':
    main()
