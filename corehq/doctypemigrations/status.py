"""Where a migration stands, for ``--status`` and the admin page.

``migration_status`` returns plain data (JSON-ready) from the recorded state
and, where it helps, a few quick reads of the source. It never writes, and it
takes the state row as read by slug alone (``state.get``): a status has to
answer even when the settings no longer match the fingerprint.

Seqs are only ever passed back to the server: the changes after the last
checkpoint are counted by asking the feed for them, never by subtracting.
"""
import os

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from corehq.doctypemigrations import state as states
from corehq.couch import CouchDB, CouchError
from corehq.doctypemigrations.models import DUMPING, FOLLOWING, LOADING

# Beyond this many, pouchdb-server's feed (which gives no ``pending``) is not
# counted further: the answer must come within seconds on a big database.
PENDING_CAP = 10000
DEFAULT_MAX_PENDING = 1000
# A status is asked by a person or a monitor waiting for it: fail fast rather
# than wait out the client's minutes of retries.
QUICK_TIMEOUT = (3, 15)
QUICK_RETRIES = 1
# The first refused docs are listed, all are counted: a target that refuses
# everything must not make the status slow or the page endless.
REFUSALS_LISTED = 100

OK, ATTENTION, UNREADABLE = 0, 1, 2

REFUSED_DOCS, FOLLOWER_DEAD, BEHIND = 'refused_docs', 'follower_dead', 'behind'
ATTENTION_TEXT = {
    REFUSED_DOCS: "the target refused {refused} document(s): the initial phase cannot complete "
                  "until they go in (fix the cause, then rerun --initial, which sends them again)",
    FOLLOWER_DEAD: "no --continuous is running (no fresh heartbeat): start "
                   "`./manage.py run_doctype_migration {slug} --continuous`",
    BEHIND: "{pending_text} changes wait behind the last checkpoint (more than {max_pending})",
}


def current_status(migrator, state_row, helper, now=None, max_pending=DEFAULT_MAX_PENDING):
    """The status with a quick client to the source the settings name; a
    source the settings do not name is reported like an unreachable one."""
    try:
        source, unconfigured = quick_source(helper.db_url(migrator.source_db_name)), None
    except ImproperlyConfigured as e:
        source, unconfigured = None, str(e)
    status = migration_status(migrator, state_row, source, now=now, max_pending=max_pending)
    if unconfigured:
        status['couch']['error'] = unconfigured
    return status


def quick_source(url):
    return CouchDB(url, timeout=QUICK_TIMEOUT, retry=QUICK_RETRIES)


def migration_status(migrator, state_row, source, now=None, max_pending=DEFAULT_MAX_PENDING,
                     cap=PENDING_CAP):
    """Plain data on the migration ``state_row`` records (None: not started),
    with the changes pending in ``source`` (a CouchDB, or None when there is
    none to ask) when a follower should be running."""
    now = now or timezone.now()
    cap = max(cap, max_pending + 1)  # so that "behind" is never hidden by the cap
    phase = states.phase(state_row)
    checkpoints = _checkpoints(state_row)
    couch = _probe(source)
    refusals = _refusals(state_row)
    status = {
        'slug': migrator.slug,
        'phase': phase,
        'as_of': now.isoformat(),
        'dump': _dump(migrator.slug, state_row),
        'load': _load(state_row),
        'refusals': refusals,
        'refused_count': _refused_count(state_row, refusals),
        'checkpoint': _checkpoint(checkpoints[0], now) if checkpoints else None,
        'heartbeat': heartbeat(state_row, now),
        'couch': couch,
        'pending': None,
        'pending_lower_bound': False,
        'rate_per_second': None,
        'eta_seconds': None,
        'eta_basis': None,
    }
    if phase == FOLLOWING and checkpoints and couch['reachable']:
        _add_pending(status, source, checkpoints, cap)
    _add_eta(status, state_row, now)
    status['attention'] = _attention(status, max_pending)
    status['max_pending'] = max_pending
    return status


# -- the parts ------------------------------------------------------------------

def _dump(slug, row):
    path = (row.dump_path if row is not None else None) or f"{slug}.log"
    size = os.path.getsize(path) if os.path.isfile(path) else None
    return {'path': path, 'exists': size is not None, 'bytes': size,
            'docs_dumped': row.docs_dumped if row is not None else 0,
            'complete': states.phase(row) not in (states.NEW, DUMPING)}


def _load(row):
    if row is None:
        return {'docs_loaded': 0, 'of': None}
    # Until the dump is complete, the number of docs to load is not known.
    return {'docs_loaded': row.docs_loaded, 'of': None if row.phase == DUMPING else row.docs_dumped}


def _refusals(row):
    if row is None:
        return []
    return [{'doc_id': r.doc_id, 'rev': r.rev, 'error': r.error, 'reason': r.reason}
            for r in row.refusals.all()[:REFUSALS_LISTED]]


