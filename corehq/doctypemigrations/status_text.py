"""The words of a migration's status (``status.migration_status``'s data):
``--status`` prints them, and the admin page shows the same rows, so that the
terminal and the browser never tell an operator different things."""
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.models import DUMPING, FOLLOWING, LOADING
from corehq.doctypemigrations.status import (
    BEHIND, CLEANUP_STOPPED, FOLLOWER_DEAD, INITIAL_STOPPED, REFUSED_DOCS, REFUSED_WHILE_FOLLOWING, VIEW_ROWS,
    source_readable,
)

ATTENTION_TEXT = {
    REFUSED_DOCS: "the target refused {refused} document(s): the initial phase cannot complete "
                  "until they go in (fix the cause, then rerun --initial, which sends them again)",
    FOLLOWER_DEAD: "no --continuous is running (no fresh heartbeat): start "
                   "`./manage.py run_doctype_migration {slug} --continuous`",
    BEHIND: "{pending_text} changes wait behind the last checkpoint (more than {max_pending})",
    REFUSED_WHILE_FOLLOWING: "the target refused document(s) --continuous copied: it moved on, and sends "
                             "them again with every batch until they go in; fix the cause in the target "
                             "(a validate_doc_update, a size limit), they are listed above",
    INITIAL_STOPPED: "the initial phase stopped before it finished (no --initial is running): run "
                     "`./manage.py run_doctype_migration {slug} --initial`, which resumes where it stopped",
    CLEANUP_STOPPED: "the cleanup started and did not finish (no --cleanup is running): run "
                     "`./manage.py run_doctype_migration {slug} --cleanup`, with --copy-missing for docs "
                     "it left because the target lacks their revisions",
}


def render_text(status):
    lines = [f"{status['slug']}:"]
    for label, text in summary_rows(status):
        lines.append(f"  {label:<11} {text}")
        if label == 'refused':
            lines += [f"    {r['doc_id']} {r['rev']}: {r['error']} ({r['reason']})"
                      for r in status['refusals']]
    messages = attention_messages(status)
    unreadable = [f"the {p['database']} database: {p['reason']}" for p in status['couch']['problems']]
    if unreadable:
        lines.append("Cannot be told, since it cannot read " + "; ".join(unreadable) + ".")
    lines.append("Attention needed:" if messages else "" if unreadable else "Nothing needs attention.")
    lines += [f"  - {message}" for message in messages]
    return '\n'.join(line for line in lines if line)


def attention_messages(status):
    values = {'slug': status['slug'], 'refused': status['refused_count'],
              'pending_text': _pending_text(status), 'max_pending': status['max_pending']}
    return [ATTENTION_TEXT[reason].format(**values) for reason in status['attention']]


def summary_rows(status):
    """(label, text) pairs, the same for the terminal and the admin page."""
    return [
        ('phase', status['phase']),
        ('source', _couch_text(status['couch'], 'source')),
        ('target', _couch_text(status['couch'], 'target')),
        ('dump', _dump_text(status['dump'], status['phase'])),
        ('load', _load_text(status['load'])),
        ('refused', _refused_text(status)),
        ('checkpoint', _checkpoint_text(status['checkpoint'])),
        ('seq pair', _seq_pair_text(status.get('seq_pair'))),
        ('pending', _pending_line(status)),
        ('running', _running_text(status['heartbeat'])),
        ('ETA', _eta_text(status)),
    ]


def _refused_text(status):
    count, listed = status['refused_count'], len(status['refusals'])
    if not count:
        return 'none'
    return f"{count} document(s)" + (f", the first {listed} listed" if listed < count else '')


def _couch_text(couch, which):
    problem = next((p for p in couch['problems'] if p['database'] == which), None)
    where = couch[which] or (problem or {}).get('url') or 'not configured'
    if problem is None:
        return f"{where} (reachable)"
    # The client's messages name the url themselves, mostly.
    error = problem['error']
    label = problem['reason'].upper()
    return f"{label}: {error}" if where in error else f"{where}: {label}: {error}"


