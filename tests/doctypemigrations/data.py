"""A source database with every shape of document a migration meets."""
from tests.doctypemigrations.helpers import attachment, make_conflicted, put_history, rev

MIGRATING = ['CommCareUser', 'WebUser', 'Group', 'UserRole', 'CommCareUser-Deleted']
STAYING = ['Domain', 'XFormInstance']
SPECIAL_IDS = ['with/slash', 'with+plus', 'with space', 'nön-äscii-ユーザー']


def seed(db, n=20):
    """Returns (migrating ids, staying ids) of what it wrote."""
    migrating, staying = [], []
    docs = []
    for i in range(n):
        doc_type = MIGRATING[i % len(MIGRATING)]
        docs.append({'_id': f"m{i}", 'doc_type': doc_type, 'username': f"user{i}", 'domain': 'd'})
        migrating.append(f"m{i}")
        docs.append({'_id': f"s{i}", 'doc_type': STAYING[i % len(STAYING)], 'name': f"s{i}"})
        staying.append(f"s{i}")
    for i, doc_id in enumerate(SPECIAL_IDS):
        docs.append({'_id': doc_id, 'doc_type': 'WebUser', 'username': doc_id})
        migrating.append(doc_id)
    assert not [r for r in db.bulk_docs(docs) if 'error' in r]

    make_conflicted(db, 'conflicted', {'doc_type': 'CommCareUser', 'v': 'winner'},
                    {'doc_type': 'CommCareUser', 'v': 'loser'})
    migrating.append('conflicted')
    # a doc with a deleted losing leaf beside its live winner
    root = rev(1, 'b' * 32)
    put_history(db, 'deleted-leaf', [rev(3, 'c' * 32), rev(2, 'c1' * 16), root], {'doc_type': 'Group'})
    put_history(db, 'deleted-leaf', [rev(2, 'd' * 32), root], {}, deleted=True)
    migrating.append('deleted-leaf')
    db.put({'_id': 'with-attachment', 'doc_type': 'CommCareUser',
            '_attachments': {'photo.bin': attachment(bytes(range(256)) * 4)}})
    migrating.append('with-attachment')
    make_conflicted(db, 'staying-conflicted', {'doc_type': 'Domain'})
    staying.append('staying-conflicted')
    return migrating, staying
