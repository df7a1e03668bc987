"""The dump file ``./<slug>.log``: a header line, then one JSON document per line.

Each line is one revision (a leaf) as ``_bulk_docs`` with ``new_edits=false``
takes it: ``_revisions`` and attachments inline. The header names the
migration so a file is never loaded into the wrong place. Database names are
written without server or credentials.
"""
import os

import orjson

from corehq.doctypemigrations.errors import CorruptDumpFile, DumpFileError, DumpFileMismatch

FORMAT = 'doctype-migration-dump/1'


def make_header(slug, source_name, target_name, doc_types, start_seq):
    return {'format': FORMAT, 'slug': slug, 'source': source_name, 'target': target_name,
            'doc_types': sorted(doc_types), 'start_seq': start_seq}


def create(path, header):
    """Start a new dump file (mode 0600); returns the offset after the header."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
    with os.fdopen(fd, 'wb') as f:
        f.write(orjson.dumps(header) + b'\n')
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def read_header(path):
    """(header, offset after it); CorruptDumpFile when it is not one of ours."""
    try:
        with open(path, 'rb') as f:
            line = f.readline()
    except FileNotFoundError:
        raise DumpFileError(f"{path} does not exist") from None
    try:
        header = orjson.loads(line) if line.endswith(b'\n') else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get('format') != FORMAT:
        raise CorruptDumpFile(f"{path} does not start with a doc type migration header")
    return header, len(line)


def check_header(path, expected):
    header, offset = read_header(path)
    differing = sorted(key for key in expected if header.get(key) != expected[key])
    if differing:
        raise DumpFileMismatch(
            f"{path} was written for another migration (its {', '.join(differing)} differ): "
            f"move it away and rerun --initial to dump again")
    return offset


class DumpWriter:
    """Appends documents after ``offset``, cutting off anything a killed run
    wrote past its last recorded offset."""

    def __init__(self, path, offset):
        if os.path.getsize(path) < offset:
            raise CorruptDumpFile(
                f"{path} is shorter than the {offset} bytes already recorded as dumped: "
                f"it was truncated; move it away and rerun --initial to dump again")
        self._file = open(path, 'r+b')
        self._file.truncate(offset)
        self._file.seek(offset)

    def write(self, docs):
        self._file.write(b''.join(orjson.dumps(doc) + b'\n' for doc in docs))

    def sync(self):
        """Make the written lines durable; returns the offset to record."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_batches(path, offset, max_bytes, max_docs):
    """Yield (lines, offset after them) from ``offset`` to the end, each line
    as (raw JSON, the offset it starts at).

    Every line is checked to be a whole JSON object before it is handed on, so
    a truncated or damaged file stops the load with the line's position.
    """
    with open(path, 'rb') as f:
        f.seek(offset)
        batch, size = [], 0
        for line in f:
            _check_line(path, line, offset)
            batch.append((line.rstrip(b'\n'), offset))
            offset += len(line)
            size += len(line)
            if size >= max_bytes or len(batch) >= max_docs:
                yield batch, offset
                batch, size = [], 0
        if batch:
            yield batch, offset


def read_lines_at(path, offsets):
    """The lines starting at ``offsets``, as (raw JSON, offset)."""
    lines = []
    with open(path, 'rb') as f:
        for offset in offsets:
            f.seek(offset)
            line = f.readline()
            _check_line(path, line, offset)
            lines.append((line.rstrip(b'\n'), offset))
    return lines


def id_and_rev(raw):
    doc = orjson.loads(raw)
    return doc.get('_id'), doc.get('_rev')


def _check_line(path, line, offset):
    try:
        valid = line.endswith(b'\n') and isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        valid = False
    if not valid:
        raise CorruptDumpFile(
            f"{path} is damaged at byte {offset}: not a whole JSON document. Move the "
            f"file away and rerun --initial to dump again")
