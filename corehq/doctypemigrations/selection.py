"""Which documents a migration moves, and reading them with their full history."""
from collections import namedtuple

from corehq.couch import deepjson
from corehq.doctypemigrations.indexwait import catch_up
from corehq.doctypemigrations.inflight import SizesByBytes, scaled

# One document as the _changes feed shows it: its id, every leaf rev (deleted
# leaves too), the winning revision's body (None without include_docs) and
# whether the winner is a tombstone.
Change = namedtuple('Change', 'id leaf_revs doc deleted seq')

PAGE_BYTES = 4 * 1024 * 1024  # of docs in a feed page read with them


def is_replicated_id(doc_id):
    """Design docs belong to the apps' preindex, not to the migration."""
    return not doc_id.startswith(('_design/', '_local/'))


class DocTypeSelection:
    def __init__(self, doc_types):
        self.doc_types = frozenset(doc_types)

    def wants(self, change):
        """Whether the doc is live and its winning revision of a migrating doc type.

        A tombstone is never wanted, even one that kept its body and doc_type
        (couchdbkit's ``doc._deleted = True; doc.save()``): deletions are
        decided by id elsewhere (is the doc in the target?), so a doc deleted
        before the migration is not copied, whatever its tombstone holds.
        A doc_type that is not a string (a list, an object) is simply not one
        of the migrator's.
        """
        if change.deleted or change.doc is None or not is_replicated_id(change.id):
            return False
        return is_migrating_type(change.doc.get('doc_type'), self.doc_types)


def is_migrating_type(doc_type, doc_types):
    return isinstance(doc_type, str) and doc_type in doc_types


def parse_change(row):
    return Change(
        id=row['id'],
        leaf_revs=[entry['rev'] for entry in row['changes']],
        doc=row.get('doc'),
        deleted=bool(row.get('deleted')),
        seq=row.get('seq'),
    )


def changes_of(db, doc_ids):
    """The current change of each doc, with its winner's body and conflicts,
    as the follower reads its feed (a doc the db does not have is left out)."""
    if not doc_ids:
        return []
    page = db.json('POST', '_changes', body={'doc_ids': list(doc_ids)}, params={
        'filter': '_doc_ids', 'style': 'all_docs', 'include_docs': 'true', 'conflicts': 'true'})
    return [parse_change(row) for row in page['results']]


def reread(db, changes):
    """``changes`` as every copy holds them now (a doc gone from the db is
    left out), where a cluster may have listed them from a copy that had not
    caught up; a single server's feed is its own truth. Each is like the
    feed's: every leaf, the winner's body with its ``_conflicts``."""
    if db.copies() == 1 or not changes:
        return changes
    return _changes_from_leaves(db, [c.id for c in changes])


def current_changes(db, doc_ids):
    """The change of each doc the db has, as the feed shows it (every leaf,
    the winner's body with ``_conflicts``), as every copy holds it."""
    if _reads_leaves_by_id(db):
        return _changes_from_leaves(db, doc_ids)
    return changes_of(db, doc_ids)


def _changes_from_leaves(db, doc_ids):
    return [_change_of(doc_id, leaves) for doc_id, leaves in db.leaves(doc_ids).items()]


def _reads_leaves_by_id(db):
    """CouchDB (and Cloudant) answer ``_bulk_get`` by id with every leaf, as
    every copy holds them (see ``CouchDB.leaves``), and sooner than
    ``_all_docs`` with keys; pouchdb-server answers the winner alone."""
    return not db.is_pouchdb()


def current_winners(db, doc_ids, bodies=True):
    """{doc id: its winner's body with ``_conflicts``}, for the ids the db
    has, as the copies agree on them (see ``CouchDB.leaves``). A tombstone
    (which may have kept its body) has ``_deleted``; on pouchdb-server, a
    tombstone and, without ``bodies``, every doc is a stub (``_id``,
    ``_rev``, ``_deleted`` if so)."""
    if not doc_ids:
        return {}
    if _reads_leaves_by_id(db):
        return {change.id: change.doc for change in _changes_from_leaves(db, doc_ids)}
    rows = db.all_docs(keys=doc_ids, include_docs=bodies, conflicts=bodies)
    return {row['id']: row.get('doc') or _stub(row) for row in rows if 'value' in row}


