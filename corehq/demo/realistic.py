"""Realistic data: one generator for the tests, the demo and the bench.

It writes through the apps' couchdbkit Document classes, into the databases
the settings bind them to (or all into ``db``), the way CommCare HQ's code
writes, so a database ends up in the shapes the migration meets in production.

API
---
``populate(total, seed=0, conflict_share=0.03, deleted_share=0.03, attachment_share=0.01,
plain_deleted_share=0.01, db=None) -> Summary``
    Writes ``total`` docs. Two thirds are of doc types that stay in the source
    (``STAYING_MIX``: forms, cases, domains), one third of users_migration's
    doc types in the proportions of the guide's ``--stats`` table
    (``MIGRATING_MIX``; every type the table counts gets at least one doc).
    Every doc is created with ``bulk_save``; about half are edited in one to
    three more ``bulk_save`` generations; soft-deleted types (``T-Deleted``,
    ``XFormArchived``) are saved as ``T`` first and renamed in their last
    generation. Of all docs, ``conflict_share`` get a branch written with
    ``bulk_save(new_edits=False)`` as replication leaves it (a third of them
    deleted branches, half of those with a body), ``deleted_share`` end as
    tombstones that kept their body and doc_type (``bulk_delete``: the same
    ``_deleted: true`` PUT of the whole doc as ``doc['_deleted'] = True;
    doc.save()``), ``plain_deleted_share`` end as plain tombstones ``{_id,
    _rev, _deleted}`` (``delete_docs(empty_on_delete=True)``: what
    ``delete()`` leaves) and ``attachment_share`` get an attachment
    (``put_attachment``). The ``Domain`` docs are each ``save()``d.
    The returned ``Summary`` has the counts per doc type and per shape, the
    ids of the docs of each shape and the ids of the live migrating docs.

``write_live(n=None, seconds=None, seed=0, db=None) -> Counter``
    Live traffic, for a writer running while ``--continuous`` follows:
    ``n`` writes (or as many as fit in ``seconds``), one ``SHAPES`` each,
    every shape once first (in order), then at random. Returns how many of
    each shape it wrote. It edits docs already in the database (a random
    slice of ``_all_docs``) and docs it creates.

``written_despite_conflicts(write, read, is_conflict, doc, tries=CONFLICT_TRIES)``
    What an application does when its write meets a 409 (another writer saved
    the doc first: a user, a task, or after the flip ``--continuous`` copying a
    newer revision from the source): read the doc again, make its change again
    on the fresh copy, save again, a bounded number of times. The live writer
    writes this way, and so do the tests' writers.

``delete(doc)`` and ``put_attachment(doc, content, name, content_type)``
    couchdbkit's ``Document.delete()`` and ``put_attachment()``, where they
    cannot be used as they are:

    - ``delete()`` reads the rev to delete from the doc's ETag (a HEAD). On
      CouchDB the ETag is the rev; pouchdb-server's is Express's body hash
      (``W/"c5-..."``), so the DELETE names a rev that does not exist and
      fails with ``ResourceNotFound``, deleting nothing. ``delete`` calls
      ``delete()`` on servers whose ETag is the rev, and elsewhere sends the
      same request with the doc's own rev (couchdbkit's
      ``Database.delete_doc(doc)``): both leave the plain tombstone CouchDB
      leaves.
    - this couchdbkit (jsonobject-couchdbkit) raises
      ``NoLongerSupportedException`` from ``put_attachment``;
      ``put_attachment`` here sends what couchdbkit 0.5's did: a PUT of the
      content to ``/db/doc/name?rev=``, through couchdbkit's session.

Note on ``doc._deleted = True; doc.save()``: with jsonobject-couchdbkit an
attribute starting with ``_`` is a plain Python attribute, never part of the
JSON, so that statement saves a new *live* revision. ``doc['_deleted'] = True``
reaches the JSON, and is what this module writes for a tombstone that keeps
its body.
"""
import base64
import hashlib
import random
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from urllib.parse import quote

from couchdbkit import Database
from couchdbkit.exceptions import ResourceConflict, ResourceNotFound
from requests import HTTPError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from corehq.apps.cases.models import CommCareCase
from corehq.apps.domain.models import Domain
from corehq.apps.forms.models import XFormInstance
from corehq.apps.groups.models import DeleteGroupRecord, Group
from corehq.apps.users.models import (
    AdminUserRole, CommCareUser, DomainRemovalRecord, Invitation, OrgRemovalRecord, UserRole, WebUser,
)

