"""Options shared by the commands that talk to CouchDB: ``--give-up-after``,
one phase budget (see retry.PhaseBudget) for all of a command's requests,
and numbers checked against their range when the arguments are parsed."""
import argparse
import math

from corehq.couch.retry import DEFAULT_GIVE_UP_AFTER, PhaseBudget


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
