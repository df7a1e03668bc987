"""Node faults for the cluster tests: a node killed at a random moment of a
phase (or once a condition holds) and brought back during the phase or after it."""
import random
import threading

from tests.processes import stopped
from tests.waiting import wait_for  # noqa: F401 (the cluster tests wait with it)


class NodeOutage(threading.Thread):
    """Kills node ``node`` of ``cluster`` once ``when()`` is true (checked every
    50 ms) and, after ``delay`` more seconds drawn from ``rng``, restarts it
    ``back_after`` seconds later unless ``back_after`` is None (then the test
    brings it back with ``restore()``). Use as a context manager: the node is
    up again when the block ends, pass or fail.

    With ``freeze`` (a Popen), that process is stopped (SIGSTOP) while each
    look at ``when()`` is taken and, once it holds, until the node is killed:
    the phase it runs cannot end first, however fast the server is."""

    def __init__(self, cluster, node, when=lambda: True, delay=(0.0, 1.0), back_after=(2.0, 6.0),
                 seed=None, freeze=None):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.node = node
        self.when = when
        self.rng = random.Random(seed)
        self.delay = self.rng.uniform(*delay)
        self.back_after = None if back_after is None else self.rng.uniform(*back_after)
        self.freeze = freeze
        self.killed = threading.Event()
        self.back = threading.Event()
        self._cancel = threading.Event()
        self.error = None

    def run(self):
        try:
            if self._kill_once_the_moment_came() and self.back_after is not None \
                    and not self._cancel.wait(self.back_after):
                self.restore()
        except Exception as e:  # reported by the test, not lost in a thread
            self.error = e

    def _kill_once_the_moment_came(self):
        """True once the node is killed; False when cancelled first."""
        while True:
            with stopped(self.freeze):
                if self.when():
                    if self._cancel.wait(self.delay):
                        return False
                    self.cluster.kill_node(self.node)
                    self.killed.set()
                    return True
            if self._cancel.wait(0.05):
                return False

    def restore(self):
        """Start the node again (once)."""
        if self.killed.is_set() and not self.back.is_set():
            self.cluster.start_node(self.node)
            self.back.set()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._cancel.set()
        self.join(timeout=120)
        self.restore()
        return False
