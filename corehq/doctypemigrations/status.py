"""Where a migration stands, for ``--status`` and the admin page.

``migration_status`` returns plain data (JSON-ready) from the recorded state
and, where it helps, a few quick reads of the source. It never writes, and it
takes the state row as read by slug alone (``state.get``): a status has to
answer even when the settings no longer match the fingerprint. Its words are
``status_text.py``'s, shared by ``--status`` and the admin page.

Seqs are only ever passed back to the server: the changes after the last
checkpoint are counted by asking the feed for them, never by subtracting.
"""
import os

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.couch import (
    CouchDB, CouchError, CouchUnauthorized, CouchUnreachable, DatabaseMissing,
)
from corehq.doctypemigrations.models import CLEANING, DUMPING, FOLLOWING, LOADING
from corehq.doctypemigrations.selection import BY_DOC_TYPE, doc_type_range, feed_length

# Beyond this many, pouchdb-server's feed (which gives no ``pending``) and the
# rows of the by_doc_type view left to dump (which it counts only by reading
# them, ~60 us a row) are not counted further: the answer must come within
# seconds on a big database.
PENDING_CAP = 10000
DEFAULT_MAX_PENDING = 1000
# The first refused docs are listed, all are counted: a target that refuses
# everything must not make the status slow or the page endless.
REFUSALS_LISTED = 100

OK, ATTENTION, UNREADABLE = 0, 1, 2

REFUSED_DOCS, FOLLOWER_DEAD, BEHIND = 'refused_docs', 'follower_dead', 'behind'
# A phase left unfinished: its run crashed, was killed or stopped short.
INITIAL_STOPPED, CLEANUP_STOPPED = 'initial_stopped', 'cleanup_stopped'
# Docs the target refused while --continuous copied them (it moved on).
REFUSED_WHILE_FOLLOWING = 'refused_while_following'
# What the dump has left is counted in: rows of the by_doc_type view (docs to
# dump), or changes of the whole feed (to scan, migrating or not).
VIEW_ROWS, FEED_CHANGES = 'view', 'feed'


def current_status(migrator, state_row, helper, now=None, max_pending=DEFAULT_MAX_PENDING):
    """The status with quick clients to the source and target the settings
    name; a database the settings do not name is reported like an
    unreachable one."""
    source, source_problem = _quick_db(helper, migrator.source_db_name)
    target, target_problem = _quick_db(helper, migrator.target_db_name)
    status = migration_status(migrator, state_row, source, now=now, max_pending=max_pending, target=target)
    for which, problem in (('source', source_problem), ('target', target_problem)):
        if problem:
            _unreadable(status['couch'], which, None, problem, 'not configured')
    return status


def _quick_db(helper, name):
    try:
        return quick_db(helper.db_url(name)), None
    except ImproperlyConfigured as e:
        return None, str(e)


def quick_db(url):
    # a status is asked by a person or a monitor waiting for it: fail fast rather
    # than wait out the client's minutes of retries
    return CouchDB.answering_quickly(url)


def migration_status(migrator, state_row, source, now=None, max_pending=DEFAULT_MAX_PENDING,
                     cap=PENDING_CAP, target=None):
    """Plain data on the migration ``state_row`` records (None: not started),
    with the changes pending in ``source`` (a CouchDB, or None when there is
    none to ask) when a follower should be running; ``target`` is only
    checked for being there and readable."""
    now = now or timezone.now()
    phase = states.phase(state_row)
    checkpoints = _checkpoints(state_row)
    couch, info = _probe(source, target)
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
        'seq_pair': _seq_pair(state_row, now),
        'heartbeat': heartbeat(state_row, now),
        'couch': couch,
        'pending': None,
        'pending_lower_bound': False,
        'rate_per_second': None,
        'eta_seconds': None,
        'eta_basis': None,
    }
    if phase == FOLLOWING and checkpoints and source_readable(couch):
        # so that "behind" is never hidden by the cap
        _add_pending(status, source, checkpoints, max(cap, max_pending + 1))
    if phase == DUMPING and source_readable(couch):
        _add_dump_left(status, source, migrator, state_row, info, cap)
    _add_eta(status, state_row, now, info)
    status['attention'] = _attention(status, max_pending)
    status['max_pending'] = max_pending
    return status


# -- the parts ------------------------------------------------------------------

def _dump(slug, row):
    path = (row.dump_path if row is not None else None) or f"{slug}.log"
    size = os.path.getsize(path) if os.path.isfile(path) else None
    return {'path': path, 'exists': size is not None, 'bytes': size,
            'docs_dumped': row.docs_dumped if row is not None else 0,
            'complete': states.phase(row) not in (states.NEW, DUMPING), 'left': None}


