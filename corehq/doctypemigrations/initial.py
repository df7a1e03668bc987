"""The --initial phase: dump the selected documents to a file, then load it.

Order matters for losing nothing: the source seq is recorded before the first
document is read, so everything written while the dump runs is replayed by
--continuous from that seq. Progress is recorded only after the file is
synced (dump) or the target acknowledged (load), so a killed run resumes. A
revision the target refuses is recorded with the load position that passes
it, and the phase cannot complete while one remains.
"""
import os
from collections import namedtuple

from corehq.doctypemigrations import dumpfile, state as states
from corehq.doctypemigrations.errors import LoadFailed
from corehq.doctypemigrations.loader import DocError, write_raw
from corehq.doctypemigrations.models import LOADING
from corehq.doctypemigrations.progress import no_progress
from corehq.doctypemigrations.selection import (
    DocTypeSelection, fetch_leaves, has_doc_type_view, scan_changes, scan_doc_type_view,
)
from corehq.doctypemigrations.stats import doc_types_total

InitialSettings = namedtuple('InitialSettings', 'page_size batch_bytes batch_docs')
DEFAULT_SETTINGS = InitialSettings(page_size=1000, batch_bytes=4 * 1024 * 1024, batch_docs=1000)

InitialResult = namedtuple('InitialResult', 'docs_dumped docs_loaded original_seq missing_revs retried')


def run_initial(migrator, source, target, dump_path, settings=DEFAULT_SETTINGS, progress=no_progress):
    source_info = source.info()  # fail on a missing or unreachable database before writing anything
    target.info()
    ident = states.identity(migrator, source, target)
    state = states.load(migrator, ident)
    states.check('initial', state, migrator.slug)
    if state is None:
        state = states.create(migrator, ident, source_info['update_seq'])
    header = dumpfile.make_header(migrator.slug, source.name, target.name, migrator.all_doc_types,
                                  states.original_seq(state))
    header_end = _prepare_dump_file(state, dump_path, header)
    missing = 0
    if state.phase != LOADING:
        missing = _dump(state, migrator, source, dump_path, settings, progress)
        states.set_phase(state, LOADING)
    retried = _retry_refusals(state, target, dump_path)
    _load(state, target, dump_path, header_end, settings, progress)
    refused = states.refusals(state)
    if refused:
        raise LoadFailed(f"{len(refused)} documents were refused by the target; the initial phase "
                         f"is not complete, and a rerun of --initial sends them again",
                         [DocError(r.doc_id, r.rev, r.error, r.reason) for r in refused])
    states.complete_initial(state)
    return InitialResult(state.docs_dumped, state.docs_loaded, states.original_seq(state), missing, retried)


def _prepare_dump_file(state, dump_path, header):
    """Returns the offset after the header, starting the file over when there
    is no usable dump progress (nothing dumped yet, or the file is gone)."""
    if state.dump_offset and os.path.exists(dump_path):
        return dumpfile.check_header(dump_path, header)
    header_end = dumpfile.create(dump_path, header)
    state.refusals.all().delete()  # their offsets pointed into the file just replaced
    states.save_progress(state, phase=states.DUMPING, dump_since=None, dump_offset=header_end,
                         docs_dumped=0, load_offset=0, docs_loaded=0)
    return header_end


def _dump(state, migrator, source, dump_path, settings, progress):
    pages, total = _enumerate(state, migrator, source, settings)
    missing = 0
    with dumpfile.DumpWriter(dump_path, state.dump_offset) as writer, \
            progress('Dumping', total=total, unit='docs scanned') as bar:
        for wanted, scanned, position in pages:
            docs, missing_revs = fetch_leaves(source, wanted)
            missing += len(missing_revs)
            writer.write(docs)
            states.save_progress(state, dump_offset=writer.sync(), dump_since=states.encode_seq(position),
                                 docs_dumped=state.docs_dumped + len(docs))
            bar.update(scanned)
    return missing


def _enumerate(state, migrator, source, settings):
    """The pages to dump as (changes to copy, docs scanned, position), resuming
    from the recorded position, and how many docs they hold (a callable: only a
    progress bar needs it, and on pouchdb-server a count reads the view's rows).
    The by_doc_type view is read when the source has it (recorded as
    ``{'view': key}``), else the whole ``_changes`` feed (``{'changes': seq}``)."""
    position = states.decode_seq(state.dump_since) or {}
    by_view = 'view' in position if position else has_doc_type_view(source)
    if by_view:
        pages = scan_doc_type_view(source, migrator.all_doc_types, settings.page_size, position.get('view'))
        return ((changes, len(changes), {'view': at}) for changes, at in pages), \
            lambda: doc_types_total(source, migrator.all_doc_types)
    selection = DocTypeSelection(migrator.all_doc_types)
    pages = scan_changes(source, settings.page_size, position.get('changes'))
    return (([c for c in changes if selection.wants(c)], len(changes), {'changes': seq})
            for changes, seq in pages), lambda: _feed_size(source.info())


def _feed_size(info):
    return info['doc_count'] + info.get('doc_del_count', 0)


def _load(state, target, dump_path, header_end, settings, progress):
    offset = max(state.load_offset, header_end)
    with progress('Loading', total=state.docs_dumped, initial=state.docs_loaded, unit='docs') as bar:
        for lines, end in dumpfile.read_batches(dump_path, offset, settings.batch_bytes, settings.batch_docs):
            refused = _refused_lines(lines, write_raw(target, [raw for raw, _at in lines]))
            states.save_load_progress(state, end, state.docs_loaded + len(lines), refused)
            bar.update(len(lines))


def _retry_refusals(state, target, dump_path):
    """Send the revisions refused by an earlier run again; returns how many went in."""
    refused = states.refusals(state)
    if not refused:
        return 0
    lines = dumpfile.read_lines_at(dump_path, [r.dump_offset for r in refused])
    still = {offset for _error, offset in _refused_lines(lines, write_raw(target, [raw for raw, _at in lines]))}
    gone = [r.dump_offset for r in refused if r.dump_offset not in still]
    states.forget_refusals(state, gone)
    return len(gone)


def _refused_lines(lines, errors):
    """(error, dump offset of its line) for each refused revision.

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
