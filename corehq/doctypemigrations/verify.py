"""The --verify phase: does the target hold what the migration promises, in
the phase the migration is in?

Until the cleanup starts, the target must be a copy: for every migrating id
the winning rev, the deleted state, the set of conflict leaves and the
winner's attachments match. A doc deleted in the source agrees with a target
that never had it (``--initial`` does not copy docs deleted before it) or
holds it deleted; a tombstone is judged by its deleted state, never as a live
doc because it kept its body and doc_type.

Once the cleanup has started, the source's migrated docs are tombstones by
design, and the target is the live database: what is checked is what the
cleanup promises. No migrating doc is live in the source, and for every doc
the source deleted while the target holds it live, the target holds the
revision the source deleted (so nothing the source had was lost). New docs
in the target are the application's, not differences.

Both databases are streamed page by page. Before the cleanup the source's
feed gives the migrating docs (filtered by the server where it can, see
``source_feed``), each compared with its copy; the target's feed, read
without bodies, gives the live docs that comparison did not cover (the
source deleted them, changed their type or never had them), each then read
from both sides.
"""
import itertools
import logging
from collections import Counter, namedtuple

from corehq.couch import copies
from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.attachments import attachment_summary
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.follower import CONFLICT_DELETED_IN_TARGET, TARGET_ONLY_LEAF
from corehq.doctypemigrations.idhash import id_hash
from corehq.doctypemigrations.inflight import ordered, parts
from corehq.doctypemigrations.models import CLEANED, CLEANING
from corehq.doctypemigrations.selection import (
    DocTypeSelection, current_changes, current_winners, feed_length, filters_by_selector, is_replicated_id,
    missing_revs, reread, scan_changes,
)

log = logging.getLogger(__name__)

EQUAL, MISSING, STALE, EXTRA = 'equal', 'missing in target', 'stale', 'extra'
# Stale in a way that no --continuous will mend (see follower.Divergence).
CONFLICT_DELETED, TARGET_ONLY = CONFLICT_DELETED_IN_TARGET, TARGET_ONLY_LEAF
# Once the cleanup has started: deleted in the source and held by the target;
# still live in the source; deleted in the source after a revision the target
# never got.
MOVED, LEFT_IN_SOURCE, DELETED_UNCOPIED = 'moved', 'left in source', 'deleted in source, never copied'

# What a phase can report, in the order printed; the first ones are printed
# even at zero, so that a clean run reads as a count of each.
COPY_OUTCOMES = (EQUAL, MISSING, STALE, EXTRA, CONFLICT_DELETED, TARGET_ONLY)
CLEANUP_OUTCOMES = (MOVED, LEFT_IN_SOURCE, DELETED_UNCOPIED)
ALWAYS_SHOWN = {EQUAL, MISSING, STALE, EXTRA, MOVED, LEFT_IN_SOURCE}
AGREEING = {EQUAL, MOVED}

VerifyResult = namedtuple('VerifyResult', 'phase counts differing follower_running', defaults=(False,))
SOURCE_STAGE, TARGET_STAGE = 'Verifying the source', 'Verifying the target'
# seconds a cluster's copies may take to agree before the source feed is filtered
SETTLE_WAIT = 30


def run_verify(migrator, source, target, page_size=1000, keep=20, workers=1, events=None):
    """The --verify entry point: reads the migration's phase (it runs in every
    phase, changing nothing) and checks what that phase promises."""
    state = states.open_state(migrator, source, target)
    result = verify(migrator, source, target, states.phase(state), page_size, keep, workers, events)
    # which repair a hint can name: a second --continuous would be refused
    return result._replace(follower_running=claims.running_action(state) == claims.CONTINUOUS)


def verify(migrator, source, target, phase=states.NEW, page_size=1000, keep=20, workers=1, events=None):
    selection = DocTypeSelection(migrator.all_doc_types)
    tally = _Tally(keep)
    if is_after_cleanup_started(phase):
        checks = [(SOURCE_STAGE, scan_changes(source, page_size), _feed_total(source),
                   lambda changes: cleanup_outcomes(source, target, selection, changes))]
    else:
        revpos = keeps_revpos(target)
        pages, total = source_feed(source, selection.doc_types, page_size)
        checks = [(SOURCE_STAGE, pages, total,
                   lambda changes: copy_outcomes(source, target, selection, changes, revpos)),
                  (TARGET_STAGE, scan_changes(target, page_size, include_docs=False),
                   _feed_total(target),
                   lambda changes: uncovered_in_target(source, target, selection, changes, tally.judged,
                                                       revpos))]
    events = events or Events()
    for stage, pages, total, check in checks:
        _check_feed(stage, pages, total, check, source.budget, workers, tally, events)
    return VerifyResult(phase, tally.counts, tally.differing)


