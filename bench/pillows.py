"""Commit 4 of the guide at N: moving a pillow to the new database against
processing every doc again, each timed as an operator runs it (a process of
its own per command)."""
import re

from bench.commands import SLUG
from bench.migration import INITIAL_TIMEOUT

PILLOW = 'user_index'


def time_pillow_move(project):
    """The pillow processes the source from scratch to its end (what a reset
    or an index rebuild costs, at the rate measured here), stops, the settings
    flip, and ``move_pillow_checkpoint`` moves it; then it catches up on the
    target from where it was moved to."""
    # The recorded pairs reach the source's end, as with --continuous running up to the flip.
    project.run('run_doctype_migration', SLUG, '--continuous', '--until-caught-up', timeout=INITIAL_TIMEOUT)
    reprocess = project.run('run_pillow', PILLOW, '--rebuild', '--until-caught-up', timeout=INITIAL_TIMEOUT)
    changes = _number(r"; (\d+) changes processed", reprocess.stdout, 'run_pillow')
    flipped = project.flipped()
    move = flipped.run('move_pillow_checkpoint', PILLOW, SLUG, timeout=INITIAL_TIMEOUT)
    after = flipped.run('run_pillow', PILLOW, '--until-caught-up', timeout=INITIAL_TIMEOUT)
    return {
        'reprocess': {'seconds': reprocess.seconds, 'changes': changes,
                      'docs_per_s': changes / reprocess.seconds, 'peak_rss_mb': reprocess.peak_rss_mb},
        'move': {'seconds': move.seconds, 'peak_rss_mb': move.peak_rss_mb,
                 'to_process': _number(r"it processes (\d+) changes", move.stdout, 'move_pillow_checkpoint'),
                 'reset_would_process': _number(r"a reset would process (\d+)", move.stdout,
                                                'move_pillow_checkpoint')},
        'after_move': {'seconds': after.seconds,
                       'changes': _number(r"; (\d+) changes processed", after.stdout, 'run_pillow')},
        'reprocess_vs_move': reprocess.seconds / move.seconds,
    }


def _number(pattern, text, command):
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f"{command} did not say {pattern!r}:\n{text[-1000:]}")
    return int(match.group(1))