def live_migrating(db, doc_types, doc_ids):
    """{doc id: live leaf revs, winner first} of the docs whose winner is
    live and of ``doc_types`` now, as every copy holds them: what a listing
    showed (from one copy, or delivered again) is never acted on as is."""
    winners = current_winners(db, [doc_id for doc_id in doc_ids if is_migrating_id(doc_id)])
    return {doc_id: live_leaves(doc) for doc_id, doc in winners.items()
            if not doc.get('_deleted') and is_migrating_type(doc.get('doc_type'), doc_types)}


def _stub(row):
    stub = {'_id': row['id'], '_rev': row['value']['rev']}
    if row['value'].get('deleted'):
        stub['_deleted'] = True
    return stub


def _change_of(doc_id, leaves):
    winner = winning_leaf(leaves)
    doc = {key: value for key, value in winner.items() if key != '_revisions'}
    conflicts = [leaf['_rev'] for leaf in leaves if leaf is not winner and not leaf.get('_deleted')]
    if conflicts:
        doc['_conflicts'] = conflicts
    return Change(doc_id, [leaf['_rev'] for leaf in leaves], doc, bool(winner.get('_deleted')), None)


def winning_leaf(leaves):
    """The leaf CouchDB shows: a live one over a deleted one, then the
    longest branch, then the greater revision id."""
    return max(leaves, key=lambda leaf: (not leaf.get('_deleted'), *_rev_order(leaf['_rev'])))


def _rev_order(rev):
    """CouchDB keeps a 32-hex-digit revision id as its 16 bytes, and any other
    as the text itself, and compares those bytes."""
    generation, rev_id = rev.split('-', 1)
    try:
        raw = bytes.fromhex(rev_id) if len(rev_id) == 32 else rev_id.encode()
    except ValueError:
        raw = rev_id.encode()
    return int(generation), raw


def missing_revs(db, revs_by_id):
    """{doc id: the given revs the db holds neither as a leaf nor in a leaf's
    history}, for the docs missing some. On a cluster ``_revs_diff`` may say
    "missing" from a copy that has not caught up: what it calls missing is
    asked again of every copy."""
    said = {doc_id: entry['missing'] for doc_id, entry in db.revs_diff(revs_by_id).items()
            if entry.get('missing')}
    if not said or db.copies() == 1:
        return said
    held = db.leaves(said)
    confirmed = {doc_id: [rev for rev in revs if rev not in known_revs(held.get(doc_id, []))]
                 for doc_id, revs in said.items()}
    return {doc_id: revs for doc_id, revs in confirmed.items() if revs}


def known_revs(leaves):
    """Every revision the leaves hold: themselves and their histories."""
    return {f"{leaf['_revisions']['start'] - i}-{rev_id}"
            for leaf in leaves for i, rev_id in enumerate(leaf['_revisions']['ids'])}