def source_feed(source, doc_types, page_size):
    """(pages of the source's feed, its length or None) for the copy check,
    which needs the migrating docs (and judges only those).

    A server that filters by a Mango selector sends only them: a fraction of
    the database. A cluster's filtered feed takes each shard range from one
    copy, which would leave out a doc a lagging copy has of another type, so
    it is filtered only once the copies agree; otherwise, and on a server that
    cannot filter, the whole feed is read and the docs are filtered here."""
    if filters_by_selector(source) and _copies_agree(source):
        return scan_changes(source, page_size, conflicts=True, doc_types=doc_types), None
    return scan_changes(source, page_size, conflicts=True), _feed_total(source)


def _copies_agree(db):
    unsettled = copies.why_unsettled(db, SETTLE_WAIT)
    if unsettled:
        log.warning("%s: reading the whole feed, the copies are not in step (%s)", db.display_url, unsettled)
    return not unsettled


def _feed_total(db):
    return lambda: feed_length(db.info())


def is_after_cleanup_started(phase):
    return phase in (CLEANING, CLEANED)


def outcomes_of(phase):
    return CLEANUP_OUTCOMES if is_after_cleanup_started(phase) else COPY_OUTCOMES


def is_clean(result):
    return set(result.counts) <= AGREEING


class _Tally:
    """The outcome of each doc, counted once however often a feed delivers
    it (a cluster's feed delivers at least once: after a node leaves or
    comes back, it may rewind a shard range far back); a doc delivered again
    is judged by its latest reading. Held by an 8-byte digest of the id (the
    id itself for the differing ones, which are named): a few dozen bytes per
    doc."""

    def __init__(self, keep):
        self.keep = keep
        self._outcomes = {}

    def record(self, doc_id, outcome):
        key = id_hash(doc_id)
        if outcome is None:
            # nothing to say: e.g. deleted in both, or never migrating
            self._outcomes.pop(key, None)
        else:
            self._outcomes[key] = outcome if outcome in AGREEING else (outcome, doc_id)

    def judged(self, doc_id):
        """Whether the doc has an outcome (a read from another thread is safe:
        one dict lookup)."""
        return id_hash(doc_id) in self._outcomes

    @property
    def counts(self):
        return Counter(value if isinstance(value, str) else value[0] for value in self._outcomes.values())

    @property
    def differing(self):
        named = (value for value in self._outcomes.values() if not isinstance(value, str))
        return [(doc_id, outcome) for outcome, doc_id in itertools.islice(named, self.keep)]


def _check_feed(stage, pages, total, check, budget, workers, tally, events):
    def in_parts(page):
        # a page is checked in smaller parts while the server rate-limits
        changes = [c for c in page[0] if is_replicated_id(c.id)]
        return [outcome for part in parts(changes, budget) for outcome in check(part)]

    events.stage(stage, total=total, unit='changes')
    try:
        for page, outcomes in ordered(pages, in_parts, workers, budget):
            for doc_id, outcome in outcomes:
                tally.record(doc_id, outcome)
            events.advanced(stage, len(page[0]))
    finally:
        events.stage_done(stage)


# -- before the cleanup: the target is a copy ---------------------------------------

def summary(rev, deleted, doc, revpos=True):
    """What must match: the winning rev, the deleted state, the live conflict
    leaves and the winner's attachments (revpos, digest, length, content
    type; ``doc``: the winner's body, if read). ``revpos=False`` leaves revpos
    out, for a target that does not keep it."""
    doc = doc or {}
    attachments = attachment_summary(doc)
    if not revpos:
        attachments = {name: att._replace(revpos=None) for name, att in attachments.items()}
    return rev, deleted, frozenset(doc.get('_conflicts', ())), frozenset(attachments.items())


def keeps_revpos(db):
    """Whether the server keeps the revpos a copy sends (CouchDB and Cloudant
    do); pouchdb-server stores the generation of the revision that carried
    the attachment's data instead, so comparing it there would be a false
    alarm on every doc edited after its attachment was added."""
    return not db.is_pouchdb()


def winners_with_conflicts(db, doc_ids, revpos=True):
    """{doc id: summary} for the ids the db has, deleted ones included."""
    summaries = {}
    for doc_id, doc in current_winners(db, doc_ids).items():
        deleted = bool(doc.get('_deleted'))
        summaries[doc_id] = summary(doc['_rev'], deleted, None if deleted else doc, revpos)
    return summaries


def _source_summary(change, revpos=True):
    return summary(change.doc['_rev'], False, change.doc, revpos)


def copy_outcomes(source, target, selection, changes, revpos=True):
    """The outcome of each migrating doc of the source's feed page."""
    wanted = [c for c in reread(source, changes) if selection.wants(c)]
    return _compared(source, target, selection, wanted, revpos)


def _compared(source, target, selection, changes, revpos):
    in_target = winners_with_conflicts(target, [c.id for c in changes], revpos)
    return [(c.id, copy_outcome(source, target, c, selection.wants(c), in_target.get(c.id), revpos))
            for c in changes]