# The guide's `--stats` table (source column).
MIGRATING_MIX = {
    'CommCareUser': 82031, 'UserRole': 38102, 'Group': 20981, 'WebUser': 13151, 'Invitation': 8498,
    'DeleteGroupRecord': 2904, 'Group-Deleted': 2885, 'DomainRemovalRecord': 1259,
    'CommCareUser-Deleted': 1, 'OrgRemovalRecord': 1, 'AdminUserRole': 0,
}
# Docs that stay in the source, relative to each other.
STAYING_MIX = {'XFormInstance': 5500, 'CommCareCase': 3000, 'XFormArchived': 300,
               'CommCareCase-Deleted': 100, 'Domain': 100}
STAYING_SHARE = 2 / 3

CLASSES = {cls.__name__: cls for cls in (
    CommCareUser, WebUser, Invitation, UserRole, AdminUserRole, DomainRemovalRecord, OrgRemovalRecord,
    Group, DeleteGroupRecord, XFormInstance, CommCareCase, Domain)}
# A doc type that is a doc of another type renamed (a soft delete, an archived form).
RENAMED_FROM = {'XFormArchived': 'XFormInstance'}

SHAPES = ('created', 'bulk_saved', 'edited', 'soft_deleted', 'attachment', 'deleted_with_body',
          'deleted', 'conflict', 'deleted_conflict')
# How often write_live writes each shape once every shape has been written.
LIVE_WEIGHTS = {'created': 20, 'bulk_saved': 5, 'edited': 40, 'soft_deleted': 5, 'attachment': 5,
                'deleted_with_body': 8, 'deleted': 7, 'conflict': 6, 'deleted_conflict': 4}
# Extra generations after the first save: none for half the docs, up to three.
EXTRA_GENERATIONS = {0: 50, 1: 30, 2: 15, 3: 5}
BATCH = 500
# How many times a write that meets a 409 is made, as an app's save loop makes it.
CONFLICT_TRIES = 5
DOMAINS = ('demo-clinic', 'demo-school', 'demo-farm', 'maternal-health', 'wash-survey')


def base_doc_type(doc_type):
    """The doc type a doc is first saved as: ``Group`` for ``Group-Deleted``."""
    return RENAMED_FROM.get(doc_type) or doc_type.removesuffix('-Deleted')


def is_migrating(doc_type):
    return base_doc_type(doc_type) in MIGRATING_MIX


def mix(total, staying_share=STAYING_SHARE):
    """How many docs of each doc type ``total`` docs hold: the two mixes scaled
    by largest remainder, every type with a weight getting at least one doc
    while there are docs to give."""
    staying = round(total * staying_share)
    return {**_apportion(total - staying, MIGRATING_MIX), **_apportion(staying, STAYING_MIX)}


def _apportion(total, weights):
    counts = {name: 0 for name in weights}
    weighted = [name for name, weight in weights.items() if weight > 0]
    for name in weighted[:total]:
        counts[name] = 1
    left = total - sum(counts.values())
    if left <= 0:
        return counts
    whole = sum(weights[name] for name in weighted)
    shares = {name: left * weights[name] / whole for name in weighted}
    for name in weighted:
        counts[name] += int(shares[name])
    by_remainder = sorted(weighted, key=lambda name: shares[name] - int(shares[name]), reverse=True)
    for name in by_remainder[:total - sum(counts.values())]:
        counts[name] += 1
    return counts


@dataclass
class Summary:
    """What ``populate`` made."""
    total: int = 0
    doc_types: Counter = field(default_factory=Counter)        # every doc made, by its last doc_type
    live_doc_types: Counter = field(default_factory=Counter)   # docs whose winner is live
    shapes: Counter = field(default_factory=Counter)           # writes (docs) of each shape
    ids: dict = field(default_factory=lambda: defaultdict(list))   # shape -> ids of its docs
    migrating_ids: list = field(default_factory=list)          # live docs of migrating types
    max_generation: int = 0

    @property
    def migrating(self):
        return sum(n for doc_type, n in self.doc_types.items() if is_migrating(doc_type))

    def as_dict(self, with_ids=False):
        result = {'total': self.total, 'migrating': self.migrating, 'live_migrating': len(self.migrating_ids),
                  'doc_types': dict(self.doc_types), 'live_doc_types': dict(self.live_doc_types),
                  'shapes': dict(self.shapes), 'max_generation': self.max_generation}
        if with_ids:
            result.update(ids=dict(self.ids), migrating_ids=self.migrating_ids)
        return result


