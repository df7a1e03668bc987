"""The --initial phase: dump the selected documents to a file, and load it.

The load follows the dump as the file grows (following_load): it loads what
the dump has recorded while the dump reads on, so the phase takes about the
longer of reading and writing rather than their sum.

Order matters for losing nothing: the source seq is recorded before the first
document is read, so everything written while the dump runs is replayed by
--continuous from that seq. Progress is recorded only after the file is
synced (dump) or the target acknowledged (load), so a killed run resumes. A
revision the target refuses is recorded with the load position that passes
it, and the phase cannot complete while one remains.

The dump holds every migrated doc (user docs carry password hashes), so it is
removed once the phase is complete, and only then: until the refusals are
gone it is what they are sent again from. Before a dump starts, its size is
checked against the free disk (diskcheck).
"""
import logging
import os
from collections import namedtuple

from corehq.couch import copies

from corehq.doctypemigrations import claim as claims
from corehq.doctypemigrations import diskcheck, dumpfile, state as states
from corehq.doctypemigrations.attachments import (
    BUDGET as ATTACHMENT_BUDGET, fetch_bounded, reread_with_attachments,
)
from corehq.doctypemigrations.errors import DumpFileError, LoadFailed
from corehq.doctypemigrations.following_load import FollowingLoad
from corehq.doctypemigrations.inflight import DEFAULT_WORKERS, SizesByBytes, ordered, scaled
from corehq.doctypemigrations.loader import DocError, write_raw
from corehq.doctypemigrations.models import LOADING
from corehq.doctypemigrations.events import Events
from corehq.doctypemigrations.selection import (
    DocTypeSelection, feed_length, filters_by_selector, has_doc_type_view, scan_changes, scan_doc_type_view,
)
from corehq.doctypemigrations.stats import doc_types_total

# ``workers``: pages fetched, or batches written, at once (see inflight);
# ``attachment_bytes``: attachment data read at once (see attachments).
InitialSettings = namedtuple('InitialSettings', 'page_size batch_bytes batch_docs workers attachment_bytes',
                             defaults=(DEFAULT_WORKERS, ATTACHMENT_BUDGET))
DEFAULT_SETTINGS = InitialSettings(page_size=1000, batch_bytes=4 * 1024 * 1024, batch_docs=1000)

InitialResult = namedtuple('InitialResult', 'docs_dumped docs_loaded original_seq missing_revs retried '
                                            'dump_resumed_at load_resumed_at dump_removed')

log = logging.getLogger(__name__)

# Seconds a dump waits for a cluster's copies to agree before it starts.
SETTLE_WAIT = 120

# View rows are small (an id and its leaf revs) and each read needs the one
# before it, so a view read covers several fetches: over a slow link that
# chain of reads, not the fetches in flight, would otherwise set the pace.
VIEW_PAGES = 4


def run_initial(migrator, source, target, dump_path, settings=DEFAULT_SETTINGS, events=None,
                keep_dump=False, check_disk=True, free_bytes=None):
    """``free_bytes`` stands for the dump folder's free space, which is
    otherwise measured; ``check_disk=False`` dumps without comparing."""
    dumpfile.check_dump_path(dump_path)
    source_info = source.info()  # fail on a missing or unreachable database before writing anything
    target.info()
    ident = states.identity(migrator, source, target)
    state = states.load(migrator, ident)
    states.check('initial', state, migrator.slug)
    if check_disk and not _dump_is_complete(state, dump_path):
        diskcheck.check_free_space(migrator, source, dump_path, _dumped_bytes(state, dump_path), free_bytes,
                                   source_info)
    if state is None:
        state = states.create(migrator, ident, source_info['update_seq'])
    with claims.running(state, claims.INITIAL):
        state.refresh_from_db()  # another run may have moved it on before this one got the claim
        states.check('initial', state, migrator.slug)
        return _dump_and_load(state, migrator, source, target, dump_path, settings, events or Events(),
                              keep_dump)