def copy_outcome(source, target, change, wanted, target_summary, revpos=True):
    """How the target's copy of one source doc compares; None when there is
    nothing to say (not migrating, and not live in the target)."""
    target_live = target_summary is not None and not target_summary[1]
    if not wanted:
        # deleted in the source, or its doc type left the migration: the
        # target must not hold it live (--continuous mirrors both)
        return STALE if target_live else None
    if target_summary is None:
        return MISSING
    if target_summary == _source_summary(change, revpos):
        return EQUAL
    return explain_stale(source, target, change, target_summary, revpos)


def explain_stale(source, target, change, target_summary, revpos=True):
    """Name the cause when no copy can mend the difference: target leaves the
    source never had, built on what the source has (an edit made in the
    target); or live source conflicts the target holds only as deleted.
    Anything else is STALE: --continuous is behind."""
    source_summary = _source_summary(change, revpos)
    if source_summary[1] != target_summary[1]:
        return STALE
    source_leaves = {source_summary[0]} | source_summary[2]
    target_leaves = {target_summary[0]} | target_summary[2]
    lost, extra = source_leaves - target_leaves, target_leaves - source_leaves
    if lost and _missing(target, change.id, lost):
        return STALE  # the source has revisions the target lacks
    if extra and _missing(source, change.id, extra) == extra:
        return TARGET_ONLY
    if lost and not extra:
        return CONFLICT_DELETED
    return STALE


def _missing(db, doc_id, revs):
    return set(missing_revs(db, {doc_id: sorted(revs)}).get(doc_id, ()))


def uncovered_in_target(source, target, selection, changes, judged, revpos=True):
    """The live target docs the source stage left out (``judged`` says which
    it judged): EXTRA where the source never had them, otherwise compared as
    the source holds them now (STALE where it deleted them or changed their
    type: the target must not hold them live)."""
    live = [c.id for c in reread(target, [c for c in changes if not judged(c.id)]) if not c.deleted]
    if not live:
        return []
    in_source = current_changes(source, live)
    held = {c.id for c in in_source}
    return [(doc_id, EXTRA) for doc_id in live if doc_id not in held] + \
        _compared(source, target, selection, in_source, revpos)


# -- once the cleanup has started: what the cleanup promises -------------------------

def cleanup_outcomes(source, target, selection, changes):
    changes = reread(source, changes)
    deleted = [c for c in changes if c.deleted]
    in_target = current_winners(target, [c.id for c in deleted], bodies=False)
    held = {c.id: c for c in deleted if c.id in in_target and not in_target[c.id].get('_deleted')}
    uncopied = _deletions_the_target_lacks(source, target, list(held.values()),
                                           {doc_id: in_target[doc_id]['_rev'] for doc_id in held})
    outcomes = [(c.id, LEFT_IN_SOURCE) for c in changes if selection.wants(c)]
    return outcomes + [(doc_id, DELETED_UNCOPIED if doc_id in uncopied else MOVED) for doc_id in held]


def _deletions_the_target_lacks(source, target, changes, target_winners):
    """Ids of docs the source deleted on top of a revision the target never
    got: old code edited the doc in the source, then deleted it.

    Such a revision is newer than the target's live winner. A tombstone is
    accounted for when the target holds it or the revision it deleted, or
    when that revision is no newer than the target's winner: a deleted branch
    replication left beside the doc, which no copy needed. pouchdb-server's
    ``_revs_diff`` also calls an ancestor known only from a history (no
    body) missing, where CouchDB does not; such a revision is one the source
    cannot show either, so only what the source holds with its body counts.
    """
    tombstones, _gone = source.bulk_get([(c.id, rev) for c in changes for rev in c.leaf_revs],
                                        attachments=False)
    deleted = [(doc['_id'], doc['_rev'], _parent_rev(doc['_revisions'])) for doc in tombstones]
    deleted = [(doc_id, rev, parent) for doc_id, rev, parent in deleted
               if parent and _generation(parent) > _generation(target_winners[doc_id])]
    if not deleted:
        return set()
    lacking = _missing_pairs(target, [(i, r) for i, rev, parent in deleted for r in (rev, parent)])
    unseen = _missing_pairs(source, [(doc_id, parent) for doc_id, _rev, parent in deleted])
    return {doc_id for doc_id, rev, parent in deleted
            if (doc_id, rev) in lacking and (doc_id, parent) in lacking and (doc_id, parent) not in unseen}


def _generation(rev):
    return int(rev.split('-', 1)[0])


def _missing_pairs(db, pairs):
    revs = {}
    for doc_id, rev in pairs:
        revs.setdefault(doc_id, []).append(rev)
    return {(doc_id, rev) for doc_id, missing in missing_revs(db, revs).items() for rev in missing}


def _parent_rev(revisions):
    if len(revisions['ids']) < 2:
        return None
    return f"{revisions['start'] - 1}-{revisions['ids'][1]}"