@contextmanager
def bound_to(db):
    """Every Document class of this module writes to ``db`` (a url or a
    couchdbkit Database) for the duration; None keeps the settings' binding."""
    if db is None:
        _retry_dropped_connections()
        yield
        return
    database = Database(db) if isinstance(db, str) else db
    saved = {cls: cls.__dict__.get('_db') for cls in CLASSES.values()}
    try:
        for cls in CLASSES.values():
            cls.set_db(database)
        _retry_dropped_connections()
        yield
    finally:
        for cls, previous in saved.items():
            cls._db = previous


def _retry_dropped_connections():
    """pouchdb-server (Node) closes a keep-alive connection after 5 s idle, and
    a request sent as it closes fails (RemoteDisconnected); couchdbkit's
    session retries nothing. Each is sent again: a write that had gone
    through then meets a conflict, never passes silently (the live writer
    then makes its change again, see written_despite_conflicts)."""
    retry = Retry(total=3, connect=3, read=2, status=0, other=0, allowed_methods=None, backoff_factor=0.1)
    for session in {id(cls.get_db()._request_session): cls.get_db()._request_session
                    for cls in CLASSES.values()}.values():
        for prefix in ('http://', 'https://'):
            session.mount(prefix, HTTPAdapter(max_retries=retry))


class _Bodies:
    """Doc bodies of each type, 0.3-1 KB of JSON like the real ones, from one seed."""

    def __init__(self, rng):
        self.rng = rng

    def new_id(self):
        return uuid.UUID(int=self.rng.getrandbits(128)).hex

    def when(self):
        return datetime(2015, 1, 1) + timedelta(seconds=self.rng.randrange(300_000_000))

    def new_doc(self, doc_type, index):
        base = base_doc_type(doc_type)
        return CLASSES[base](_id=self.new_id(), **self._fields(base, index))

    def _fields(self, doc_type, i):
        rng, domain = self.rng, DOMAINS[i % len(DOMAINS)]
        if doc_type in ('CommCareUser', 'WebUser'):
            fields = {'username': f"user{i}@{domain}.commcarehq.org", 'first_name': f"First{i % 1013}",
                      'last_name': f"Last{i % 2027}", 'is_active': bool(i % 7),
                      'user_data': {'district': f"d{i % 31}", 'language': rng.choice(['en', 'fr', 'hin']),
                                    'phone_numbers': [f"+2547{rng.randrange(10**8):08d}"]}}
            if doc_type == 'WebUser':
                fields['domains'] = rng.sample(DOMAINS, 2)
            else:
                fields['domain'] = domain
            return fields
        if doc_type in ('UserRole', 'AdminUserRole'):
            return {'domain': domain, 'name': rng.choice(['field worker', 'supervisor', 'admin', 'viewer']),
                    'permissions': rng.sample(['edit_data', 'view_reports', 'edit_users', 'edit_apps',
                                               'access_api', 'submit'], 3)}
        if doc_type == 'Group':
            return {'domain': domain, 'name': f"group {i}", 'case_sharing': bool(i % 3 == 0),
                    'users': [self.new_id() for _ in range(rng.randrange(1, 8))]}
        if doc_type == 'DeleteGroupRecord':
            return {'domain': domain, 'group_id': self.new_id()}
        if doc_type == 'Invitation':
            return {'domain': domain, 'email': f"invite{i}@example.com", 'invited_on': self.when()}
        if doc_type == 'DomainRemovalRecord':
            return {'domain': domain, 'user_id': self.new_id(), 'removed_on': self.when()}
        if doc_type == 'OrgRemovalRecord':
            return {'org': f"org{i % 11}", 'user_id': self.new_id(), 'removed_on': self.when()}
        if doc_type == 'XFormInstance':
            return {'domain': domain, 'xmlns': f"http://openrosa.org/formdesigner/{i % 40:04X}",
                    'app_id': f"app{i % 13}", 'received_on': self.when(),
                    'form': {f"question{q}": self._answer() for q in range(rng.randrange(5, 20))}}
        if doc_type == 'CommCareCase':
            return {'domain': domain, 'type': rng.choice(['patient', 'household', 'pregnancy']),
                    'name': f"case {i}", 'owner_id': self.new_id(), 'opened_on': self.when(),
                    'xform_ids': [self.new_id() for _ in range(rng.randrange(1, 6))]}
        if doc_type == 'Domain':
            return {'name': f"{domain}-{i}", 'is_active': True}
        raise ValueError(f"no body for {doc_type}")

    def _answer(self):
        rng = self.rng
        return rng.choice([rng.randrange(100), f"answer {rng.randrange(10**6)}", rng.random() < 0.5,
                           ' '.join(rng.choice(['yes', 'no', 'blue', 'green', 'village', 'water'])
                                    for _ in range(rng.randrange(1, 6)))])

    def edit(self, doc, generation):
        """An edit as an app makes it: one field changed, a trail of when."""
        when = datetime(2016, 1, 1) + timedelta(days=generation, seconds=self.rng.randrange(86400))
        doc['last_modified'] = when.isoformat() + 'Z'
        doc['edits'] = generation

    def attachment(self):
        return self.rng.randbytes(self.rng.randrange(200, 2000))


