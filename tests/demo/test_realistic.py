"""corehq/demo/realistic.py writes every shape couchdbkit apps leave, in the guide's mix.

Every check reads the database itself (a census of its ``_changes`` feed and
each conflicted doc's leaves), not what the generator says it wrote.
"""
import json
from collections import Counter
from io import StringIO

import pytest
from couchdbkit.exceptions import ResourceNotFound
from django.core.management import call_command

from corehq.apps.users.models import CommCareUser
from corehq.couch import CouchDB
from corehq.demo import realistic
from corehq.demo.realistic import MIGRATING_MIX, SHAPES, is_migrating, mix, populate, write_live

PLAIN_TOMBSTONE_KEYS = {'_id', '_rev', '_deleted', '_revisions'}


def generation(rev):
    return int(rev.split('-', 1)[0])


def census(db):
    """What the database holds, doc by doc: {doc_id: Doc facts}, and the shape counts."""
    rows = {}
    for row in db.changes(include_docs=True)['results']:
        rows[row['id']] = row   # a replaying feed (--couch-proxy) repeats rows: one per doc
    docs = {}
    for doc_id, row in rows.items():
        if doc_id.startswith('_design/'):
            continue
        if len(row['changes']) > 1:
            leaves = [item['ok'] for item in db.open_revs(doc_id) if 'ok' in item]
        else:
            leaves = [row['doc']]
        docs[doc_id] = {'winner': row['doc'], 'leaves': leaves}
    return docs


def shapes_of(docs):
    counts = Counter()
    for facts in docs.values():
        winner, leaves = facts['winner'], facts['leaves']
        live_leaves = [leaf for leaf in leaves if not leaf.get('_deleted')]
        if winner.get('_deleted'):
            if set(winner) <= PLAIN_TOMBSTONE_KEYS:
                counts['plain_tombstone'] += 1
            elif winner.get('doc_type'):
                counts['tombstone_with_body'] += 1
            continue
        counts['live'] += 1
        doc_type = winner['doc_type']
        if doc_type.endswith('-Deleted') or doc_type == 'XFormArchived':
            counts['soft_deleted'] += 1
        if winner.get('_attachments'):
            counts['attachment'] += 1
        if len(live_leaves) > 1:
            counts['live_conflict'] += 1
        if len(live_leaves) < len(leaves):
            counts['deleted_conflict'] += 1
        counts[f"generation {min(generation(winner['_rev']), 3)}+"] += 1
    return counts


def live_doc_types(docs):
    return Counter(facts['winner']['doc_type'] for facts in docs.values()
                   if not facts['winner'].get('_deleted'))


@pytest.fixture
def populated(couch_settings, source_db):
    return populate(600, seed=3), source_db


def test_every_shape_written_is_in_the_database(populated):
    summary, db = populated
    docs = census(db)
    found = shapes_of(docs)
    assert all(summary.shapes[shape] > 0 for shape in SHAPES), summary.shapes
    assert found['tombstone_with_body'] == summary.shapes['deleted_with_body'] == 18
    assert found['plain_tombstone'] == summary.shapes['deleted'] == 6
    assert found['soft_deleted'] == summary.shapes['soft_deleted'] > 0
    assert found['attachment'] == summary.shapes['attachment'] == 6
    assert found['live_conflict'] == summary.shapes['conflict'] == 12
    assert found['deleted_conflict'] == summary.shapes['deleted_conflict'] == 6
    assert found['generation 3+'] > 0 and found['generation 2+'] > 0 and found['generation 1+'] > 0
    assert found['live'] + found['tombstone_with_body'] + found['plain_tombstone'] == 600
    assert live_doc_types(docs) == summary.live_doc_types


def test_tombstones_keep_their_body_or_are_plain_as_delete_leaves_them(populated):
    summary, db = populated
    for doc_id in summary.ids['deleted_with_body']:
        [leaf] = [item['ok'] for item in db.open_revs(doc_id)]
        assert leaf['_deleted'] is True
        assert leaf['doc_type'] in realistic.CLASSES and len(leaf) > len(PLAIN_TOMBSTONE_KEYS) + 1
        assert db.get(doc_id) is None
    for doc_id in summary.ids['deleted']:
        [leaf] = [item['ok'] for item in db.open_revs(doc_id)]
        assert set(leaf) == PLAIN_TOMBSTONE_KEYS and leaf['_deleted'] is True
        assert generation(leaf['_rev']) >= 2


