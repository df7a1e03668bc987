"""--verify, the flip gate, on data shaped as applications leave it, in every
phase: a faithful copy verifies clean, and each kind of difference it reports
is cleared by exactly the repair its hint names, in the phase it is printed in.
"""
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from corehq.doctypemigrations import state as states, verify
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.doctypemigrations.helpers import put_history, rev, run
from tests.doctypemigrations.test_status import dump_killed, status_json

SLUG = users_migration.slug


# -- the shapes couchdbkit applications write ------------------------------------------

def save(db, doc):
    """``Document.save()``: the whole doc, PUT with its rev."""
    doc = dict(doc)
    doc['_rev'] = db.put(doc)['rev']
    return doc


def delete_keeping_body(db, doc):
    """``doc._deleted = True; doc.save()``: a tombstone that keeps its body and doc_type."""
    return save(db, dict(doc, _deleted=True))


def delete(db, doc):
    """``Document.delete()``: a plain tombstone."""
    assert db.bulk_docs([{'_id': doc['_id'], '_rev': doc['_rev'], '_deleted': True}]) == []


def put_attachment(db, doc, name, data):
    """``doc.put_attachment(...)``: a new revision that adds the attachment."""
    response = db.request('PUT', f"{doc['_id']}/{name}", params={'rev': doc['_rev']}, body=data,
                          headers={'Content-Type': 'text/plain'})
    return dict(db.get(doc['_id']), _rev=response.json()['rev'])


def replicated_branches(db, doc_id, body):
    """A conflict as replication leaves it: a live and a deleted branch beside the winner."""
    root = rev(1, f"{doc_id}-root".encode().hex())
    put_history(db, doc_id, [rev(3, 'f' * 32), rev(2, 'e' * 32), root], body)
    put_history(db, doc_id, [rev(2, '1' * 32), root], dict(body, branch='live'))
    put_history(db, doc_id, [rev(2, '0' * 32), root], dict(body, branch='deleted'), deleted=True)


def every_shape(db, prefix):
    """One doc of each shape: ids by shape. Live migrating docs, docs of
    types that stay, and migrating docs deleted each way."""
    user = save(db, {'_id': f"{prefix}user", 'doc_type': 'CommCareUser', 'username': 'u'})
    for generation in range(3):
        user = save(db, dict(user, first_name=f"edit {generation}"))
    kept_body = save(db, {'_id': f"{prefix}kept-body", 'doc_type': 'WebUser', 'username': 'w'})
    delete_keeping_body(db, kept_body)
    plain = save(db, {'_id': f"{prefix}plain", 'doc_type': 'Group', 'name': 'g'})
    delete(db, plain)
    soft = save(db, {'_id': f"{prefix}soft", 'doc_type': 'Group', 'name': 's'})
    save(db, dict(soft, doc_type='Group-Deleted'))
    photo = save(db, {'_id': f"{prefix}photo", 'doc_type': 'CommCareUser', 'username': 'p'})
    put_attachment(db, photo, 'photo.txt', b'a picture' * 100)
    replicated_branches(db, f"{prefix}replicated", {'doc_type': 'UserRole', 'name': 'r'})
    db.bulk_docs([{'_id': f"{prefix}bulk{i}", 'doc_type': 'Invitation', 'email': f"{i}@x"} for i in range(5)])
    save(db, {'_id': f"{prefix}form", 'doc_type': 'XFormInstance', 'form': {}})
    staying = save(db, {'_id': f"{prefix}case", 'doc_type': 'CommCareCase'})
    delete_keeping_body(db, staying)