def _dump_and_load(state, migrator, source, target, dump_path, settings, events, keep_dump):
    header = dumpfile.make_header(migrator.slug, source.name, target.name, migrator.all_doc_types,
                                  states.original_seq(state))
    header_end = _prepare_dump_file(state, dump_path, header)
    missing, dump_resumed_at = 0, None
    retried = _retry_refusals(state, target, dump_path)
    load_resumed_at = _unfinished_load(state)
    load = FollowingLoad(target, dump_path, state.load_position or dumpfile.position(header_end), settings)
    # --workers 1 asks for one request at a time: the load then waits for the dump
    follows = settings.workers > 1
    if follows:
        load.start(state.dump_offset)
    events.stage('Loading', total=state.docs_dumped if state.phase == LOADING else None,
                 done=state.docs_loaded)
    try:
        if state.phase != LOADING:
            dump_resumed_at = None if state.dump_since is None else state.dump_offset
            if dump_resumed_at is None:
                _let_the_copies_agree(source)
            missing = _dump(state, migrator, source, dump_path, settings, events,
                            on_recorded=(lambda: _follow(state, load, events)) if follows else (lambda: None))
            states.dump_complete(state, source.update_seq())  # bounds what the load copies (see pairs.py)
        if not follows:
            load.start(state.dump_offset)
        load.dump_ended(state.dump_offset)
        for done in load.rest():
            _record_load(state, done, events)
    finally:
        load.stop()
        events.stage_done('Loading')
    _raise_if_refused(state)
    # read after the target acknowledged the load; a dump recorded before its
    # end was gets a later mark (the source now), which only makes it safer
    target_seq = target.update_seq()
    states.complete_initial(state, target_seq, None if states.dump_end_seq(state) else source.update_seq())
    removed = not keep_dump and _remove(dump_path)
    return InitialResult(state.docs_dumped, state.docs_loaded, states.original_seq(state), missing, retried,
                         dump_resumed_at, load_resumed_at, removed)


def _raise_if_refused(state):
    refused = states.refusals(state)
    if refused:
        raise LoadFailed(f"{len(refused)} documents were refused by the target; the initial phase "
                         f"is not complete, and a rerun of --initial sends them again",
                         [DocError(r.doc_id, r.rev, r.error, r.reason) for r in refused])


def _has_dump(state, dump_path):
    return state is not None and bool(state.dump_offset) and os.path.exists(dump_path)


def _dump_is_complete(state, dump_path):
    return _has_dump(state, dump_path) and state.phase == LOADING


def _dumped_bytes(state, dump_path):
    return state.dump_offset if _has_dump(state, dump_path) else 0


def _unfinished_load(state):
    """The load position a run resumes from, or None. While the dump runs, a
    load that has started is unfinished even where it has caught up with it."""
    finished = state.phase == LOADING and state.load_position >= dumpfile.position(state.dump_offset)
    return state.load_position if state.load_position > 0 and not finished else None