# ---- the write shapes ----------------------------------------------------------------------------

def written_despite_conflicts(write, read, is_conflict, doc, tries=CONFLICT_TRIES):
    """``write(doc)``, made again on ``read()``'s fresh copy each time it
    raises a conflict (``is_conflict(error)``): at most ``tries`` writes, the
    last conflict raised. Returns what ``write`` returned."""
    for attempt in range(1, tries + 1):
        try:
            return write(doc)
        except Exception as error:
            if attempt == tries or not is_conflict(error):
                raise
        doc = read()


def is_couchdbkit_conflict(error):
    """A 409, as couchdbkit raises it (``save()``) or lets it through (a DELETE, an attachment PUT)."""
    return isinstance(error, ResourceConflict) or (
        isinstance(error, HTTPError) and error.response is not None and error.response.status_code == 409)


def read_again(doc):
    """``doc`` as its database has it now, or None when it is deleted or no
    longer of a type of this module (retyped by another writer)."""
    try:
        fresh = doc.get_db().get(doc._id)
    except ResourceNotFound:
        return None
    cls = CLASSES.get(fresh.get('doc_type'))
    return cls.wrap(fresh) if cls is not None else None


def changed(doc, change):
    """``change(doc)``, a change that saves the doc, as an app makes it beside
    other writers (see written_despite_conflicts). Returns the doc as saved,
    or None when another writer deleted or retyped it meanwhile."""
    def write(current):
        if current is None:
            return None
        change(current)
        return current
    return written_despite_conflicts(write, lambda: read_again(doc), is_couchdbkit_conflict, doc)


_etag_is_rev = {}


def delete(doc):
    """``doc.delete()`` where it works, else the same DELETE with the doc's own rev
    (see the module docstring); the doc is then the plain tombstone's."""
    db = doc.get_db()
    if db.uri not in _etag_is_rev:
        _etag_is_rev[db.uri] = db.get_rev(doc._id) == doc._rev
    if _etag_is_rev[db.uri]:
        doc.delete()
    else:
        db.delete_doc(doc)


def put_attachment(doc, content, name, content_type):
    """couchdbkit 0.5's ``doc.put_attachment``: a standalone attachment PUT; the
    doc's ``_rev`` follows."""
    db = doc.get_db()
    response = db._request_session.put(
        db._database_path(f"{quote(doc._id, safe='')}/{quote(name, safe='')}"),
        params={'rev': doc._rev}, data=content, headers={'Content-Type': content_type})
    response.raise_for_status()
    doc._rev = response.json()['rev']
    # A stub keeps the attachment through the doc's next save, as on a doc read
    # back; pouchdb-server finds the attachment by its digest, which CouchDB
    # computes the same way.
    digest = 'md5-' + base64.b64encode(hashlib.md5(content).digest()).decode()
    doc._attachments = {**(doc._attachments or {}), name: {
        'stub': True, 'content_type': content_type, 'length': len(content), 'digest': digest}}


