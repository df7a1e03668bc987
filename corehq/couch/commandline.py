"""What the commands that talk to CouchDB share: ``--give-up-after``, one
phase budget (see retry.PhaseBudget) for all of a command's requests,
numbers checked against their range when the arguments are parsed, and a
prompt stop on SIGTERM or Ctrl-C."""
import argparse
import math
import signal
from contextlib import contextmanager

from django.core.management.base import CommandError

from corehq.couch.retry import DEFAULT_GIVE_UP_AFTER, PhaseBudget
from corehq.couch.transport import allow_requests, stop_requests


def number(kind, minimum, above=False):
    """An argparse ``type``: an int or float (``kind``) of at least ``minimum``
    (more than it when ``above``), so that an out-of-range value is refused
    with its range before any work starts, instead of reaching the server."""
    bound = f"{'>' if above else '>='} {minimum}"
    noun = 'an integer' if kind is int else 'a number'

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun} {bound}") from None
        if math.isnan(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {noun} {bound}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def add_give_up_after(parser, default_text=f"default {DEFAULT_GIVE_UP_AFTER}"):
    parser.add_argument('--give-up-after', type=number(float, 0), metavar='SECONDS',
                        help=f"How long to keep retrying a server that fails or rate-limits without "
                             f"one success in between ({default_text}; 0: never).")


def phase_budget(give_up_after, never_by_default=False):
    """The budget for one phase; ``give_up_after`` None is the default (never,
    for a phase that waits out outages), and 0 means never: a timeout of 0
    turns it off."""
    if give_up_after is None:
        give_up_after = None if never_by_default else DEFAULT_GIVE_UP_AFTER
    return PhaseBudget(give_up_after=give_up_after or None)


class Stopping(KeyboardInterrupt):
    """SIGTERM or SIGINT: the process was told to stop."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals():
    """A supervisor's SIGTERM and Ctrl-C stop any phase at once: the requests
    in flight are abandoned and no new one starts (see couch.stop_requests),
    so a large attachment or a stalled response does not hold the stop up.
    What was recorded stays right: a result is recorded only once it arrived.
    A SIGINT the shell made ignored (a script's background job) stays ignored."""
    def stop(signum, frame):
        stop_requests()
        raise Stopping(signum)
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        allow_requests()


def stopped_error(interrupt, rerun):
    """The line a stopped command ends with, and the shell's exit code for the signal."""
    signum = getattr(interrupt, 'signum', signal.SIGINT)
    return CommandError(f"Stopped by {signal.Signals(signum).name}: the requests in flight were "
                        f"abandoned; the progress recorded so far stands, and {rerun} goes on from it "
                        f"when run again.", returncode=128 + signum)


@contextmanager
def stoppable(rerun):
    """The block stops promptly on SIGTERM or Ctrl-C (see stop_signals) and
    ends with ``stopped_error``'s line; ``rerun`` names what goes on from it."""
    try:
        with stop_signals():
            yield
    except KeyboardInterrupt as interrupt:
        raise stopped_error(interrupt, rerun) from None
