"""A pillow's checkpoint in Django's database: which database, which seq
(stored as JSON, handed back unchanged), how much it processed since it was
last set, and the claim of the one process running it."""
import json

from django.utils import timezone

from corehq.pillows.models import PillowCheckpoint


def get_or_create(name):
    return PillowCheckpoint.objects.get_or_create(name=name)[0]


def get(name):
    return PillowCheckpoint.objects.filter(name=name).first()


def seq(checkpoint):
    return None if checkpoint.seq is None else json.loads(checkpoint.seq)


def advance(checkpoint, db_name, new_seq, processed):
    """Record that ``processed`` more changes up to ``new_seq`` of ``db_name`` went into the sink."""
    _save(checkpoint, db_name=db_name, seq=json.dumps(new_seq), processed=checkpoint.processed + processed,
          saved_at=timezone.now())


def touch(checkpoint):
    """Record that the pillow still stood at its seq now (it stops, caught up or not)."""
    _save(checkpoint, saved_at=timezone.now())


def set_to(checkpoint, db_name, new_seq):
    """Set by hand (first run, --rebuild, a move): the count of processed changes starts over."""
    _save(checkpoint, db_name=db_name, seq=None if new_seq is None else json.dumps(new_seq), processed=0,
          saved_at=timezone.now())


def _save(checkpoint, **fields):
    for name, value in fields.items():
        setattr(checkpoint, name, value)
    checkpoint.save(update_fields=list(fields))