def replicated_branch(doc, parent_rev, new_id, deleted, with_body=True):
    """The leaf a replication brings in: an edit of ``parent_rev`` made on
    another server, a sibling of the doc's own leaf at the same generation."""
    generation, parent = parent_rev.split('-', 1)
    start = int(generation) + 1
    branch = dict(doc.to_json()) if with_body else {'_id': doc._id}
    branch.pop('_attachments', None)
    branch.update({'_rev': f"{start}-{new_id}", '_revisions': {'start': start, 'ids': [new_id, parent]}})
    if deleted:
        branch['_deleted'] = True
    elif with_body:
        branch['edited_elsewhere'] = True
    return branch


def save_branches(branches, db_of):
    """couchdbkit's ``bulk_save(new_edits=False)``: the replicator's write."""
    by_db = defaultdict(list)
    for branch, db in zip(branches, db_of):
        by_db[db].append(branch)
    for db, docs in by_db.items():
        for start in range(0, len(docs), BATCH):
            db.bulk_save(docs[start:start + BATCH], use_uuids=False, new_edits=False)


# ---- populate --------------------------------------------------------------------------------------

@dataclass
class _Planned:
    doc_type: str
    doc: object
    generations: int
    fate: str = 'live'
    revs: list = field(default_factory=list)


def populate(total, seed=0, conflict_share=0.03, deleted_share=0.03, attachment_share=0.01,
             plain_deleted_share=0.01, db=None):
    """Write ``total`` realistic docs; see the module docstring."""
    rng = random.Random(seed)
    bodies = _Bodies(rng)
    plan = _plan(total, rng, bodies, conflict_share, deleted_share, attachment_share, plain_deleted_share)
    summary = Summary(total=total)
    with bound_to(db):
        _write_generations(plan, bodies, summary)
        _write_attachments([p for p in plan if p.fate == 'attachment'], bodies, summary)
        _write_deletions(plan, summary)
        _write_conflicts([p for p in plan if p.fate.endswith('conflict')], bodies, summary)
    for p in plan:
        doc_type = p.doc.doc_type
        summary.doc_types[doc_type] += 1
        if p.fate not in ('deleted_with_body', 'deleted'):
            summary.live_doc_types[doc_type] += 1
            if is_migrating(doc_type):
                summary.migrating_ids.append(p.doc._id)
        summary.max_generation = max(summary.max_generation, len(p.revs))
    return summary


