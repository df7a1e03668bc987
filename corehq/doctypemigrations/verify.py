"""The --verify phase: are the target's copies what the source holds?

For every migrating id the winning rev, the deleted state and the set of
conflict leaves must match. Both databases are streamed page by page; the
source seen from the target side only catches docs the source never had.
"""
from collections import Counter, namedtuple

from corehq.doctypemigrations.follower import CONFLICT_DELETED_IN_TARGET, TARGET_ONLY_LEAF
from corehq.doctypemigrations.inflight import ordered, parts
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.selection import DocTypeSelection, feed_length, is_replicated_id, scan_changes

EQUAL, MISSING, STALE, EXTRA = 'equal', 'missing in target', 'stale', 'extra'
# Stale in a way that no --continuous will mend (see follower.Divergence).
CONFLICT_DELETED, TARGET_ONLY = CONFLICT_DELETED_IN_TARGET, TARGET_ONLY_LEAF
OUTCOMES = (EQUAL, MISSING, STALE, CONFLICT_DELETED, TARGET_ONLY, EXTRA)
VerifyResult = namedtuple('VerifyResult', 'counts differing')
SOURCE_STAGE, TARGET_STAGE = 'Verifying the source', 'Verifying the target'


def summary(winner_rev, deleted, doc):
    conflicts = frozenset((doc or {}).get('_conflicts', ()))
    return winner_rev, deleted, conflicts


def winners_with_conflicts(db, doc_ids):
    """{doc id: (winning rev, deleted, conflicts)} for the ids the db has."""
    rows = db.all_docs(keys=doc_ids, include_docs=True, conflicts=True) if doc_ids else []
    return {row['id']: summary(row['value']['rev'], bool(row['value'].get('deleted')), row.get('doc'))
            for row in rows if 'value' in row}


def compare(change, wanted, target_summary):
    if wanted:
        if target_summary is None:
            return MISSING
        expected = summary(change.doc['_rev'], False, change.doc)
        return EQUAL if target_summary == expected else STALE
    if target_summary is None or target_summary[1]:
        return None  # not migrating, and not live in the target: nothing to say
    return STALE if change.deleted else EXTRA


def explain_stale(source, target, change, target_summary):
    """Name the cause when only the conflicts differ, and no copy can mend it:
    live source conflicts the target holds only as deleted, or target leaves
    the source never had. Anything else is STALE: --continuous is behind."""
    source_summary = summary(change.doc['_rev'], False, change.doc)
    if source_summary[:2] != target_summary[:2]:
        return STALE
    lost, extra = source_summary[2] - target_summary[2], target_summary[2] - source_summary[2]
    if lost and not extra and not _missing(target, change.id, lost):
        return CONFLICT_DELETED
    if extra and not lost and _missing(source, change.id, extra) == extra:
        return TARGET_ONLY
    return STALE


def _missing(db, doc_id, revs):
    return set(db.revs_diff({doc_id: sorted(revs)}).get(doc_id, {}).get('missing', ()))


def verify(migrator, source, target, page_size=1000, keep=20, workers=1, events=None):
    selection = DocTypeSelection(migrator.all_doc_types)
    counts, differing = Counter(), []

    def record(doc_id, outcome):
        if outcome:
            counts[outcome] += 1
            if outcome != EQUAL and len(differing) < keep:
                differing.append((doc_id, outcome))

    def compare(changes):
        changes = [c for c in changes if is_replicated_id(c.id)]
        in_target = winners_with_conflicts(target, [c.id for c in changes])
        return [(c.id, _outcome(source, target, c, selection.wants(c), in_target.get(c.id))) for c in changes]

    def extra_in_target(changes):
        live = [c.id for c in changes if is_replicated_id(c.id) and not c.deleted]
        known = {row['key'] for row in source.all_docs(keys=live) if 'value' in row} if live else set()
        return [(doc_id, EXTRA) for doc_id in live if doc_id not in known]

    def in_parts(check):
        # a page is checked in smaller parts while the server rate-limits
        return lambda page: [outcome for part in parts(page[0], source.budget) for outcome in check(part)]

    events = events or Events()
    for stage, db, pages, check in (
            (SOURCE_STAGE, source, scan_changes(source, page_size, conflicts=True), compare),
            (TARGET_STAGE, target, scan_changes(target, page_size), extra_in_target)):
        events.stage(stage, total=lambda db=db: feed_length(db.info()), unit='changes')
        try:
            previous = set()
            for page, outcomes in ordered(pages, in_parts(check), workers, source.budget):
                for doc_id, outcome in _not_replayed(outcomes, previous):
                    record(doc_id, outcome)
                previous = {change.id for change in page[0]}
                events.advanced(stage, len(page[0]))
        finally:
            events.stage_done(stage)
    return VerifyResult(counts, differing)


def _not_replayed(outcomes, previous_page):
    """A cluster's feed delivers at least once: after a shard moves, a page
    repeats rows from just before where it was asked to start. Those are
    counted once, against the page before (which bounds what is kept); a
    longer rewind would be counted twice, never missed."""
    return [(doc_id, outcome) for doc_id, outcome in outcomes if doc_id not in previous_page]


def _outcome(source, target, change, wanted, target_summary):
    outcome = compare(change, wanted, target_summary)
    if outcome == STALE and wanted:
        return explain_stale(source, target, change, target_summary)
    return outcome


def is_clean(result):
    return set(result.counts) <= {EQUAL}
