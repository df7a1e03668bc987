"""Synthetic source data: the shapes the migration meets in production.

Everything is written with ``new_edits=false`` and explicit ``_revisions``: it
is the fastest way into the server (no rev computation, no conflict checks on
the client side) and the only way to build conflicts and multi-generation
histories directly.
"""
import base64
import random
from collections import Counter
from dataclasses import dataclass, field

import orjson

# A third of the docs are of migrating types (every one is in users_migration's
# doc types, -Deleted variants included); the rest stay in the source.
MIGRATING_TYPES = ('CommCareUser', 'CommCareUser', 'CommCareUser', 'WebUser', 'Group', 'UserRole',
                   'Invitation', 'DeleteGroupRecord', 'CommCareUser-Deleted', 'Group-Deleted')
OTHER_TYPES = ('XFormInstance', 'XFormInstance', 'CommCareCase', 'CommCareCase', 'Domain',
               'Application', 'XFormArchived', 'CommCareCase-Deleted', 'SyncLog', 'RepeatRecord')

CONFLICT_SHARE = 0.03     # docs with a second live (or, a third of them, deleted) branch
DELETED_SHARE = 0.03      # docs whose winner is a tombstone
ATTACHMENT_SHARE = 0.01   # docs with a small inline attachment
BATCH = 1000

_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789 '


@dataclass
class DataSet:
    db_name: str
    docs: int = 0
    migrating: int = 0
    conflicted: int = 0
    deleted: int = 0
    with_attachments: int = 0
    bytes: int = 0
    expected_in_target: int = 0   # live docs of migrating types: what every copy must end with
    doc_types: Counter = field(default_factory=Counter)

    def as_dict(self):
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}


class _Revs:
    def __init__(self, rng):
        self.rng = rng

    def hex(self):
        return '%032x' % self.rng.getrandbits(128)

    def history(self, generations):
        return [self.hex() for _ in range(generations)]


def _padding(rng, pool):
    start = rng.randrange(len(pool) - 1000)
    return pool[start:start + rng.randrange(250, 700)]


def make_doc(rng, revs, index, doc_type, pool):
    """One winner body, ~0.5-1 KB of JSON, with a 1-3 generation history."""
    ids = revs.history(rng.randrange(1, 4))
    doc = {
        '_id': revs.hex(),
        '_rev': f"{len(ids)}-{ids[0]}",
        '_revisions': {'start': len(ids), 'ids': ids},
        'doc_type': doc_type,
        'domain': f"domain-{index % 97}",
        'username': f"user{index}@example.com",
        'first_name': f"First{index % 1013}",
        'last_name': f"Last{index % 2027}",
        'is_active': bool(index % 7),
        'date_joined': f"2015-{1 + index % 12:02d}-{1 + index % 28:02d}T10:00:00Z",
        'user_data': {'index': index, 'group': index % 31, 'tags': ['a', 'b', str(index % 5)]},
        'notes': _padding(rng, pool),
    }
    return doc


def _conflict_branch(revs, doc, deleted):
    """A sibling branch off the doc's first revision: a conflict CouchDB keeps."""
    root = doc['_revisions']['ids'][-1]
    new = revs.hex()
    branch = {'_id': doc['_id'], '_rev': f"2-{new}", '_revisions': {'start': 2, 'ids': [new, root]}}
    if deleted:
        branch['_deleted'] = True
    else:
        branch.update({k: v for k, v in doc.items() if not k.startswith('_')})
        branch['notes'] = 'conflicting edit ' + doc['notes'][:100]
    return branch


def _tombstone(revs, doc):
    start = doc['_revisions']['start']
    new = revs.hex()
    return {'_id': doc['_id'], '_rev': f"{start + 1}-{new}", '_deleted': True,
            '_revisions': {'start': start + 1, 'ids': [new] + doc['_revisions']['ids']}}


def _attachment(rng):
    data = rng.randbytes(rng.randrange(200, 2000))
    return {'photo.jpg': {'content_type': 'image/jpeg', 'data': base64.b64encode(data).decode()}}


def generate(db, n, seed=1):
    """Write ``n`` docs to ``db`` (created fresh); returns the DataSet summary."""
    rng = random.Random(seed)
    revs = _Revs(rng)
    pool = ''.join(rng.choice(_ALPHABET) for _ in range(20000))
    summary = DataSet(db.name)
    db.recreate()
    batch, second_pass = [], []
    for index in range(n):
        migrating = index % 3 == 0
        types = MIGRATING_TYPES if migrating else OTHER_TYPES
        doc = make_doc(rng, revs, index, types[index % len(types)], pool)
        roll = rng.random()
        live = True
        if roll < CONFLICT_SHARE:
            if doc['_revisions']['start'] == 1:  # a sibling needs a parent to branch from
                doc['_revisions']['ids'].insert(0, revs.hex())
                doc['_revisions']['start'] = 2
                doc['_rev'] = f"2-{doc['_revisions']['ids'][0]}"
            second_pass.append(_conflict_branch(revs, doc, deleted=rng.random() < 1 / 3))
            summary.conflicted += 1
        elif roll < CONFLICT_SHARE + DELETED_SHARE:
            second_pass.append(_tombstone(revs, doc))
            summary.deleted += 1
            live = False
        elif roll < CONFLICT_SHARE + DELETED_SHARE + ATTACHMENT_SHARE:
            doc['_attachments'] = _attachment(rng)
            summary.with_attachments += 1
        summary.docs += 1
        summary.doc_types[doc['doc_type']] += 1
        summary.migrating += migrating
        summary.expected_in_target += migrating and live
        batch.append(orjson.dumps(doc))
        if len(batch) >= BATCH:
            summary.bytes += _flush(db, batch)
            batch = []
    summary.bytes += _flush(db, batch)
    for start in range(0, len(second_pass), BATCH):
        summary.bytes += _flush(db, [orjson.dumps(d) for d in second_pass[start:start + BATCH]])
    return summary


def _flush(db, encoded):
    if encoded:
        db.bulk_docs(encoded, new_edits=False)
    return sum(len(e) for e in encoded)
