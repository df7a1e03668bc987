"""Waiting for a state, never for a number of seconds."""
import time


def wait_for(condition, limit=120, what='the condition'):
    """Poll ``condition`` until it is true; fail after ``limit`` seconds (a
    safety net for a test that would otherwise hang, not a timing assumption)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {limit}s")
        time.sleep(0.05)