def _load(row):
    if row is None:
        return {'docs_loaded': 0, 'of': None}
    # Until the dump is complete, the number of docs to load is not known.
    return {'docs_loaded': row.docs_loaded, 'of': None if row.phase == DUMPING else row.docs_dumped}


def _refusals(row):
    if row is None:
        return []
    return [{'doc_id': r.doc_id, 'rev': r.rev, 'error': r.error, 'reason': r.reason,
             'while': 'loading' if r.line_position is not None else 'following'}
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


def _seq_pair(row, now):
    """The latest (source seq, target seq) recorded, by which a change consumer
    moves to the target (``usable``: see pairs.py), or None."""
    pair = states.latest_pair(row)
    if pair is None:
        return None
    return {'source_seq': states.decode_seq(pair.source_seq),
            'target_seq': states.decode_seq(pair.target_seq), 'usable': pair.usable,
            'at': pair.recorded_at.isoformat(), 'age_seconds': _age(pair.recorded_at, now)}


def heartbeat(row, now=None):
    """The claim of the run working on the migration: its heartbeat's age,
    its owner, which phase it runs (``action``) and whether it is fresh."""
    now = now or timezone.now()
    beat_at = row.heartbeat_at if row is not None else None
    owner = row.runner if row is not None else None
    host, pid = claims.owner_host_pid(owner) if owner else (None, None)
    return {'at': beat_at.isoformat() if beat_at else None,
            'age_seconds': _age(beat_at, now) if beat_at else None,
            'owner': {'host': host, 'pid': pid} if owner else None,
            'fresh': claims.is_fresh(owner, beat_at, now),
            'action': claims.owner_action(owner) if owner else None}


def _age(moment, now):
    return round(max(0.0, (now - moment).total_seconds()), 1)


def _probe(source, target=None):
    """(whether the databases answer, the source's database info or None).
    ``source`` (with ``reachable`` and ``error``) speaks for the source, the
    one a follower reads; ``problems`` names each database that cannot be
    read, with why (unreachable, unauthorized, missing database)."""
    couch = {'source': None, 'target': None, 'reachable': True, 'error': None, 'problems': []}
    info = None
    for which, db in (('source', source), ('target', target)):
        if db is None:
            if which == 'source':
                _unreadable(couch, which, None, 'the source database is not configured', 'not configured')
            continue
        couch[which] = db.display_url
        try:
            result = db.info()
        except CouchError as e:
            _unreadable(couch, which, db.display_url, str(e), _reason(e))
            continue
        if which == 'source':
            info = result
    return couch, info


def source_readable(couch):
    return not any(problem['database'] == 'source' for problem in couch['problems'])


def _unreadable(couch, which, url, error, reason):
    couch['problems'].append({'database': which, 'url': url, 'reason': reason, 'error': error})
    couch['reachable'] = False
    couch['error'] = couch['error'] or error


def _reason(error):
    if isinstance(error, DatabaseMissing):
        return 'missing database'
    if isinstance(error, CouchUnauthorized):
        return 'unauthorized'
    if isinstance(error, CouchUnreachable):
        return 'unreachable'
    return 'error'


# -- the feed behind the checkpoint ---------------------------------------------

def _add_pending(status, source, checkpoints, cap):
    try:
        pending, lower_bound = changes_after(source, states.decode_seq(checkpoints[0].seq), cap)
        status['pending'], status['pending_lower_bound'] = pending, lower_bound
        status['rate_per_second'] = _follow_rate(source, checkpoints, pending, lower_bound, cap)
    except CouchError as e:
        _unreadable(status['couch'], 'source', source.display_url, str(e), _reason(e))


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


# -- what the dump has left ---------------------------------------------------

def _add_dump_left(status, source, migrator, row, info, cap):
    """What the dump has still to read after its recorded position (None
    before it recorded one): the dump goes on from there, in the same order."""
    position = states.decode_seq(row.dump_since) if row is not None else None
    if not position:
        return
    try:
        if 'view' in position:
            count, lower_bound = view_rows_after(source, migrator.all_doc_types, position['view'], cap,
                                                 keeps_reductions(info))
            of = VIEW_ROWS
        else:
            (count, lower_bound), of = changes_after(source, position['changes'], cap), FEED_CHANGES
    except CouchError as e:
        _unreadable(status['couch'], 'source', source.display_url, str(e), _reason(e))
        return
    status['dump']['left'] = {'count': count, 'lower_bound': lower_bound, 'of': of}


def keeps_reductions(info):
    """Whether the server keeps reduce values in its index, so a count over a
    key range costs a few reads (CouchDB 1 to 3 and Cloudant, whose database
    info has ``compact_running``); pouchdb-server reduces at query time, by
    reading every row in the range."""
    return 'compact_running' in (info or {})


def view_rows_after(source, doc_types, position, cap=PENDING_CAP, reductions=False):
    """(rows of the by_doc_type view of ``doc_types`` after the dump's
    ``position`` ([doc type, last key read]), whether only a lower bound).
    Read as the index is (stale): a status must not wait for an index update."""
    current, after = position
    left = 0
    for doc_type in sorted(doc_types):
        if doc_type < current:
            continue
        start = after if doc_type == current else None
        if reductions:
            left += _reduced_count(source, doc_type, start)
            continue
        left += _rows_read(source, doc_type, start, cap - left)
        if left >= cap:
            return left, True
    return left, False


def _reduced_count(source, doc_type, after):
    rows = source.view(*BY_DOC_TYPE, **doc_type_range(doc_type, after),
                       stale='ok')['rows']
    count = rows[0]['value'] if rows else 0
    # the range starts at the row last read, which is dumped already
    return max(0, count - 1) if after else count


def _rows_read(source, doc_type, after, limit):
    """Up to ``limit`` rows after the key ``after`` (the key itself dropped,
    as the dump drops it), ids only."""
    rows = source.view(*BY_DOC_TYPE, reduce=False, **doc_type_range(doc_type, after),
                       limit=limit + 1, stale='ok')['rows']
    return len([row for row in rows if row['key'] != after][:limit])


# -- ETA and attention ---------------------------------------------------------

def _add_eta(status, row, now, info):
    """A rough time to the end of the current step, assuming it goes on as it
    went so far:
    - dumping: what the dump has left at its rate since --initial started (a
      pause between runs makes it pessimistic). None while that is only a
      lower bound: beyond the cap, pouchdb-server could count it only by
      reading the whole rest of the view, too slow for a status;
    - loading: the docs left to load at the rate of the whole --initial (docs
      dumped plus docs loaded per second since it started);
    - following: the pending changes at the follower's rate over the recent
      checkpoints (new writes meanwhile are not counted); 0 when caught up.
    None where nothing would come of waiting (a refusal, no follower)."""
    phase = status['phase']
    left = status['dump']['left']
    if phase == DUMPING and left is not None and not left['lower_bound']:
        status['eta_seconds'], status['eta_basis'] = _dump_eta(row, left, info, now), 'dump rate'
    elif phase == LOADING and not status['refusals']:
        status['eta_seconds'], status['eta_basis'] = _load_eta(row, now), 'initial rate'
    elif phase == FOLLOWING and _running(status['heartbeat']) == claims.CONTINUOUS \
            and status['pending'] is not None:
        status['eta_seconds'], status['eta_basis'] = _follow_eta(status), 'checkpoints'


def _dump_eta(row, left, info, now):
    """``left`` at the rate so far, in its own unit: docs dumped (view rows,
    give or take a conflict's second leaf), or changes of the feed scanned
    (the feed's length, from ``info``, less those left)."""
    if left['count'] == 0:
        return 0.0
    done = row.docs_dumped if left['of'] == VIEW_ROWS else feed_length(info) - left['count']
    elapsed = (now - row.created).total_seconds()
    if elapsed <= 0 or done <= 0:
        return None
    return _seconds(left['count'] / (done / elapsed))


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
    phase, running = status['phase'], _running(status['heartbeat'])
    refused_while = {refusal['while'] for refusal in status['refusals']}
    if 'loading' in refused_while:
        reasons.append(REFUSED_DOCS)
    elif phase in (DUMPING, LOADING) and running != claims.INITIAL:
        reasons.append(INITIAL_STOPPED)
    if 'following' in refused_while and phase == FOLLOWING:
        reasons.append(REFUSED_WHILE_FOLLOWING)
    if phase == FOLLOWING and running not in (claims.CONTINUOUS, claims.CLEANUP):
        reasons.append(FOLLOWER_DEAD)
    if phase == CLEANING and running != claims.CLEANUP:
        reasons.append(CLEANUP_STOPPED)
    if status['pending'] is not None and status['pending'] > max_pending:
        reasons.append(BEHIND)
    return reasons


def _running(heartbeat):
    return heartbeat['action'] if heartbeat['fresh'] else None


def exit_code(status):
    """0: fine. 1: attention needed (a reason in ``attention``). 2: it could not
    be told, because the source or the target cannot be read (which comes
    first: what the status says of the rest is only what the state recorded)."""
    if not status['couch']['reachable']:
        return UNREADABLE
    if status['attention']:
        return ATTENTION
    return OK
