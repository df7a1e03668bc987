"""The recorded state of each migration, in Django's database: its phase,
the seq recorded before the dump, dump and load progress, refused revisions,
checkpoints with where the target stood at each (seq pairs), and the claim
and heartbeat of its one --continuous run.

Every gate reads the phase (``check``), and a transition is written before
the work that makes it irreversible. Seqs are stored as JSON text and handed
back unchanged: they are opaque.
"""
import hashlib
import json

from django.db import transaction

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations.errors import (
    CleanupRefused, FingerprintMismatch, InitialAlreadyComplete, MigrationBusy, NotReadyToFollow,
    PhaseRefused,
)
from corehq.doctypemigrations.models import (
    CLEANED, CLEANING, DUMPING, FOLLOWING, LOADING, DocTypeMigration, DocTypeMigrationCheckpoint,
    DocTypeMigrationRefusal, DocTypeMigrationSeqPair,
)

NEW = 'new'
INITIAL_COMPLETE = (FOLLOWING, CLEANING, CLEANED)
CHECKPOINTS_KEPT = 20
# Seq pairs kept: the newest half of them all, the older ones thinned out
# (every other one dropped each time the table is full), and always the first
# usable one, which tells a consumer too old to move from one to rebuild.
PAIRS_KEPT = 200


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
# The admin's delete of a migration's state (to start it over).
GATES['delete_state'] = ({DUMPING, LOADING, FOLLOWING}, PhaseRefused, {
    NEW: "{slug!r} has no recorded state to delete.",
    CLEANING: "its cleanup has started: forgetting the phase would let --continuous run again "
              "and copy the cleanup's deletions into the target",
    CLEANED: "its cleanup has started: forgetting the phase would let --continuous run again "
             "and copy the cleanup's deletions into the target",
})
for _allowed, _error, _messages in GATES.values():
    for _phase in (DUMPING, LOADING):
        _messages.setdefault(_phase, _messages.get(NEW))


def check(action, state, slug):
    """Raise the action's PhaseRefused unless it may run in the state's phase."""
    allowed, error, messages = GATES[action]
    current = phase(state)
    if current not in allowed:
        raise error(messages[current].format(slug=slug))


def check_deletable(state):
    """Whether the admin may delete a migration's state to start it over:
    never once its cleanup started, nor while a run works on it."""
    check('delete_state', state, state.slug if state is not None else '')
    running = claims.running_action(state)
    if running:
        raise MigrationBusy(f"a --{running} is running (its heartbeat is fresh): stop it first")


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


def dump_complete(state, dump_end_seq):
    """The dump is complete: the load comes next, and ``dump_end_seq`` (the
    source's seq read right after the dump's last read) bounds what it copies."""
    save_progress(state, phase=LOADING, dump_end_seq=encode_seq(dump_end_seq))


def dump_end_seq(state):
    return decode_seq(state.dump_end_seq)


@transaction.atomic
def save_load_progress(state, load_position, docs_loaded, refused):
    """The load position and the revisions refused before it, together: a
    position never moves past a refusal that is not recorded."""
    for error, offset in refused:
        DocTypeMigrationRefusal.objects.update_or_create(
            migration=state, line_position=offset,
            defaults={'doc_id': error.id or '', 'rev': error.rev or '', 'error': error.error or '',
                      'reason': str(error.reason or '')})
    save_progress(state, load_position=load_position, docs_loaded=docs_loaded)


@transaction.atomic
def save_follow_refusals(state, errors, sent_ids):
    """What --continuous could not copy: the docs of ``sent_ids`` not named in
    ``errors`` went in (their refusals are gone), each error is recorded."""
    refused = {error.id for error in errors}
    went_in = [doc_id for doc_id in sent_ids if doc_id not in refused]
    state.refusals.filter(line_position__isnull=True, doc_id__in=went_in).delete()
    for error in errors:
        DocTypeMigrationRefusal.objects.update_or_create(
            migration=state, line_position=None, doc_id=error.id or '', rev=error.rev or '',
            defaults={'error': error.error or '', 'reason': str(error.reason or '')})


def follow_refusals(state):
    """Ids of the docs --continuous could not copy, to send again."""
    return list(state.refusals.filter(line_position__isnull=True).values_list('doc_id', flat=True).distinct())


def refusals(state):
    """The revisions refused while loading the dump, to send again from it."""
    return list(state.refusals.filter(line_position__isnull=False))