def _dump_text(dump, phase):
    if not dump['exists']:
        # --initial removes its dump once the phase is complete; before that a
        # missing dump means the next --initial starts the dump over.
        gone = 'removed after the load' if phase in states.INITIAL_COMPLETE else 'not found'
        return f"{dump['path']} ({gone}), {dump['docs_dumped']} docs dumped"
    done = ', complete' if dump['complete'] else ''
    left = f", {_left_text(dump['left'])}" if dump['left'] is not None else ''
    return f"{dump['path']} ({_bytes_text(dump['bytes'])}), {dump['docs_dumped']} docs dumped{done}{left}"


def _left_text(left):
    count = f">= {left['count']}" if left['lower_bound'] else f"{left['count']}"
    if left['of'] == VIEW_ROWS:
        return f"{count} docs left to dump"
    return f"{count} changes of the feed left to scan"


def _bytes_text(size):
    for unit in ('bytes', 'KB', 'MB', 'GB'):
        if size < 1024 or unit == 'GB':
            return f"{size} {unit}" if unit == 'bytes' else f"{size:.1f} {unit}"
        size /= 1024


def _load_text(load):
    if load['of'] is None:
        return f"{load['docs_loaded']} docs loaded (the dump is not complete)"
    return f"{load['docs_loaded']} of {load['of']} docs loaded"


def _checkpoint_text(checkpoint):
    if checkpoint is None:
        return 'none yet'
    return f"seq {checkpoint['seq']} at {checkpoint['at']} ({_duration(checkpoint['age_seconds'])} ago)"


def _seq_pair_text(pair):
    if pair is None:
        return 'none yet'
    usable = '' if pair['usable'] else ' (not usable yet: before the dump ended)'
    return (f"source {pair['source_seq']} = target {pair['target_seq']} at {pair['at']} "
            f"({_duration(pair['age_seconds'])} ago){usable}")


def _pending_text(status):
    return f">= {status['pending']}" if status['pending_lower_bound'] else f"{status['pending']}"


def _pending_line(status):
    if status['pending'] is None:
        if status['phase'] == FOLLOWING and not source_readable(status['couch']):
            return 'unknown: the source is unreachable'
        return '-'
    return f"{_pending_text(status)} changes after the checkpoint"


def _running_text(heartbeat):
    if heartbeat['owner'] is None:
        return 'nothing'
    owner = f"--{heartbeat['action']}, pid {heartbeat['owner']['pid']} on {heartbeat['owner']['host']}"
    beat = f"last heartbeat {_duration(heartbeat['age_seconds'])} ago" if heartbeat['at'] else 'no heartbeat'
    return f"{'alive' if heartbeat['fresh'] else 'DEAD'}: {owner}, {beat}"


def _eta_text(status):
    eta = status['eta_seconds']
    if eta is None:
        if status['phase'] == DUMPING:
            return _no_dump_eta_text(status)
        return 'unknown' if status['phase'] in (LOADING, FOLLOWING) else '-'
    if eta == 0:
        return 'caught up' if status['phase'] == FOLLOWING else 'done'
    return f"about {_duration(eta)} (from the {status['eta_basis']})"


def _no_dump_eta_text(status):
    """Why there is no ETA while dumping: an operator should not take a
    missing number for a stuck dump."""
    left = status['dump']['left']
    if not source_readable(status['couch']):
        return 'unknown: the source is unreachable'
    if left is None:
        return 'unknown: the dump has recorded no progress yet'
    if left['lower_bound']:
        return (f"unknown: at least {left['count']} left, and this server counts them only by "
                f"reading them all (CouchDB and Cloudant count them at once)")
    return 'unknown: nothing dumped yet to take a rate from'


def _duration(seconds):
    if seconds < 1:
        return "under 1s"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02}m"