def _plan(total, rng, bodies, conflict_share, deleted_share, attachment_share, plain_deleted_share):
    doc_types = [doc_type for doc_type, n in mix(total).items() for _ in range(n)]
    rng.shuffle(doc_types)
    extra = list(EXTRA_GENERATIONS)
    plan = []
    for index, doc_type in enumerate(doc_types):
        generations = 1 + rng.choices(extra, weights=EXTRA_GENERATIONS.values())[0]
        if doc_type != base_doc_type(doc_type):
            generations = max(2, generations)    # saved as T, then renamed
        plan.append(_Planned(doc_type, bodies.new_doc(doc_type, index), generations))
    # Fates go to docs of kept doc types (a renamed doc is a shape of its own), in exact numbers.
    candidates = [p for p in plan if p.doc_type == base_doc_type(p.doc_type) and p.doc_type != 'Domain']
    rng.shuffle(candidates)
    fates = []
    conflicts = round(total * conflict_share)
    fates += ['deleted_conflict'] * (conflicts // 3) + ['conflict'] * (conflicts - conflicts // 3)
    fates += ['deleted_with_body'] * round(total * deleted_share)
    fates += ['deleted'] * round(total * plain_deleted_share)
    fates += ['attachment'] * round(total * attachment_share)
    for p, fate in zip(candidates, fates):
        p.fate = fate
        if fate.endswith('conflict'):
            p.generations = max(2, p.generations)   # the branch forks from an earlier revision
    return plan


def _write_generations(plan, bodies, summary):
    """Generation g of every doc that has one, in bulk: the first creates, the
    others edit; a renamed doc gets its new doc_type in its last one."""
    for generation in range(1, max(p.generations for p in plan) + 1):
        due = [p for p in plan if p.generations >= generation]
        if generation == 1:
            domains = [p for p in due if p.doc_type == 'Domain']
            for p in domains:
                p.doc.save()
                p.revs.append(p.doc._rev)
            summary.shapes['created'] += len(domains)
            summary.ids['created'] += [p.doc._id for p in domains]
            due = [p for p in due if p.doc_type != 'Domain']
        for p in due:
            if generation > 1:
                bodies.edit(p.doc, generation)
                if generation == p.generations and p.doc_type != p.doc.doc_type:
                    p.doc.doc_type = p.doc_type
                    summary.shapes['soft_deleted'] += 1
                    summary.ids['soft_deleted'].append(p.doc._id)
                else:
                    summary.shapes['edited'] += 1
        _bulk_save([p.doc for p in due])
        for p in due:
            p.revs.append(p.doc._rev)
        if generation == 1:
            summary.shapes['bulk_saved'] += len(due)
        elif due:
            summary.ids['edited'] += [p.doc._id for p in due if generation == 2]


def _bulk_save(docs):
    """couchdbkit's ``Document.bulk_save``, one class per request."""
    by_class = defaultdict(list)
    for doc in docs:
        by_class[type(doc)].append(doc)
    for cls, of_class in by_class.items():
        for start in range(0, len(of_class), BATCH):
            _in_request_order(cls.bulk_save, of_class[start:start + BATCH])


def _in_request_order(bulk_call, docs):
    """``bulk_call(docs)``, then each doc's own ``_id`` and ``_rev`` again.

    couchdbkit gives the i-th doc the i-th row of the ``_bulk_docs`` answer.
    CouchDB answers in request order; pouchdb-server (4.2, LevelDB) sometimes
    does not, so a doc would take another's id and rev, and its next save
    would overwrite that other doc. The (id, rev) pairs themselves are right.
    """
    ids = [doc._id for doc in docs]
    bulk_call(docs)
    revs = {doc._id: doc._rev for doc in docs}
    for doc, doc_id in zip(docs, ids):
        doc._id = doc_id
        doc._rev = revs[doc_id]


def _write_attachments(planned, bodies, summary):
    for p in planned:
        put_attachment(p.doc, bodies.attachment(), 'photo.jpg', 'image/jpeg')
        p.revs.append(p.doc._rev)
        summary.shapes['attachment'] += 1
        summary.ids['attachment'].append(p.doc._id)


def _write_deletions(plan, summary):
    with_body = [p.doc for p in plan if p.fate == 'deleted_with_body']
    by_class = defaultdict(list)
    for doc in with_body:
        by_class[type(doc)].append(doc)
    for cls, docs in by_class.items():
        for start in range(0, len(docs), BATCH):
            # sets '_deleted' on each whole doc and bulk_saves it: the body stays
            _in_request_order(cls.bulk_delete, docs[start:start + BATCH])
    plain = [p.doc for p in plan if p.fate == 'deleted']
    by_db = defaultdict(list)
    for doc in plain:
        by_db[doc.get_db()].append(doc)
    for db, docs in by_db.items():
        for start in range(0, len(docs), BATCH):
            # each doc emptied to {_id, _rev, _deleted}: what delete() leaves
            db.delete_docs([doc.to_json() for doc in docs[start:start + BATCH]], empty_on_delete=True)
    for shape, docs in (('deleted_with_body', with_body), ('deleted', plain)):
        summary.shapes[shape] += len(docs)
        summary.ids[shape] += [doc._id for doc in docs]


def _write_conflicts(planned, bodies, summary):
    branches = []
    for number, p in enumerate(planned):
        deleted = p.fate == 'deleted_conflict'
        branches.append(replicated_branch(p.doc, p.revs[-2], bodies.new_id(), deleted,
                                          with_body=not deleted or number % 2 == 0))
        summary.shapes[p.fate] += 1
        summary.ids[p.fate].append(p.doc._id)
    save_branches(branches, [p.doc.get_db() for p in planned])


# ---- live writes -----------------------------------------------------------------------------------

def write_live(n=None, seconds=None, seed=0, db=None):
    """``n`` writes, or as many as fit in ``seconds``; see the module docstring."""
    if n is None and seconds is None:
        raise ValueError("write_live needs n or seconds")
    rng = random.Random(seed)
    deadline = None if seconds is None else time.monotonic() + seconds
    written = Counter()
    with bound_to(db):
        writer = _LiveWriter(rng)
        for number in count():
            if (n is not None and number >= n) or (deadline is not None and time.monotonic() >= deadline):
                break
            shape = SHAPES[number] if number < len(SHAPES) else \
                rng.choices(list(LIVE_WEIGHTS), weights=LIVE_WEIGHTS.values())[0]
            writer.write(shape)
            written[shape] += 1
    return written


class _LiveWriter:
    """Writes one shape at a time, on a pool of live docs: a random slice of
    each database's ``_all_docs`` and the docs it creates."""

    POOL = 500

    def __init__(self, rng):
        self.rng = rng
        self.bodies = _Bodies(rng)
        self.pool = self._existing_docs()
        self.created = 0

    def _existing_docs(self):
        docs, seen = [], set()
        for cls in CLASSES.values():
            db = cls.get_db()
            if db.uri in seen:
                continue
            seen.add(db.uri)
            start = self.bodies.new_id()
            for descending in (False, True):
                rows = db.all_docs(include_docs=True, limit=self.POOL, startkey=start, descending=descending)
                for row in rows.all():
                    doc = row.get('doc') or {}
                    doc_type = doc.get('doc_type')
                    if doc_type in CLASSES and base_doc_type(doc_type) == doc_type:
                        docs.append(CLASSES[doc_type].wrap(doc))
        self.rng.shuffle(docs)
        return docs

    def _new(self):
        # half of the new docs of migrating types: the writes a follower has to copy
        weights = self.rng.choice([MIGRATING_MIX, STAYING_MIX])
        doc_types = [name for name, weight in weights.items() if weight and name == base_doc_type(name)]
        self.created += 1
        doc_type = self.rng.choices(doc_types, [weights[name] for name in doc_types])[0]
        return self.bodies.new_doc(doc_type, 10**6 + self.created)

    def _take(self, keep=True):
        """A live doc of the pool (removed from it unless ``keep``); a new one
        when the pool is empty."""
        if not self.pool:
            doc = self._new()
            doc.save()
            self.pool.append(doc)
        index = self.rng.randrange(len(self.pool))
        return self.pool[index] if keep else self.pool.pop(index)

    def _change(self, change, keep=True):
        """``change`` made to a doc of the pool, despite other writers (see
        ``changed``): the pool keeps the doc as saved, or drops one that
        another writer deleted meanwhile."""
        doc = self._take(keep)
        saved = changed(doc, change)
        if keep:
            index = next(i for i, pooled in enumerate(self.pool) if pooled is doc)
            if saved is None:
                del self.pool[index]
            else:
                self.pool[index] = saved
        return saved

    def write(self, shape):
        getattr(self, f"_{shape}")()

    def _created(self):
        doc = self._new()
        doc.save()
        self.pool.append(doc)

    def _bulk_saved(self):
        docs = [self._new() for _ in range(self.rng.randrange(2, 6))]
        _bulk_save(docs)
        self.pool += docs

    def _edited(self):
        def edit(doc):
            self.bodies.edit(doc, int(doc._rev.split('-')[0]) + 1)
            doc.save()
        self._change(edit)

    def _soft_deleted(self):
        def soft_delete(doc):
            doc.doc_type = 'XFormArchived' if doc.doc_type == 'XFormInstance' else f"{doc.doc_type}-Deleted"
            doc.save()
        self._change(soft_delete, keep=False)

    def _attachment(self):
        content, name = self.bodies.attachment(), f"photo{self.rng.randrange(100)}.jpg"
        self._change(lambda doc: put_attachment(doc, content, name, 'image/jpeg'))

    def _deleted_with_body(self):
        def delete_keeping_body(doc):
            doc['_deleted'] = True
            doc.save()
        self._change(delete_keeping_body, keep=False)

    def _deleted(self):
        self._change(delete, keep=False)

    def _conflict(self, deleted=False):
        # Out of the pool afterwards: its leaf may no longer win, and pouchdb-server
        # refuses an attachment PUT to a losing leaf (CouchDB takes it).
        parents = []

        def edit(doc):
            parents.append(doc._rev)
            self.bodies.edit(doc, int(doc._rev.split('-')[0]) + 1)
            doc.save()
        doc = self._change(edit, keep=False)
        if doc is None:
            return
        branch = replicated_branch(doc, parents[-1], self.bodies.new_id(), deleted,
                                   with_body=not deleted or self.rng.random() < 0.5)
        save_branches([branch], [doc.get_db()])

    def _deleted_conflict(self):
        self._conflict(deleted=True)