def _remove(dump_path):
    try:
        os.remove(dump_path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise DumpFileError(f"The initial migration is complete, but {dump_path} could not be removed "
                            f"({e.strerror}): delete it, it holds every migrated doc") from None
    return True


def _prepare_dump_file(state, dump_path, header):
    """Returns the offset after the header, starting the file over when there
    is no usable dump progress (nothing dumped yet, or the file is gone)."""
    if _has_dump(state, dump_path):
        return dumpfile.check_header(dump_path, header)
    header_end = dumpfile.create(dump_path, header)
    state.refusals.all().delete()  # their positions pointed into the file just replaced
    states.save_progress(state, phase=states.DUMPING, dump_path=os.path.abspath(dump_path),
                         dump_since=None,
                         dump_offset=header_end, docs_dumped=0, load_position=0, docs_loaded=0)
    return header_end


# -- dump and load ------------------------------------------------------------------

def _let_the_copies_agree(source):
    """On a cluster, a listing takes each shard range from whichever copy
    answers first: a copy that lags (its node was down) lacks docs written
    before the recorded seq, which --continuous, starting from that seq, would
    not copy either. So the dump starts once the copies agree (see
    couch.copies), waiting a bounded time: a node down for good must not block
    the migration, and --verify names any doc a lagging copy kept out."""
    unsettled = copies.why_unsettled(source, SETTLE_WAIT)
    if unsettled:
        log.warning("%s: dumping without the copies in step (%s): run --verify before the flip",
                    source.display_url, unsettled)


def _follow(state, load, events):
    """The dump recorded more: the load may read it; record what it loaded meanwhile."""
    load.dumped_to(state.dump_offset)
    for done in load.acknowledged():
        _record_load(state, done, events)


def _record_load(state, done, events):
    (lines, end), errors = done
    states.save_load_progress(state, end, state.docs_loaded + len(lines), _refused_lines(lines, errors))
    events.advanced('Loading', len(lines))


def _dump(state, migrator, source, dump_path, settings, events, on_recorded):
    pages, total = _enumerate(state, migrator, source, settings, events)
    missing = 0
    events.stage('Dumping', total=total, unit='docs scanned')
    try:
        with dumpfile.DumpWriter(dump_path, state.dump_offset) as writer:
            sizes = SizesByBytes(settings.page_size, settings.batch_bytes)
            fetched = ordered(_fetches(pages, sizes, source.budget),
                              lambda fetch: fetch_bounded(source, fetch[0], settings.attachment_bytes),
                              settings.workers, source.budget)
            unsaved = 0
            for (_wanted, scanned, position), (docs, pending, missing_revs) in fetched:
                sizes.saw(writer.write(docs), len(docs))
                unsaved += len(docs)
                for group in pending:  # one group of attachment data in memory at a time
                    filled, gone = reread_with_attachments(source, group)
                    writer.write(filled)
                    unsaved += len(filled)
                    missing_revs += gone
                missing += len(missing_revs)
                if position is not None:
                    states.save_progress(state, dump_offset=writer.sync(),
                                         dump_since=states.encode_seq(position),
                                         docs_dumped=state.docs_dumped + unsaved)
                    unsaved = 0
                    on_recorded()
                    events.advanced('Dumping', scanned)
    finally:
        events.stage_done('Dumping')
    return missing


def _fetches(pages, sizes, budget=None):
    """Each page split into fetches of ``sizes()`` docs, asked anew for each
    fetch (and fewer while the server rate-limits). Only a page's last fetch
    carries its position and scanned count: progress is recorded at page
    ends, where the position is."""
    for wanted, scanned, position in pages:
        start = 0
        while True:
            end = start + max(1, scaled(sizes(), budget))
            if end >= len(wanted):
                yield wanted[start:], scanned, position
                break
            yield wanted[start:end], 0, None
            start = end


def _enumerate(state, migrator, source, settings, events):
    """The pages to dump as (changes to copy, docs scanned, position), resuming
    from the recorded position, and how many docs they hold (a callable: only a
    progress bar needs it, and on pouchdb-server a count reads the view's rows).
    The by_doc_type view is read when the source has it (recorded as
    ``{'view': key}``), else the whole ``_changes`` feed (``{'changes': seq}``)."""
    position = states.decode_seq(state.dump_since) or {}
    by_view = 'view' in position if position else has_doc_type_view(source)
    if by_view:
        pages = scan_doc_type_view(source, migrator.all_doc_types, settings.page_size * VIEW_PAGES,
                                   position.get('view'), events=events)
        return ((changes, len(changes), {'view': at}) for changes, at in pages), \
            lambda: doc_types_total(source, migrator.all_doc_types)
    selection = DocTypeSelection(migrator.all_doc_types)
    if filters_by_selector(source):  # only the migrating docs cross the wire; how many is not known
        pages, total = scan_changes(source, settings.page_size, position.get('changes'),
                                    doc_types=selection.doc_types), None
    else:
        pages, total = scan_changes(source, settings.page_size, position.get('changes')), \
            (lambda: feed_length(source.info()))
    return (([c for c in changes if selection.wants(c)], len(changes), {'changes': seq})
            for changes, seq in pages), total


def _retry_refusals(state, target, dump_path):
    """Send the revisions refused by an earlier run again; returns how many went in.

    A refusal's ``line_position`` is the position of its line (see dumpfile)."""
    refused = states.refusals(state)
    if not refused:
        return 0
    lines = dumpfile.read_lines_at(dump_path, [r.line_position for r in refused])
    errors = write_raw(target, [raw for raw, _at in lines])
    still = {offset for _error, offset in _refused_lines(lines, errors)}
    gone = [r.line_position for r in refused if r.line_position not in still]
    states.forget_refusals(state, gone)
    return len(gone)


def _refused_lines(lines, errors):
    """(error, dump position of its line) for each refused revision.

    A _bulk_docs error row names the doc's id, not always its rev: without a
    matching rev it is recorded for every line of that id in the batch (a
    retry clears the ones that went in), and a row matching nothing for every
    line, so that no refusal is ever dropped.
    """
    if not errors:
        return []
    by_id = {}
    for raw, at in lines:
        doc_id, rev = dumpfile.id_and_rev(raw)
        by_id.setdefault(doc_id, []).append((rev, at))
    refused = []
    for error in errors:
        leaves = by_id.get(error.id) or [(None, at) for _raw, at in lines]
        exact = [at for rev, at in leaves if rev == error.rev]
        refused.extend((error, at) for at in (exact or [at for _rev, at in leaves]))
    return refused
