#!/usr/bin/env python
"""Doc type migration bench: ``.venv/bin/python bench/run.py [--quick] [--docs N] [--server URL|launcher]
[--out PATH]``.

Starts its own pouchdb-server on a free loopback port with a temporary data
dir (or measures the CouchDB of ``--server``: a url, or ``launcher`` for
Apache CouchDB from ../shared/couchdb started for the run), measures
--initial, its peers, --continuous lag and --cleanup on the same data, prints
a table with PASS/FAIL per goal and writes JSON. A server it started and the
temporary files are removed at the end, also on failure or Ctrl-C.
"""
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on the path; the project root is
# what the bench's imports (bench.*, corehq.*, settings) need.
sys.path[0] = str(PROJECT_DIR)

from bench.main import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