def edit_every_shape(db, prefix):
    """Writes of every shape to the docs ``every_shape`` made, as a live
    application makes them while --continuous follows."""
    user = db.get(f"{prefix}user")
    delete_keeping_body(db, user)
    save(db, dict(db.get(f"{prefix}photo"), first_name='changed'))
    soft = db.get(f"{prefix}soft")
    save(db, dict(soft, doc_type='Group'))  # restored from its soft delete
    delete(db, db.get(f"{prefix}bulk0"))
    replicated_branches(db, f"{prefix}new-replicated", {'doc_type': 'WebUser'})
    put_history(db, f"{prefix}replicated", [rev(3, '2' * 32), rev(2, '1' * 32)], {'doc_type': 'UserRole'},
                deleted=True)  # its live conflict deleted by a replicated edit
    every_shape(db, f"{prefix}new-")


# -- running the commands and their hints --------------------------------------------

def verify_output():
    """(stdout, error message or None) of --verify."""
    out = StringIO()
    try:
        call_command('run_doctype_migration', SLUG, '--verify', stdout=out, stderr=StringIO())
    except CommandError as e:
        return out.getvalue(), str(e)
    return out.getvalue(), None


def assert_clean():
    out, error = verify_output()
    assert error is None, f"{out}\n{error}"
    return out


def differences():
    """{kind: hint} as --verify prints them, which must fail."""
    out, error = verify_output()
    assert error is not None, out
    return dict(re.findall(r"^([a-z ,-]+): (.*)$", error.split('\n', 1)[1], re.M))


COMMAND = re.compile(r"`\./manage\.py ([^`]+)`")


def repairs_in(hint):
    """The commands a hint names, in order."""
    commands = [c.split() for c in COMMAND.findall(hint)]
    assert commands, f"no command in {hint!r}"
    return commands


def allowed_now(command):
    """Raises if the migration's phase refuses the command: a hint must never name one."""
    action = command[0] if command[0] == 'delete_doc_conflicts' else command[2].lstrip('-')
    states.check(action.replace('-', '_'), states.get(SLUG), SLUG)


def apply(hint):
    """Run exactly what the hint names, in order (non-interactively), each in
    a phase that runs it."""
    for command in repairs_in(hint):
        allowed_now(command)
        extra = ['--noinput', '--canary-wait', '0'] if '--cleanup' in command else []
        call_command(*command, *extra, stdout=StringIO(), stderr=StringIO())


# -- a faithful copy verifies clean in every phase -----------------------------------

def test_a_faithful_copy_of_every_shape_verifies_clean_in_every_phase(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'a-')
    run(SLUG, '--initial')
    out = assert_clean()
    # live migrating docs: user, photo, replicated, 5 bulk, and the soft-deleted Group-Deleted
    assert out.splitlines()[0] == "9 equal, 0 missing in target, 0 stale, 0 extra"
    # docs deleted before the migration are not copied: absent agrees with deleted
    assert target.get('a-kept-body') is None and target.get('a-plain') is None

    edit_every_shape(source, 'a-')
    run(SLUG, '--continuous', '--until-caught-up')
    out = assert_clean()
    assert out.splitlines()[0] == "16 equal, 0 missing in target, 0 stale, 0 extra"
    assert target.get('a-user') is None and target.get('a-new-kept-body') is None

    run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    out = assert_clean()
    assert out.splitlines()[0] == "16 moved, 0 left in source"
    assert 'kept its promise' in out


def test_a_tombstone_that_kept_its_body_is_judged_deleted_in_every_report(migration_dbs):
    source, target = migration_dbs
    doc = save(source, {'_id': 'gone', 'doc_type': 'CommCareUser', 'username': 'x'})
    delete_keeping_body(source, doc)
    tombstone_rev = source.all_docs(keys=['gone'])[0]['value']['rev']
    assert source.get('gone', rev=tombstone_rev)['doc_type'] == 'CommCareUser'
    out = StringIO()
    call_command('run_doctype_migration', SLUG, '--stats', stdout=out)
    assert re.search(r"^CommCareUser +0 +0$", out.getvalue(), re.M)
    run(SLUG, '--initial')
    assert target.get('gone') is None
    assert assert_clean().startswith('0 equal')


# -- each hint is a repair that works, in its phase ------------------------------------

