"""The recorded state of each migration, in Django's database: its phase,
the seq recorded before the dump, dump and load progress, refused revisions,
checkpoints, and the claim and heartbeat of its one --continuous run.

Every gate reads the phase (``check``), and a transition is written before
the work that makes it irreversible. Seqs are stored as JSON text and handed
back unchanged: they are opaque.
"""
import hashlib
import json
import os
import socket
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from corehq.doctypemigrations.errors import (
    CleanupRefused, FingerprintMismatch, InitialAlreadyComplete, MigrationBusy, NotReadyToFollow,
    PhaseRefused,
)
from corehq.doctypemigrations.models import (
    CLEANED, CLEANING, DUMPING, FOLLOWING, LOADING, DocTypeMigration, DocTypeMigrationCheckpoint,
    DocTypeMigrationRefusal,
)

NEW = 'new'
INITIAL_COMPLETE = (FOLLOWING, CLEANING, CLEANED)
CHECKPOINTS_KEPT = 20
HEARTBEAT_SECONDS = 10  # a running --continuous beats this often, even inside a stalled request
HEARTBEAT_MAX_AGE = 90  # seconds; an older heartbeat belongs to a run that is gone


# -- identity ----------------------------------------------------------------

def identity(migrator, source, target):
    """What a migration's state belongs to: the real database names on their
    servers (the server's uuid where it has one, else its url without
    credentials) and the doc types."""
    return {'source': _db_identity(source), 'target': _db_identity(target),
            'doc_types': sorted(migrator.all_doc_types)}


def _db_identity(db):
    server = db.json('GET', server_level=True)
    return {'server': server.get('uuid') or db.server_url, 'db': db.name}


def fingerprint(ident):
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def load(migrator, ident):
    """The migrator's state row, or None before the first --initial.

    Raises FingerprintMismatch when the row was written for other databases,
    another server or other doc types. A row from before fingerprints named
    the databases is adopted once, since nothing better is known of it.
    """
    state = DocTypeMigration.objects.filter(slug=migrator.slug).first()
    if state is None or state.fingerprint == fingerprint(ident):
        return state
    if not state.identity and state.fingerprint == migrator.legacy_fingerprint:
        save_progress(state, fingerprint=fingerprint(ident), identity=json.dumps(ident, sort_keys=True))
        return state
    raise FingerprintMismatch(
        f"The recorded state of {migrator.slug!r} belongs to a different migrator "
        f"({_differences(state, ident)}). Checkpoints are never reused for other databases: "
        f"restore the settings, or delete the {migrator.slug!r} row in the Django admin "
        f"(Doc type migrations) and the dump file to start over.")


def open_state(migrator, source, target):
    """The migrator's state for these databases (``load``), or None."""
    return load(migrator, identity(migrator, source, target))


def get(slug):
    """The state row by slug alone, unchecked: for reading, never for running a phase."""
    return DocTypeMigration.objects.filter(slug=slug).first()


def _differences(state, ident):
    try:
        recorded = json.loads(state.identity)
    except ValueError:
        return "recorded before databases were named in it"
    changed = [name for name in ('source', 'target', 'doc_types') if recorded.get(name) != ident[name]]
    return ', '.join(f"its {name} was {_describe(recorded.get(name))}, now {_describe(ident[name])}"
                     for name in changed)


def _describe(part):
    if isinstance(part, dict):
        return f"{part.get('db')} on {part.get('server')}"
    return ', '.join(part or ())


def recorded_databases(state):
    """(source db name, target db name) the state was recorded for, or None."""
    try:
        recorded = json.loads(state.identity)
        return recorded['source']['db'], recorded['target']['db']
    except (ValueError, KeyError, TypeError):
        return None


def create(migrator, ident, original_seq):
    """The state of a migration's first --initial. Of two starting at once,
    the second gets the first one's row (and then finds its claim taken)."""
    state, _created = DocTypeMigration.objects.get_or_create(
        slug=migrator.slug, defaults=dict(
            phase=DUMPING, fingerprint=fingerprint(ident), identity=json.dumps(ident, sort_keys=True),
            original_seq=encode_seq(original_seq)))
    return load(migrator, ident)


# -- phases and their gates ----------------------------------------------------

def phase(state):
    return NEW if state is None else state.phase


def current_phase(state):
    """The phase as recorded now (another process may have moved it)."""
    state.refresh_from_db(fields=['phase'])
    return state.phase


def set_phase(state, new_phase):
    save_progress(state, phase=new_phase)