def test_conflicts_are_sibling_branches_as_replication_leaves_them(populated):
    summary, db = populated
    for shape, deleted_leaves in (('conflict', 0), ('deleted_conflict', 1)):
        for doc_id in summary.ids[shape]:
            leaves = [item['ok'] for item in db.open_revs(doc_id)]
            assert len(leaves) == 2
            assert sum(bool(leaf.get('_deleted')) for leaf in leaves) == deleted_leaves
            # siblings: the same generation, forked from the same parent revision
            assert leaves[0]['_revisions']['start'] == leaves[1]['_revisions']['start'] >= 2
            assert leaves[0]['_revisions']['ids'][1] == leaves[1]['_revisions']['ids'][1]
            winner = db.get(doc_id, conflicts=True)
            assert winner is not None and not winner.get('_deleted')
            # a deleted leaf is no conflict (pouchdb-server ignores deleted_conflicts=true)
            assert len(winner.get('_conflicts', [])) == 1 - deleted_leaves


def test_soft_deletes_and_attachments(populated):
    summary, db = populated
    for doc_id in summary.ids['soft_deleted']:
        doc = db.get(doc_id, revs='true')
        assert doc['doc_type'].endswith('-Deleted') or doc['doc_type'] == 'XFormArchived'
        assert doc['_revisions']['start'] >= 2     # saved under its first doc_type, then renamed
    for doc_id in summary.ids['attachment']:
        stub = db.get(doc_id)['_attachments']['photo.jpg']
        content = db.request('GET', f"{doc_id}/photo.jpg").content
        assert stub['content_type'] == 'image/jpeg' and len(content) == stub['length'] >= 200


def test_the_doc_type_mix_follows_the_guides_table_and_staying_docs_outnumber_migrating_ones(
        couch_settings, source_db):
    summary = populate(3000, seed=5)
    found = live_doc_types(census(source_db))
    migrating = {doc_type: n for doc_type, n in found.items() if is_migrating(doc_type)}
    staying = sum(found.values()) - sum(migrating.values())
    assert staying > 1.5 * sum(migrating.values()) > 0
    table_total = sum(MIGRATING_MIX.values())
    for doc_type, in_table in MIGRATING_MIX.items():
        share = migrating.get(doc_type, 0) / sum(migrating.values())
        assert share == pytest.approx(in_table / table_total, abs=0.01), doc_type
        assert (doc_type in migrating) == (in_table > 0), doc_type
    assert sorted(summary.migrating_ids) == sorted(
        doc_id for doc_id, facts in census(source_db).items()
        if not facts['winner'].get('_deleted') and is_migrating(facts['winner']['doc_type']))


def test_mix_is_the_table_scaled_with_every_counted_type_present():
    for total in (30, 1000, 100_000):
        counts = mix(total)
        assert sum(counts.values()) == total
        migrating = {doc_type: counts[doc_type] for doc_type in MIGRATING_MIX}
        assert sum(migrating.values()) == round(total / 3)
        assert counts['AdminUserRole'] == 0
        assert all(counts[doc_type] >= 1 for doc_type, n in MIGRATING_MIX.items() if n)
    big = mix(100_000)
    assert big['CommCareUser'] == pytest.approx(100_000 / 3 * 82031 / sum(MIGRATING_MIX.values()), rel=1e-3)


def test_write_live_writes_every_shape_at_least_once(couch_settings, source_db):
    populate(300, seed=2)
    before_docs = census(source_db)
    before = shapes_of(before_docs)
    written = write_live(n=len(SHAPES), seed=4)
    after_docs = census(source_db)
    after = shapes_of(after_docs)
    assert written == Counter(SHAPES)
    for shape in ('tombstone_with_body', 'plain_tombstone', 'soft_deleted', 'attachment', 'live_conflict',
                  'deleted_conflict'):
        assert after[shape] > before[shape], shape
    new_ids = set(after_docs) - set(before_docs)
    assert len(new_ids) >= 3     # one save() and a bulk_save of two or more
    changed = [doc_id for doc_id, facts in before_docs.items()
               if generation(after_docs[doc_id]['winner']['_rev']) > generation(facts['winner']['_rev'])]
    assert len(changed) >= 5     # seven shapes change a doc of the pool (two may pick the same one)
    edited = [doc_id for doc_id in changed if not after_docs[doc_id]['winner'].get('_deleted')
              and after_docs[doc_id]['winner']['doc_type'] == before_docs[doc_id]['winner']['doc_type']
              and len(after_docs[doc_id]['leaves']) == 1 and 'edits' in after_docs[doc_id]['winner']
              and not after_docs[doc_id]['winner'].get('_attachments')]
    assert edited