def test_before_initial_the_hint_is_initial(migration_dbs):
    source, _ = migration_dbs
    every_shape(source, 'b-')
    found = differences()
    assert set(found) == {verify.MISSING}
    assert '--initial' in found[verify.MISSING] and '--continuous' in found[verify.MISSING]
    apply(found[verify.MISSING])
    assert_clean()


def test_a_dump_that_stopped_is_repaired_by_the_hint(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'c-')
    source.bulk_docs([{'_id': f"c-more{i}", 'doc_type': 'CommCareUser'} for i in range(40)])
    dump_killed(source, target)
    assert states.get(SLUG).phase == 'dumping'
    found = differences()
    assert verify.MISSING in found and 'phase dumping' in found[verify.MISSING]
    apply(found[verify.MISSING])
    assert_clean()


@pytest.mark.parametrize('make', ['new doc', 'edit', 'delete keeping body', 'delete', 'retype',
                                  'attachment'])
def test_what_continuous_mends_is_named_so_while_following(migration_dbs, make):
    source, _ = migration_dbs
    every_shape(source, 'd-')
    run(SLUG, '--initial')
    photo = source.get('d-photo')
    {
        'new doc': lambda: save(source, {'_id': 'd-late', 'doc_type': 'WebUser'}),
        'edit': lambda: save(source, dict(source.get('d-user'), first_name='late')),
        'delete keeping body': lambda: delete_keeping_body(source, source.get('d-user')),
        'delete': lambda: delete(source, source.get('d-user')),
        'retype': lambda: save(source, dict(source.get('d-user'), doc_type='SomethingElse')),
        'attachment': lambda: put_attachment(source, photo, 'second.txt', b'more'),
    }[make]()
    found = differences()
    kind = verify.MISSING if make == 'new doc' else verify.STALE
    assert set(found) == {kind} and '--continuous --until-caught-up' in found[kind]
    apply(found[kind])
    assert_clean()


def test_a_doc_only_in_the_target_is_mended_by_hand(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'e-')
    run(SLUG, '--initial')
    stray = save(target, {'_id': 'e-stray', 'doc_type': 'CommCareUser'})
    found = differences()
    assert set(found) == {verify.EXTRA} and found[verify.EXTRA].startswith('No command mends this')
    assert not COMMAND.findall(found[verify.EXTRA])
    delete(target, stray)  # what the hint says to do by hand
    assert_clean()


def test_a_leaf_only_in_the_target_is_mended_by_hand(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'f-')
    run(SLUG, '--initial')
    [winner], _ = target.bulk_get([('f-user', target.get('f-user')['_rev'])], attachments=False)
    history = winner['_revisions']
    parent = f"{history['start'] - 1}-{history['ids'][1]}"
    loser = put_history(target, 'f-user', [rev(history['start'], '0' * 32), parent], {'doc_type': 'x'})
    run(SLUG, '--continuous', '--until-caught-up')
    found = differences()
    assert set(found) == {verify.TARGET_ONLY}, found
    assert found[verify.TARGET_ONLY].startswith('No command mends this')
    assert not COMMAND.findall(found[verify.TARGET_ONLY])
    delete(target, {'_id': 'f-user', '_rev': loser})  # the conflict leaf, deleted by hand
    assert_clean()


def test_an_edit_made_in_the_target_is_never_sent_to_continuous(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'i-')
    run(SLUG, '--initial')
    save(target, dict(target.get('i-user'), first_name='edited in the target'))
    found = differences()
    assert set(found) == {verify.TARGET_ONLY}
    assert not COMMAND.findall(found[verify.TARGET_ONLY])  # --continuous would not mend it