def _refused_count(row, listed):
    return len(listed) if len(listed) < REFUSALS_LISTED else row.refusals.count()


def _checkpoints(row):
    """The recent checkpoints, newest first (the state keeps only a few)."""
    if row is None:
        return []
    return list(row.checkpoints.order_by('-timestamp', '-id')[:states.CHECKPOINTS_KEPT])


def _checkpoint(checkpoint, now):
    return {'seq': states.decode_seq(checkpoint.seq), 'at': checkpoint.timestamp.isoformat(),
            'age_seconds': _age(checkpoint.timestamp, now)}


def heartbeat(row, now=None):
    """The follower's claim: its heartbeat's age, its owner, and whether it is fresh."""
    now = now or timezone.now()
    beat_at = row.continuous_heartbeat if row is not None else None
    owner = row.follower_owner if row is not None else None
    host, pid = states.owner_host_pid(owner) if owner else (None, None)
    age = _age(beat_at, now) if beat_at else None
    # The same rule as a second --continuous uses: young enough, and not a
    # process known to be gone from this host.
    fresh = age is not None and age < states.HEARTBEAT_MAX_AGE and states.process_may_live(owner)
    return {'at': beat_at.isoformat() if beat_at else None, 'age_seconds': age,
            'owner': {'host': host, 'pid': pid} if owner else None, 'fresh': fresh}


def _age(moment, now):
    return round(max(0.0, (now - moment).total_seconds()), 1)


def _probe(source):
    if source is None:
        return {'source': None, 'reachable': False, 'error': 'the source database is not configured'}
    try:
        source.info()
    except CouchError as e:
        return {'source': source.display_url, 'reachable': False, 'error': str(e)}
    return {'source': source.display_url, 'reachable': True, 'error': None}


# -- the feed behind the checkpoint ---------------------------------------------

def _add_pending(status, source, checkpoints, cap):
    try:
        pending, lower_bound = changes_after(source, states.decode_seq(checkpoints[0].seq), cap)
        status['pending'], status['pending_lower_bound'] = pending, lower_bound
        status['rate_per_second'] = _follow_rate(source, checkpoints, pending, lower_bound, cap)
    except CouchError as e:
        status['couch'].update(reachable=False, error=str(e))


def changes_after(source, seq, cap=PENDING_CAP):
    """(how many changes the source's feed has after ``seq``, whether that is
    only a lower bound). CouchDB and Cloudant say it in ``pending``;
    pouchdb-server does not, so its feed is counted, up to ``cap`` rows."""
    exact = pending_from(source.json('GET', '_changes', params={'since': seq, 'limit': 0}))
    if exact is not None:
        return exact, False
    rows = source.json('GET', '_changes', params={'since': seq, 'limit': cap})['results']
    return len(rows), len(rows) >= cap


def pending_from(page):
    """The changes after ``since`` by the server's own count, or None when it
    gives none. ``pending`` counts what is left after the rows returned (some
    servers return one row even for ``limit=0``)."""
    if not isinstance(page.get('pending'), int):
        return None
    return page['pending'] + len(page.get('results', ()))


def _follow_rate(source, checkpoints, pending, lower_bound, cap):
    """Changes per second the follower got through between the oldest recent
    checkpoint and the newest: the changes after the older seq less those
    after the newer one (both counted now) over the time between them.
    None when there is no span or a count hit the cap."""
    if len(checkpoints) < 2 or lower_bound:
        return None
    newest, oldest = checkpoints[0], checkpoints[-1]
    span = (newest.timestamp - oldest.timestamp).total_seconds()
    since_oldest, capped = changes_after(source, states.decode_seq(oldest.seq), cap)
    covered = since_oldest - pending
    if capped or span <= 0 or covered <= 0:
        return None
    return round(covered / span, 3)


# -- ETA and attention ---------------------------------------------------------

def _add_eta(status, row, now):
    """A rough time to the end of the current step, assuming it goes on as it
    went so far:
    - loading: the docs left to load at the rate of the whole --initial (docs
      dumped plus docs loaded per second since it started; a pause between
      runs makes it pessimistic);
    - following: the pending changes at the follower's rate over the recent
      checkpoints (new writes meanwhile are not counted); 0 when caught up.
    None where nothing would come of waiting (a refusal, no follower), and
    while dumping: the total to dump is known only by reading the whole
    by_doc_type index, too slow for a status."""
    phase = status['phase']
    if phase == LOADING and not status['refusals']:
        status['eta_seconds'], status['eta_basis'] = _load_eta(row, now), 'initial rate'
    elif phase == FOLLOWING and status['heartbeat']['fresh'] and status['pending'] is not None:
        status['eta_seconds'], status['eta_basis'] = _follow_eta(status), 'checkpoints'


