"""Will the dump fit? Its size estimated from a sample of the source's docs,
compressed as the dump holds them, against the free space where it goes."""
import os
import shutil

from corehq.doctypemigrations import dumpfile
from corehq.doctypemigrations.errors import DumpFileError, NotEnoughDiskSpace
from corehq.doctypemigrations.selection import (
    DocTypeSelection, feed_length, fetch_leaves, has_doc_type_view, scan_changes, scan_doc_type_view,
)
from corehq.doctypemigrations.stats import doc_types_total

SAMPLE_DOCS = 100  # per doc type, to estimate the dump's size
SPACE_MARGIN = 1.25  # a sample's average can be below the whole's
# The dump holds a part of the source's docs, gzipped, and only their leaves:
# it outgrows the source's file only with compressible attachments (stored
# compressed, dumped as base64), which twice the file leaves room for.
ROOMY = 2


def check_free_space(migrator, source, dump_path, dumped=0, free_bytes=None, source_info=None):
    """Refuse a dump that would not fit where it goes (what is ``dumped``
    already is on the disk, and counted out of the need).

    Free space of ROOMY times the source's whole file is enough without an
    estimate, which on pouchdb-server costs a read of every migrating row
    (CouchDB counts from its index).
    """
    folder = os.path.dirname(os.path.abspath(dump_path))
    free = _free_bytes(folder) if free_bytes is None else free_bytes
    file_size = _file_size(source_info or source.info())
    if file_size and free >= ROOMY * file_size:
        return
    needed = max(0, round(estimate_dump_size(migrator, source) * SPACE_MARGIN) - dumped)
    if needed > free:
        raise NotEnoughDiskSpace(
            f"The dump of {migrator.slug!r} needs about {_size(needed)} and {folder} has "
            f"{_size(free)} free: free some space, or dump to a larger disk with --dump-file PATH. "
            f"The need is an estimate (a sample of the docs, compressed as the dump is, plus "
            f"{round(SPACE_MARGIN * 100 - 100)}%); --skip-disk-check dumps without it.")


def estimate_dump_size(migrator, source, sample_docs=SAMPLE_DOCS):
    """The dump's size in bytes: each doc type's count times the compressed
    size of a sample of its docs, with all their leaves, as the dump holds them."""
    if has_doc_type_view(source):
        return sum(_doc_type_size(source, doc_type, sample_docs) for doc_type in migrator.all_doc_types)
    return _feed_share_size(migrator, source, sample_docs * 10)


def _doc_type_size(source, doc_type, sample_docs):
    count = doc_types_total(source, [doc_type])
    if not count:
        return 0
    sample, _position = next(scan_doc_type_view(source, [doc_type], sample_docs))
    return count * _dumped_size(source, sample) / max(len(sample), 1)


def _feed_share_size(migrator, source, sample_changes):
    """Without the view the migrating docs are not counted: the first changes
    of the feed stand for the whole feed, migrating docs or not."""
    sample, _seq = next(scan_changes(source, sample_changes, max_bytes=None))  # one page, as asked
    selection = DocTypeSelection(migrator.all_doc_types)
    wanted = [change for change in sample if selection.wants(change)]
    return feed_length(source.info()) * _dumped_size(source, wanted) / max(len(sample), 1)


def _dumped_size(source, changes):
    docs, _missing = fetch_leaves(source, changes)
    return dumpfile.compressed_size(docs)


def _file_size(info):
    """The database file's size (CouchDB 2+ and Cloudant: sizes.file; CouchDB 1
    and pouchdb-server: disk_size), or None."""
    return (info.get('sizes') or {}).get('file') or info.get('disk_size')


def _free_bytes(folder):
    try:
        return shutil.disk_usage(folder).free
    except FileNotFoundError:
        raise DumpFileError(f"{folder}, where the dump goes, does not exist") from None


def _size(n):
    for unit, scale in (('GB', 10 ** 9), ('MB', 10 ** 6), ('kB', 10 ** 3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"