def test_after_the_cleanup_a_doc_written_to_the_source_is_left_and_the_hint_cleans_it(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'g-')
    run(SLUG, '--initial')
    run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    save(source, {'_id': 'g-old-code', 'doc_type': 'CommCareUser'})  # old code, after the flip
    # a doc the cleanup deleted, written again by old code: created anew (CouchDB refuses an update of
    # the tombstone's rev), with its attachment's data (no earlier revision has it for a stub to name)
    photo = target.get('g-photo', attachments='true')
    save(source, {key: value for key, value in photo.items() if key != '_rev'})
    found = differences()
    assert set(found) == {verify.LEFT_IN_SOURCE}
    assert '--cleanup --copy-missing' in found[verify.LEFT_IN_SOURCE]
    apply(found[verify.LEFT_IN_SOURCE])
    out = assert_clean()
    assert target.get('g-old-code') is not None and ' 0 left in source' in out


def test_after_the_cleanup_a_deletion_of_a_revision_never_copied_is_named(migration_dbs):
    source, target = migration_dbs
    every_shape(source, 'h-')
    run(SLUG, '--initial')
    late = save(source, dict(source.get('h-user'), first_name='after the follower stopped'))
    delete(source, late)  # old code edits, then deletes, in the source
    run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    found = differences()
    assert set(found) == {verify.DELETED_UNCOPIED}
    assert found[verify.DELETED_UNCOPIED].startswith('No command mends this')
    # by hand, as the hint says: the source's branch copied into the target
    docs, _ = source.bulk_get([(row['id'], change['rev']) for row in source.changes_for_ids(['h-user'])
                               for change in row['changes']])
    assert target.bulk_docs(docs, new_edits=False) == []
    assert target.get('h-user') is None  # not edited in the target since: the deletion applies
    assert_clean()


# -- the project's realistic data, through every phase -------------------------------

def test_every_report_is_right_on_realistic_data_in_every_phase(migration_dbs):
    from corehq.demo import realistic
    source, target = migration_dbs
    summary = realistic.populate(600, seed=3)
    assert summary.shapes['deleted_with_body'] and summary.shapes['conflict']
    out = StringIO()
    call_command('run_doctype_migration', SLUG, '--stats', stdout=out)
    stats = dict(re.findall(r"^(\S+) +(\d+) +\d+$", out.getvalue(), re.M))
    live = {doc_type: n for doc_type, n in summary.live_doc_types.items()
            if doc_type in users_migration.all_doc_types}
    assert {t: int(n) for t, n in stats.items() if int(n)} == live
    run(SLUG, '--initial')
    counts = assert_clean().splitlines()[0]
    assert counts == f"{len(summary.migrating_ids)} equal, 0 missing in target, 0 stale, 0 extra"
    report, code = status_json()
    assert report['phase'] == 'following' and report['attention'] == ['follower_dead']  # none runs yet

    written = realistic.write_live(n=len(realistic.SHAPES) * 3, seed=4)
    assert set(written) == set(realistic.SHAPES)
    run(SLUG, '--continuous', '--until-caught-up')
    assert_clean()
    run(SLUG, '--cleanup', '--noinput', '--canary-wait', '0')
    assert ' 0 left in source' in assert_clean()
    report, code = status_json()
    assert code == 0 and report['phase'] == 'cleaned' and report['attention'] == []


def test_an_attachment_edited_after_it_was_added_verifies_clean_after_initial(migration_dbs):
    source, target = migration_dbs
    doc = save(source, {'_id': 'pic', 'doc_type': 'CommCareUser'})
    doc = put_attachment(source, doc, 'photo.txt', b'x' * 500)
    save(source, dict(doc, first_name='edited after the photo'))
    run(SLUG, '--initial')
    # pouchdb-server keeps the generation that carried the data, not the revpos sent (CouchDB keeps it)
    assert source.get('pic')['_attachments']['photo.txt']['revpos'] == 2
    assert_clean()
    save(source, dict(source.get('pic'), _attachments={'photo.txt': dict(
        content_type='text/plain', data='eQ==')}))  # a new photo: its digest and length differ
    assert set(differences()) == {verify.STALE}
    run(SLUG, '--continuous', '--until-caught-up')
    assert_clean()
