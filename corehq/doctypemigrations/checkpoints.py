"""Migration state in Django's database: recorded seqs, dump/load progress,
checkpoints and the continuous heartbeat.

Seqs are stored as JSON text and handed back unchanged: they are opaque.
"""
import json
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from corehq.doctypemigrations.models import DocTypeMigration, DocTypeMigrationCheckpoint

CHECKPOINTS_KEPT = 20


class StateError(Exception):
    pass


class FingerprintMismatch(StateError):
    pass


def encode_seq(seq):
    return json.dumps(seq)


def decode_seq(text):
    return None if text is None else json.loads(text)


def get_state(migrator):
    """The migrator's state row, or None before the first --initial.

    Raises FingerprintMismatch when the row was written for a migrator that
    moved other doc types or used other databases.
    """
    state = DocTypeMigration.objects.filter(slug=migrator.slug).first()
    if state is not None and state.fingerprint != migrator.fingerprint:
        raise FingerprintMismatch(
            f"The recorded state of {migrator.slug!r} belongs to a different migrator "
            f"(its databases or doc types changed since --initial started). Checkpoints "
            f"are never reused for a changed migration: restore the migrator's definition, "
            f"or delete the {migrator.slug!r} row in the Django admin (Doc type migrations) "
            f"and the dump file to start over.")
    return state


def create_state(migrator, original_seq):
    return DocTypeMigration.objects.create(
        slug=migrator.slug, fingerprint=migrator.fingerprint, original_seq=encode_seq(original_seq))


def save_progress(state, **fields):
    for name, value in fields.items():
        setattr(state, name, value)
    state.save(update_fields=list(fields))


def original_seq(state):
    return decode_seq(state.original_seq)


def latest_checkpoint(state):
    checkpoint = state.checkpoints.order_by('-timestamp', '-id').first()
    return None if checkpoint is None else decode_seq(checkpoint.seq)


def has_checkpoint(slug):
    return DocTypeMigrationCheckpoint.objects.filter(migration__slug=slug).exists()


def initial_complete(state):
    return state is not None and state.checkpoints.exists()


@transaction.atomic
def save_checkpoint(state, seq):
    """Record that the target holds everything up to ``seq``; keeps only recent rows."""
    DocTypeMigrationCheckpoint.objects.create(migration=state, seq=encode_seq(seq))
    stale = state.checkpoints.order_by('-timestamp', '-id').values_list('id', flat=True)[CHECKPOINTS_KEPT:]
    DocTypeMigrationCheckpoint.objects.filter(id__in=list(stale)).delete()


@transaction.atomic
def reset_checkpoint_to_original(state):
    """Forget continuous progress: the next --continuous starts at the seq
    recorded before the dump, which is always safe (copies are idempotent)."""
    state.checkpoints.all().delete()
    DocTypeMigrationCheckpoint.objects.create(migration=state, seq=state.original_seq)


def beat(state):
    save_progress(state, continuous_heartbeat=timezone.now())


def stop_beating(state):
    save_progress(state, continuous_heartbeat=None)


def heartbeat_is_fresh(state, max_age):
    state.refresh_from_db(fields=['continuous_heartbeat'])
    beat_at = state.continuous_heartbeat
    return beat_at is not None and timezone.now() - beat_at < timedelta(seconds=max_age)