def test_delete_leaves_a_plain_tombstone_where_couchdbkits_delete_fails(couch_settings, source_db):
    user = CommCareUser(username='gone@demo', domain='demo')
    user.save()
    doc_id = user._id
    # pouchdb-server's ETag is not the rev: couchdbkit's delete() asks to delete a rev that is not
    # there; CouchDB's is, and realistic.delete calls delete() itself there
    if source_db.request('HEAD', doc_id).headers['ETag'].strip('"') != user._rev:
        with pytest.raises(ResourceNotFound):
            CommCareUser.get(doc_id).delete()
        assert source_db.get(doc_id)['username'] == 'gone@demo'
    realistic.delete(user)
    [leaf] = [item['ok'] for item in source_db.open_revs(doc_id)]
    assert set(leaf) == PLAIN_TOMBSTONE_KEYS and leaf['_rev'].startswith('2-')


def test_deleted_must_be_set_as_an_item_to_reach_the_json(couch_settings, source_db):
    user = CommCareUser(username='kept@demo', domain='demo')
    user.save()
    user._deleted = True      # a Python attribute only, with jsonobject-couchdbkit
    user.save()
    assert source_db.get(user._id)['_rev'].startswith('2-')
    user['_deleted'] = True
    user.save()
    assert source_db.get(user._id) is None
    [leaf] = [item['ok'] for item in source_db.open_revs(user._id)]
    assert leaf['_deleted'] is True and leaf['username'] == 'kept@demo' and leaf['doc_type'] == 'CommCareUser'


def test_an_attachment_survives_the_docs_next_save(couch_settings, source_db):
    user = CommCareUser(username='photo@demo', domain='demo')
    user.save()
    realistic.put_attachment(user, b'\x89PNG not really', 'photo.png', 'image/png')
    user.first_name = 'After'
    user.save()
    doc = source_db.get(user._id)
    assert doc['first_name'] == 'After' and doc['_rev'].startswith('3-')
    assert source_db.request('GET', f"{user._id}/photo.png").content == b'\x89PNG not really'


def test_populate_into_a_given_database_leaves_the_settings_binding_alone(couch_settings, source_db):
    other_url = f"{couch_settings.db_url(None)}_other"  # with the credentials, which other.url has not
    other = CouchDB(other_url)
    other.create()
    summary = populate(60, seed=1, db=other_url)
    assert len(live_doc_types(census(other))) > 3
    assert sum(live_doc_types(census(other)).values()) == sum(summary.live_doc_types.values())
    assert CommCareUser.get_db().uri == CouchDB(couch_settings.db_url(None)).url  # both without credentials
    assert live_doc_types(census(source_db)) == Counter()


def test_bulk_saved_docs_keep_their_own_id_and_rev(couch_settings, source_db):
    """pouchdb-server sometimes answers _bulk_docs out of request order; couchdbkit
    would then swap ids and revs between the docs of a batch."""
    users = [CommCareUser(_id=f"user-{i:04d}", username=f"u{i}@demo", domain='demo') for i in range(1500)]
    for _ in range(2):     # created, then edited
        realistic._bulk_save(users)
        stored = {row['id']: row['doc'] for row in source_db.all_docs(include_docs=True)}
        assert all(stored[user._id]['_rev'] == user._rev and stored[user._id]['username'] == user.username
                   for user in users)
        for user in users:
            user.first_name = 'edited'


def test_the_commands_write_through_the_generator(couch_settings, source_db):
    out = StringIO()
    call_command('realistic_data', docs=90, seed=1, as_json=True, stdout=out)
    made = json.loads(out.getvalue())
    assert made['total'] == 90 and made['migrating'] == 30
    assert sum(live_doc_types(census(source_db)).values()) == sum(made['live_doc_types'].values())
    out = StringIO()
    call_command('demo_writer', writes=len(SHAPES), stdout=out)
    assert out.getvalue().strip() == ', '.join(f"1 {shape}" for shape in SHAPES)