def scan_changes(db, page_size, since=None, conflicts=False, max_bytes=PAGE_BYTES, doc_types=None,
                 include_docs=True):
    """Page through the whole ``_changes`` feed with docs.

    Yields (changes, last_seq) per page; resuming from a yielded last_seq
    continues exactly after that page. Ends at the first short page: what is
    written later is the continuous phase's job. Pages carry the docs: they
    are smaller while the server rate-limits, and hold about ``max_bytes``
    of docs at most (see SizesByBytes; None: ``page_size`` rows whatever
    their size). ``include_docs=False`` reads ids, leaves and deleted states
    only, in pages of ``page_size`` rows.

    Given ``doc_types`` (where ``filters_by_selector``), the server keeps only
    the docs whose winning revision is of those types, and each change's
    leaves are the winner and its live conflicts, as the by_doc_type view's.
    """
    # rows without docs are small whatever the docs' size
    sizes = SizesByBytes(page_size, max_bytes) if max_bytes and include_docs else lambda: page_size
    params = {'conflicts': 'true'} if conflicts else {}
    body = None
    if doc_types is not None:
        # main_only: the selector is matched against the winner (with all_docs,
        # against each leaf: a losing leaf of a migrating type would match)
        params.update(filter='_selector', style='main_only', conflicts='true')
        body = {'selector': {'doc_type': {'$in': sorted(doc_types)}}}
    while True:
        limit = max(1, scaled(sizes(), db.budget))
        page = db.changes(since=since, limit=limit, include_docs=include_docs, body=body, **params)
        results = page['results']
        since = page['last_seq']
        if isinstance(sizes, SizesByBytes):
            sizes.saw(len(deepjson.dumps([row.get('doc') for row in results])), len(results))
        changes = [parse_change(row) for row in results]
        if doc_types is not None:
            changes = [c._replace(leaf_revs=live_leaves(c.doc)) if c.doc and not c.deleted else c
                       for c in changes]
        yield changes, since
        if is_feed_end(page, limit):
            return


def filters_by_selector(db):
    """Whether the server filters a changes feed by a Mango selector, in
    Erlang (CouchDB 2 and later, Cloudant). pouchdb-server's ``_selector``
    filter crashes it, so it is never asked there."""
    welcome = db.json('GET', server_level=True)
    major = str(welcome.get('version', '')).split('.')[0]
    return 'couchdb' in welcome and major.isdigit() and int(major) >= 2


def is_feed_end(page, limit):
    """Whether a ``_changes`` page asked with ``limit`` reached the feed's end:
    a short page, or a server that says nothing is pending (a full page may
    end the feed exactly; the next read then comes back empty)."""
    return len(page['results']) < limit or page.get('pending') == 0


def feed_length(info):
    """The rows of the whole ``_changes`` feed, from the database's info: one
    per doc, deleted ones too."""
    return info['doc_count'] + info.get('doc_del_count', 0)


BY_DOC_TYPE = ('all_docs', 'by_doc_type')


def doc_type_range(doc_type, after=None):
    """The by_doc_type view's key range of one doc type (its keys are
    [doc_type, doc id]), from ``after`` (a key, itself included) when given."""
    return {'startkey': after or [doc_type], 'endkey': [doc_type, {}]}


def has_doc_type_view(db):
    ddoc = db.get(f"_design/{BY_DOC_TYPE[0]}")
    return ddoc is not None and BY_DOC_TYPE[1] in ddoc.get('views', {})


def scan_doc_type_view(db, doc_types, page_size, position=None, stale=False, events=None):
    """Page through the docs of ``doc_types`` with the couchapps by_doc_type view.

    Far less to read than the whole feed when the doc types are a part of the
    database (and the view is already indexed, as the guide's preindex step
    ensures). Yields (changes, position); a position resumes after its page.
    Leaves are the winner and its live conflicts: a view does not see deleted
    leaves, which are no conflicts, and --continuous copies them with any later
    change of the doc. The changes carry no doc: every one is of ``doc_types``.

    ``stale`` reads the index as it is, without indexing what changed since
    (``indexing.catch_up`` brings it up to date).
    """
    if not stale:
        catch_up(db, *BY_DOC_TYPE, events)  # the first page would wait for it with a read timeout
    for doc_type in sorted(doc_types):
        if position is not None and doc_type < position[0]:
            continue
        after = position[1] if position and position[0] == doc_type else None
        while True:
            rows, changes = _view_leaves(db, doc_type, after, page_size, stale)
            if rows:
                after = rows[-1]['key']
            yield changes, [doc_type, after]
            if len(rows) < page_size:
                break
        position = None