def forget_refusals(state, offsets):
    state.refusals.filter(line_position__in=list(offsets)).delete()


# -- checkpoints ----------------------------------------------------------------

def latest_checkpoint(state):
    checkpoint = state.checkpoints.order_by('-timestamp', '-id').first()
    return None if checkpoint is None else decode_seq(checkpoint.seq)


@transaction.atomic
def complete_initial(state, target_seq, dump_end=None):
    """The first checkpoint, at the seq recorded before the dump, the first seq
    pair, and the phase that lets --continuous and the deploy gate through.

    The pair is (the source's seq read after the dump, the target's seq read
    after the load): the load copied only revisions written before the first,
    so every later source change reaches the target after the second, through
    --continuous. ``dump_end`` stands in for a dump recorded before its end
    was (a seq read later, which only makes the pair safer)."""
    _add_checkpoint(state, state.original_seq)
    recorded_end = dump_end_seq(state)
    record_pair(state, dump_end if recorded_end is None else recorded_end, target_seq, usable=True)
    set_phase(state, FOLLOWING)


@transaction.atomic
def save_checkpoint(state, seq, target_seq, usable, changes=None):
    """Record that the target holds everything up to ``seq``, and where the
    target stood then (``target_seq``, read after it acknowledged the batch),
    with the number of source ``changes`` the batch read; keeps only recent
    checkpoints."""
    _add_checkpoint(state, encode_seq(seq))
    stale = state.checkpoints.order_by('-timestamp', '-id').values_list('id', flat=True)[CHECKPOINTS_KEPT:]
    DocTypeMigrationCheckpoint.objects.filter(id__in=list(stale)).delete()
    record_pair(state, seq, target_seq, usable, changes)


def _add_checkpoint(state, encoded_seq):
    DocTypeMigrationCheckpoint.objects.create(migration=state, seq=encoded_seq)


def erase_continuous_progress(migrator, source, target):
    """The --erase-continuous-progress entry point: its gate, then the reset,
    holding the migration's claim so that no --continuous runs meanwhile (its
    next checkpoint would undo the reset). Returns the seq it starts at now."""
    state = open_state(migrator, source, target)
    check('erase_continuous_progress', state, migrator.slug)
    with claims.running(state, claims.ERASE):
        reset_checkpoint_to_original(state)
    return original_seq(state)


@transaction.atomic
def reset_checkpoint_to_original(state):
    """Forget continuous progress: the next --continuous starts at the seq
    recorded before the dump, which is always safe (copies are idempotent)."""
    state.checkpoints.all().delete()
    _add_checkpoint(state, state.original_seq)


# -- seq pairs ----------------------------------------------------------------------

def record_pair(state, source_seq, target_seq, usable, changes=None):
    """Record that the target stood at ``target_seq`` once it held every source
    change up to ``source_seq``. ``usable`` only when every source change after
    ``source_seq`` reaches the target after ``target_seq`` (see pairs.py).
    ``changes``: how many source changes were read since the previous pair."""
    DocTypeMigrationSeqPair.objects.create(migration=state, source_seq=encode_seq(source_seq),
                                           target_seq=encode_seq(target_seq), usable=usable,
                                           changes=changes)
    _thin_pairs(state)


def _thin_pairs(state):
    kept = PAIRS_KEPT
    if state.seq_pairs.count() <= kept:
        return
    rows = list(state.seq_pairs.order_by('id').values_list('id', 'usable', 'changes'))
    first_usable = next((pair_id for pair_id, usable, _changes in rows if usable), None)
    older = rows[:-(kept // 2)]
    dropped = [index for index in range(1, len(older), 2) if older[index][0] != first_usable]
    for index in dropped:
        _fold_changes_into_next(older[index], rows[index + 1])
    DocTypeMigrationSeqPair.objects.filter(id__in=[older[index][0] for index in dropped]).delete()


def _fold_changes_into_next(dropped, following):
    """The next pair (always kept: every other one is dropped) now covers the
    dropped one's changes too, so the history still counts them all."""
    changes, (next_id, next_changes) = dropped[2], (following[0], following[2])
    if changes and next_changes is not None:
        DocTypeMigrationSeqPair.objects.filter(id=next_id).update(changes=next_changes + changes)


def usable_pairs(state):
    """The usable seq pairs, oldest first (the source's feed order)."""
    return list(state.seq_pairs.filter(usable=True).order_by('id'))


def latest_pair(state):
    return None if state is None else state.seq_pairs.order_by('-id').first()