_NO_INITIAL = ("{slug!r} has no completed initial migration: run --initial first; "
               "--continuous tops off from the seq that --initial recorded.")
_CLEANUP_STARTED = (
    "The cleanup of {slug!r} has started: the migrated docs are being deleted from the source, "
    "and following the source now would mirror those deletions into the target, which is the "
    "live database. Revisions written to the source since --continuous stopped are copied by "
    "`--cleanup --copy-missing`, never by --continuous.")

# For each action: the phases it runs in, and why it is refused in the others.
GATES = {
    'initial': ({NEW, DUMPING, LOADING}, InitialAlreadyComplete, {
        FOLLOWING: "The initial migration of {slug!r} is already complete; run --continuous "
                   "to keep the target up to date.",
        CLEANING: "The initial migration of {slug!r} is already complete, and its cleanup has started.",
        CLEANED: "{slug!r} has been migrated and cleaned up.",
    }),
    'continuous': ({FOLLOWING}, NotReadyToFollow, {
        NEW: _NO_INITIAL, DUMPING: _NO_INITIAL, LOADING: _NO_INITIAL,
        CLEANING: _CLEANUP_STARTED,
        CLEANED: "{slug!r} has been cleaned up: the migrated docs were deleted from the source, and "
                 "following the source now would mirror those deletions into the target.",
    }),
    'cleanup': ({FOLLOWING, CLEANING, CLEANED}, CleanupRefused, {
        NEW: "{slug!r} has no completed initial migration: there is nothing in the target to trust "
             "yet. Run --initial (and --continuous) first.",
    }),
    'delete_doc_conflicts': ({FOLLOWING, CLEANING, CLEANED}, PhaseRefused, {
        NEW: "{slug!r} has no completed initial migration: resolve conflicts as part of the "
             "cleanup, after --initial and the flip.",
    }),
}
GATES['erase_continuous_progress'] = GATES['continuous']
for _allowed, _error, _messages in GATES.values():
    for _phase in (DUMPING, LOADING):
        _messages.setdefault(_phase, _messages.get(NEW))


def check(action, state, slug):
    """Raise the action's PhaseRefused unless it may run in the state's phase."""
    allowed, error, messages = GATES[action]
    current = phase(state)
    if current not in allowed:
        raise error(messages[current].format(slug=slug))


def initial_complete(state):
    return phase(state) in INITIAL_COMPLETE


# -- dump and load progress ---------------------------------------------------

def encode_seq(seq):
    return json.dumps(seq)


def decode_seq(text):
    return None if text is None else json.loads(text)


def save_progress(state, **fields):
    for name, value in fields.items():
        setattr(state, name, value)
    state.save(update_fields=list(fields))


def original_seq(state):
    return decode_seq(state.original_seq)


@transaction.atomic
def save_load_progress(state, load_offset, docs_loaded, refused):
    """The load position and the revisions refused before it, together: a
    position never moves past a refusal that is not recorded."""
    for error, offset in refused:
        DocTypeMigrationRefusal.objects.update_or_create(
            migration=state, dump_offset=offset,
            defaults={'doc_id': error.id or '', 'rev': error.rev or '', 'error': error.error or '',
                      'reason': str(error.reason or '')})
    save_progress(state, load_offset=load_offset, docs_loaded=docs_loaded)


def refusals(state):
    return list(state.refusals.all())


def forget_refusals(state, offsets):
    state.refusals.filter(dump_offset__in=list(offsets)).delete()


# -- checkpoints ----------------------------------------------------------------

def latest_checkpoint(state):
    checkpoint = state.checkpoints.order_by('-timestamp', '-id').first()
    return None if checkpoint is None else decode_seq(checkpoint.seq)


@transaction.atomic
def complete_initial(state):
    """The first checkpoint, at the seq recorded before the dump, and the phase
    that lets --continuous and the deploy gate through."""
    _add_checkpoint(state, state.original_seq)
    set_phase(state, FOLLOWING)


@transaction.atomic
def save_checkpoint(state, seq):
    """Record that the target holds everything up to ``seq``; keeps only recent rows."""
    _add_checkpoint(state, encode_seq(seq))
    stale = state.checkpoints.order_by('-timestamp', '-id').values_list('id', flat=True)[CHECKPOINTS_KEPT:]
    DocTypeMigrationCheckpoint.objects.filter(id__in=list(stale)).delete()


def _add_checkpoint(state, encoded_seq):
    DocTypeMigrationCheckpoint.objects.create(migration=state, seq=encoded_seq)