def _view_leaves(db, doc_type, after, page_size, stale=False):
    """One page of rows and their changes (id and live leaf revs).

    The couchapps view emits the leaf revs; a by_doc_type view that does not
    (a design doc synced before it did) costs a second read, with the docs.
    """
    rows = _view_page(db, doc_type, after, page_size, stale=stale)
    if all(_is_rev_list(row['value']) for row in rows):
        return rows, [Change(row['id'], row['value'], None, False, None) for row in rows]
    rows = _view_page(db, doc_type, after, page_size, stale=stale, include_docs=True)
    return rows, [Change(row['id'], live_leaves(row['doc']), row['doc'], False, None)
                  for row in rows if row.get('doc')]


def live_leaves(doc):
    """A doc's live leaf revs, winner first, from a body read with conflicts."""
    return [doc['_rev']] + doc.get('_conflicts', [])


def _is_rev_list(value):
    return isinstance(value, list) and bool(value) and all(isinstance(rev, str) for rev in value)


def _view_page(db, doc_type, after, page_size, stale=False, include_docs=False):
    """Up to ``page_size`` rows of ``doc_type`` after the key ``after``.

    Paging starts at the last key seen and drops it, rather than skipping one
    row: if that doc was deleted meanwhile, skip would pass over the next one.
    """
    params = {'include_docs': True, 'conflicts': True} if include_docs else {}
    if stale:
        # stale=ok rather than update=false: pouchdb-server knows only the
        # former, and CouchDB 3 and Cloudant still accept it.
        params['stale'] = 'ok'
    rows = db.view(*BY_DOC_TYPE, reduce=False, limit=page_size + 1, **doc_type_range(doc_type, after),
                   **params)['rows']
    rows = [row for row in rows if row['key'] != after]
    return rows[:page_size]


def migrating_leaves(db, doc_types, page_size, events=None, fresh=False):
    """Pages of (doc id, live leaf revs with the winner first) of the docs of
    ``doc_types``, and how many docs each page scanned. Design docs and the
    cleanup's canaries are never listed.

    The by_doc_type view holds just those docs. It is brought up to date once
    and then read as it is: a caller that deletes would otherwise have the
    index catch up with its own deletions before every page. A row gone out
    of date since costs nothing worse than a conflict, because deletions name
    exact revs; paging by key is not thrown off by rows that leave the view.
    ``fresh`` brings the index up to date for every page instead, for a
    listing that must hold every doc the answering copies hold.
    Without the view, the whole feed is read.
    """
    if has_doc_type_view(db):
        catch_up(db, *BY_DOC_TYPE, events)
        for changes, _position in scan_doc_type_view(db, doc_types, page_size, stale=not fresh):
            yield [(c.id, c.leaf_revs) for c in changes if is_migrating_id(c.id)], len(changes)
        return
    selection = DocTypeSelection(doc_types)
    for changes, _seq in scan_changes(db, page_size, conflicts=True):
        yield [(c.id, live_leaves(c.doc)) for c in changes if selection.wants(c)], len(changes)


CANARY_PREFIX = 'doctype-migration-canary-'


def is_migrating_id(doc_id):
    """Design docs belong to the preindex, canaries to the cleanup's check
    for a running --continuous: neither is ever migrated."""
    return is_replicated_id(doc_id) and not doc_id.startswith(CANARY_PREFIX)


def leaf_pairs(changes):
    """(id, rev) of every leaf of the given changes, once each."""
    seen = set()
    pairs = []
    for change in changes:
        for rev in change.leaf_revs:
            if (change.id, rev) not in seen:
                seen.add((change.id, rev))
                pairs.append((change.id, rev))
    return pairs


def fetch_leaves(db, changes):
    """Every leaf revision of ``changes``, with ``_revisions`` and attachments inline.

    A leaf the server no longer has was replaced after the feed listed it; its
    successor comes later in the feed, so it is skipped here. Returns (docs, missing).
    """
    return db.bulk_get(leaf_pairs(changes))
