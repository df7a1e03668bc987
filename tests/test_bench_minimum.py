"""bench.minimum, the server's minimum the bench measures --initial against:
what it reads and writes must be the whole selection, histories kept, or its
time is the floor of a smaller job."""
from bench import minimum
from bench.couchclient import Server
from corehq.demo.realistic import populate
from corehq.doctypemigrations.migrator_instances import users_migration


def test_read_alone_then_write_alone_copy_every_selected_leaf_with_its_history(
        migration_dbs, couch_url, db_prefix):
    summary = populate(200, seed=7, conflict_share=0.1, attachment_share=0.05, db=f"{couch_url}/{db_prefix}")
    server = Server(couch_url)
    source, target = server.db(db_prefix), server.db(f"{db_prefix}__minimum")
    target.create()
    leaves = minimum.Leaves(source, users_migration.all_doc_types)

    read = minimum.read_alone(leaves)
    written = minimum.write_alone(leaves, target)

    wanted = set(summary.migrating_ids)
    assert read.docs == written.docs == len(wanted)
    copied = {row['id'] for row in target.json('GET', '_all_docs')['rows']}
    assert copied == wanted
    for doc_id in sorted(wanted):
        original = source.get(doc_id, revs='true', conflicts='true')
        copy = target.get(doc_id, revs='true', conflicts='true')
        # the same winner, history and live conflicts: written with new_edits=false
        assert (copy['_rev'], copy['_revisions'], sorted(copy.get('_conflicts', []))) == \
            (original['_rev'], original['_revisions'], sorted(original.get('_conflicts', [])))
        assert {name: a['digest'] for name, a in copy.get('_attachments', {}).items()} == \
            {name: a['digest'] for name, a in original.get('_attachments', {}).items()}