def _load_eta(row, now):
    left = row.docs_dumped - row.docs_loaded
    elapsed = (now - row.created).total_seconds()
    done = row.docs_dumped + row.docs_loaded
    if left <= 0:
        return 0.0
    if elapsed <= 0 or done <= 0:
        return None
    return _seconds(left / (done / elapsed))


def _follow_eta(status):
    if status['pending'] == 0:
        return 0.0
    rate = status.get('rate_per_second')
    if not rate or status['pending_lower_bound']:
        return None
    return _seconds(status['pending'] / rate)


def _seconds(eta):
    return max(0.1, round(eta, 1))  # 0 means done: a short wait is not nothing


def _attention(status, max_pending):
    reasons = []
    if status['refusals']:
        reasons.append(REFUSED_DOCS)
    if status['phase'] == FOLLOWING and not status['heartbeat']['fresh']:
        reasons.append(FOLLOWER_DEAD)
    if status['pending'] is not None and status['pending'] > max_pending:
        reasons.append(BEHIND)
    return reasons


def exit_code(status):
    """0: fine. 1: attention needed (a reason in ``attention``). 2: it could not
    be told, because the source was unreachable where the pending changes count."""
    if status['attention']:
        return ATTENTION
    if not status['couch']['reachable'] and status['phase'] == FOLLOWING:
        return UNREADABLE
    return OK


# -- words -----------------------------------------------------------------------

def attention_messages(status):
    values = {'slug': status['slug'], 'refused': status['refused_count'],
              'pending_text': _pending_text(status), 'max_pending': status['max_pending']}
    return [ATTENTION_TEXT[reason].format(**values) for reason in status['attention']]


def summary_rows(status):
    """(label, text) pairs, the same for the terminal and the admin page."""
    return [
        ('phase', status['phase']),
        ('source', _couch_text(status['couch'])),
        ('dump', _dump_text(status['dump'], status['phase'])),
        ('load', _load_text(status['load'])),
        ('refused', _refused_text(status)),
        ('checkpoint', _checkpoint_text(status['checkpoint'])),
        ('pending', _pending_line(status)),
        ('follower', _follower_text(status['heartbeat'])),
        ('ETA', _eta_text(status)),
    ]


def render_text(status):
    lines = [f"{status['slug']}:"]
    for label, text in summary_rows(status):
        lines.append(f"  {label:<11} {text}")
        if label == 'refused':
            lines += [f"    {r['doc_id']} {r['rev']}: {r['error']} ({r['reason']})"
                      for r in status['refusals']]
    messages = attention_messages(status)
    lines.append("Attention needed:" if messages else "Nothing needs attention.")
    lines += [f"  - {message}" for message in messages]
    return '\n'.join(lines)


def _refused_text(status):
    count, listed = status['refused_count'], len(status['refusals'])
    if not count:
        return 'none'
    return f"{count} document(s)" + (f", the first {listed} listed" if listed < count else '')


def _couch_text(couch):
    where = couch['source'] or 'not configured'
    if couch['reachable']:
        return f"{where} (reachable)"
    # The client's messages name the url themselves, mostly.
    error = couch['error']
    return f"UNREACHABLE: {error}" if where in error else f"{where}: UNREACHABLE: {error}"


def _dump_text(dump, phase):
    if not dump['exists']:
        # --initial removes its dump once the phase is complete; before that a
        # missing dump means the next --initial starts the dump over.
        gone = 'removed after the load' if phase in states.INITIAL_COMPLETE else 'not found'
        return f"{dump['path']} ({gone}), {dump['docs_dumped']} docs dumped"
    done = ', complete' if dump['complete'] else ''
    return f"{dump['path']} ({_bytes_text(dump['bytes'])}), {dump['docs_dumped']} docs dumped{done}"


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


def _pending_text(status):
    return f">= {status['pending']}" if status['pending_lower_bound'] else f"{status['pending']}"


def _pending_line(status):
    if status['pending'] is None:
        if status['phase'] == FOLLOWING and not status['couch']['reachable']:
            return 'unknown: the source is unreachable'
        return '-'
    return f"{_pending_text(status)} changes after the checkpoint"


def _follower_text(heartbeat):
    if heartbeat['owner'] is None:
        return 'none running'
    owner = f"pid {heartbeat['owner']['pid']} on {heartbeat['owner']['host']}"
    beat = f"last heartbeat {_duration(heartbeat['age_seconds'])} ago" if heartbeat['at'] else 'no heartbeat'
    return f"{'alive' if heartbeat['fresh'] else 'DEAD'}: {owner}, {beat}"


def _eta_text(status):
    eta = status['eta_seconds']
    if eta is None:
        return 'unknown' if status['phase'] in (LOADING, FOLLOWING) else '-'
    if eta == 0:
        return 'caught up' if status['phase'] == FOLLOWING else 'done'
    return f"about {_duration(eta)} (from the {status['eta_basis']})"


def _duration(seconds):
    if seconds < 1:
        return "under 1s"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02}m"
