"""The ``--give-up-after`` option of every command that talks to CouchDB: one
phase budget (see client.PhaseBudget) for all of a command's requests."""
from corehq.couch.client import PhaseBudget

DEFAULT_GIVE_UP_AFTER = 600  # seconds of failing in a row before a command stops


def add_give_up_after(parser, default_text=f"default {DEFAULT_GIVE_UP_AFTER}"):
    parser.add_argument('--give-up-after', type=float, metavar='SECONDS',
                        help=f"How long to keep retrying a server that fails or rate-limits without "
                             f"one success in between ({default_text}; 0: never).")


def phase_budget(give_up_after, never_by_default=False):
    """The budget for one phase; ``give_up_after`` None is the default (never,
    for a phase that waits out outages), and 0 means never: a timeout of 0
    turns it off."""
    if give_up_after is None:
        give_up_after = None if never_by_default else DEFAULT_GIVE_UP_AFTER
    return PhaseBudget(give_up_after=give_up_after or None)
