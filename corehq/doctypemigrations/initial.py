"""The --initial phase: dump the selected documents to a file, then load it.

Order matters for losing nothing: the source seq is recorded before the first
document is read, so everything written while the dump runs is replayed by
--continuous from that seq. Progress is recorded only after the file is
synced (dump) or the target acknowledged (load), so a killed run resumes.
"""
import os
from collections import namedtuple

from corehq.doctypemigrations import checkpoints, dumpfile
from corehq.doctypemigrations.loader import write_raw
from corehq.doctypemigrations.progress import no_progress
from corehq.doctypemigrations.selection import (
    DocTypeSelection, fetch_leaves, has_doc_type_view, scan_changes, scan_doc_type_view,
)
from corehq.doctypemigrations.stats import doc_types_total

InitialSettings = namedtuple('InitialSettings', 'page_size batch_bytes batch_docs')
DEFAULT_SETTINGS = InitialSettings(page_size=1000, batch_bytes=4 * 1024 * 1024, batch_docs=1000)

InitialResult = namedtuple('InitialResult', 'docs_dumped docs_loaded original_seq missing_revs')


class InitialAlreadyComplete(Exception):
    pass


class LoadFailed(Exception):
    def __init__(self, errors):
        super().__init__(f"{len(errors)} documents were refused by the target")
        self.errors = errors


def run_initial(migrator, source, target, dump_path, settings=DEFAULT_SETTINGS, progress=no_progress):
    state = checkpoints.get_state(migrator)
    if checkpoints.initial_complete(state):
        raise InitialAlreadyComplete(
            f"The initial migration of {migrator.slug!r} is already complete; "
            f"run --continuous to keep the target up to date.")
    source_info = source.info()  # fail on a missing or unreachable database before writing anything
    target.info()
    if state is None:
        state = checkpoints.create_state(migrator, source_info['update_seq'])
    header = dumpfile.make_header(migrator.slug, source.name, target.name, migrator.all_doc_types,
                                  checkpoints.original_seq(state))
    header_end = _prepare_dump_file(state, dump_path, header)
    missing = 0
    if not state.dump_complete:
        missing = _dump(state, migrator, source, dump_path, settings, progress)
    _load(state, target, dump_path, header_end, settings, progress)
    checkpoints.save_checkpoint(state, checkpoints.original_seq(state))
    return InitialResult(state.docs_dumped, state.docs_loaded, checkpoints.original_seq(state), missing)


def _prepare_dump_file(state, dump_path, header):
    """Returns the offset after the header, starting the file over when there
    is no usable dump progress (nothing dumped yet, or the file is gone)."""
    if state.dump_offset and os.path.exists(dump_path):
        return dumpfile.check_header(dump_path, header)
    header_end = dumpfile.create(dump_path, header)
    checkpoints.save_progress(state, dump_since=None, dump_offset=header_end, dump_complete=False,
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
            checkpoints.save_progress(state, dump_offset=writer.sync(),
                                      dump_since=checkpoints.encode_seq(position),
                                      docs_dumped=state.docs_dumped + len(docs))
            bar.update(scanned)
    checkpoints.save_progress(state, dump_complete=True)
    return missing


def _enumerate(state, migrator, source, settings):
    """The pages to dump as (changes to copy, docs scanned, position), resuming
    from the recorded position, and how many docs they hold (a callable: only a
    progress bar needs it, and on pouchdb-server a count reads the view's rows).
    The by_doc_type view is read when the source has it (recorded as
    ``{'view': key}``), else the whole ``_changes`` feed (``{'changes': seq}``)."""
    position = checkpoints.decode_seq(state.dump_since) or {}
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
    errors = []
    with progress('Loading', total=state.docs_dumped, initial=state.docs_loaded, unit='docs') as bar:
        for raw_docs, end in dumpfile.read_batches(dump_path, offset, settings.batch_bytes,
                                                   settings.batch_docs):
            errors.extend(write_raw(target, raw_docs))
            checkpoints.save_progress(state, load_offset=end, docs_loaded=state.docs_loaded + len(raw_docs))
            bar.update(len(raw_docs))
    if errors:
        # A rerun loads the whole file again (harmless: the writes are idempotent)
        # so the refused documents get another chance once their cause is fixed.
        checkpoints.save_progress(state, load_offset=header_end, docs_loaded=0)
        raise LoadFailed(errors)
