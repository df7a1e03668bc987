"""The source data: corehq/demo/realistic.py's, the shapes the migration meets in production.

Written through the apps' couchdbkit Document classes, as the demo and the
tests write it: the guide's doc-type mix for a third of the docs, forms, cases
and domains for the rest; histories of one to four generations; 3% with a
replicated conflict (a third of them a deleted branch), 3% whose winner is a
tombstone that kept its body, 1% plain tombstones, 1% with an attachment,
soft deletes (``T-Deleted``).
"""
from collections import Counter
from dataclasses import dataclass, field

# The lag writer's doc types (bench/lag.py): every one is in users_migration's
# doc types, -Deleted variants included, or stays in the source.
MIGRATING_TYPES = ('CommCareUser', 'CommCareUser', 'CommCareUser', 'WebUser', 'Group', 'UserRole',
                   'Invitation', 'DeleteGroupRecord', 'CommCareUser-Deleted', 'Group-Deleted')
OTHER_TYPES = ('XFormInstance', 'XFormInstance', 'CommCareCase', 'CommCareCase', 'Domain',
               'Application', 'XFormArchived', 'CommCareCase-Deleted', 'SyncLog', 'RepeatRecord')

CONFLICT_SHARE = 0.03     # docs with a second live (or, a third of them, deleted) branch
DELETED_SHARE = 0.03      # docs whose winner is a tombstone that kept its body and doc_type
PLAIN_DELETED_SHARE = 0.01    # docs whose winner is a plain tombstone, as delete() leaves it
ATTACHMENT_SHARE = 0.01   # docs with a small attachment


@dataclass
class DataSet:
    db_name: str
    docs: int = 0
    migrating: int = 0
    conflicted: int = 0
    deleted: int = 0              # winner a tombstone, with its body or plain
    with_attachments: int = 0
    expected_in_target: int = 0   # live docs of migrating types: what every copy must end with
    doc_types: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)

    def as_dict(self):
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}


def generate(db, n, seed=1):
    """Write ``n`` docs to ``db`` (a bench Database, created fresh); returns the DataSet summary.

    Django must be set up (bench.main.migrating_doc_types does it): the
    generator writes through the apps' Document classes."""
    from corehq.demo.realistic import populate
    db.recreate()
    summary = populate(n, seed=seed, conflict_share=CONFLICT_SHARE, deleted_share=DELETED_SHARE,
                       plain_deleted_share=PLAIN_DELETED_SHARE, attachment_share=ATTACHMENT_SHARE,
                       db=f"{db.server.url}/{db.name}")
    shapes = summary.shapes
    return DataSet(db.name, docs=summary.total, migrating=summary.migrating,
                   conflicted=shapes['conflict'] + shapes['deleted_conflict'],
                   deleted=shapes['deleted_with_body'] + shapes['deleted'],
                   with_attachments=shapes['attachment'], expected_in_target=len(summary.migrating_ids),
                   doc_types=summary.doc_types, shapes=shapes)