@transaction.atomic
def reset_checkpoint_to_original(state):
    """Forget continuous progress: the next --continuous starts at the seq
    recorded before the dump, which is always safe (copies are idempotent)."""
    state.checkpoints.all().delete()
    _add_checkpoint(state, state.original_seq)


# -- the one process working on a migration ------------------------------------------
# --initial, --continuous and --cleanup each hold the migration's one claim
# while they run, renewed by a heartbeat: two runs of one phase never
# interleave, a cleanup never starts beside a follower, and --status tells a
# phase that is running from one that stopped.

INITIAL, CONTINUOUS, CLEANUP = 'initial', 'continuous', 'cleanup'


def new_owner(action=CONTINUOUS):
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{action}"


def claim(state, owner, max_age=HEARTBEAT_MAX_AGE):
    """Make ``owner`` the migration's one runner, or raise MigrationBusy.

    The claim is a compare-and-swap on the previous owner, so of two runs
    starting at once only one gets it. A claim is free when its heartbeat is
    older than ``max_age`` or its process is gone from this host.
    """
    state.refresh_from_db(fields=['follower_owner', 'continuous_heartbeat'])
    holder, beat_at = state.follower_owner, state.continuous_heartbeat
    if holder and _is_fresh(beat_at, max_age) and process_may_live(holder):
        raise _busy(state.slug, owner, holder, beat_at, max_age)
    now = timezone.now()
    holder_is = Q(follower_owner=holder) if holder else Q(follower_owner__isnull=True) | Q(follower_owner='')
    claimed = DocTypeMigration.objects.filter(holder_is, id=state.id).update(
        follower_owner=owner, continuous_heartbeat=now)
    if not claimed:
        state.refresh_from_db(fields=['follower_owner', 'continuous_heartbeat'])
        raise _busy(state.slug, owner, state.follower_owner, state.continuous_heartbeat, max_age)
    state.follower_owner, state.continuous_heartbeat = owner, now


def _busy(slug, claimant, holder, beat_at, max_age):
    host, pid = owner_host_pid(holder)
    age = (timezone.now() - beat_at).total_seconds() if beat_at else 0
    running, wanted = owner_action(holder), owner_action(claimant)
    if wanted == CLEANUP and running == CONTINUOUS:
        return CleanupRefused("A --continuous run is active (its heartbeat is fresh): stop it with Ctrl-C "
                              "first, or the cleanup's deletions would reach the target.")
    rule = ("only one may follow at a time" if running == wanted == CONTINUOUS else
            f"only one process works on a migration at a time, so --{wanted} waits for it")
    return MigrationBusy(
        f"Another --{running} of {slug!r} is running (pid {pid} on {host}, last heartbeat "
        f"{age:.0f}s ago): {rule}. Stop it first (Ctrl-C) or let it finish. If it was killed, its "
        f"claim lapses {max_age}s after its last heartbeat (at once on the same host).")


def owner_action(owner):
    """Which phase a claim's owner runs (claims from before they said: --continuous)."""
    parts = (owner or '').split(':')
    return parts[3] if len(parts) > 3 else CONTINUOUS


def owner_host_pid(owner):
    parts = (owner or '').split(':')
    return (parts[0] if parts else '?'), (parts[1] if len(parts) > 1 else '?')


def process_may_live(owner):
    """False only when the owner ran on this host and its pid is gone."""
    host, pid = owner_host_pid(owner)
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def beat(state, owner):
    """Renew ``owner``'s heartbeat; False when another run holds the claim now."""
    now = timezone.now()
    if DocTypeMigration.objects.filter(id=state.id, follower_owner=owner).update(continuous_heartbeat=now):
        return True
    holder = DocTypeMigration.objects.filter(id=state.id).values_list('follower_owner', flat=True).first()
    return not holder or holder == owner


def release(state, owner):
    DocTypeMigration.objects.filter(id=state.id, follower_owner=owner).update(
        follower_owner=None, continuous_heartbeat=None)


def running_action(state, max_age=HEARTBEAT_MAX_AGE):
    """The phase a live run is working on now (INITIAL, CONTINUOUS or
    CLEANUP), or None when no claim is fresh."""
    if state is None:
        return None
    state.refresh_from_db(fields=['continuous_heartbeat', 'follower_owner'])
    if _is_fresh(state.continuous_heartbeat, max_age) and process_may_live(state.follower_owner):
        return owner_action(state.follower_owner)
    return None


def _is_fresh(beat_at, max_age):
    return beat_at is not None and timezone.now() - beat_at < timedelta(seconds=max_age)
