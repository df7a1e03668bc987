"""The dump file ``./<slug>.log``: a plain JSON header line, then the documents
as gzip-compressed JSON lines.

Each line is one revision (a leaf) as ``_bulk_docs`` with ``new_edits=false``
takes it: ``_revisions`` and attachments inline. The header names the
migration so a file is never loaded into the wrong place; it stays readable
with ``head -1``. Database names are written without server or credentials.

After the header come concatenated gzip members (``tail -c +N file | zcat``
shows the lines, N being the header's length plus one). A member ends at
every sync, so every recorded dump offset is a member boundary: a killed
run's partial member is cut off there and the next run appends to a valid
file. Members also end every MEMBER_BYTES of lines, which bounds what a
reader holds in memory.

A line's position is one integer: ``member offset * LINE_SLOTS + index of the
line in the member``. In decimal it reads as both: 123456000007 is line 7 of
the member at byte 123456. The position after a member's last line is the
next member's line 0, so a position at a member boundary is its byte offset
times LINE_SLOTS.
"""
import os
import zlib

import orjson

from corehq.couch import deepjson
from corehq.doctypemigrations.errors import CorruptDumpFile, DumpFileError, DumpFileMismatch

FORMAT = 'doctype-migration-dump/2'
COMPRESSION = 'gzip'
_FORMAT_FAMILY = 'doctype-migration-dump/'
_UNCOMPRESSED_FORMAT = 'doctype-migration-dump/1'

LINE_SLOTS = 1_000_000
# Deflate looks back 32 KB only, so larger members would compress no better;
# this size keeps a member's lines (what a reader holds) small.
MEMBER_BYTES = 1024 * 1024
# zlib's default level: at about 70 MB/s of JSON it is far faster than a
# source serves docs, and its file is a sixth smaller than level 1's.
LEVEL = 6
_GZIP = 16 + zlib.MAX_WBITS
_READ_CHUNK = 256 * 1024
_MAX_HEADER = 64 * 1024


def make_header(slug, source_name, target_name, doc_types, start_seq):
    return {'format': FORMAT, 'compression': COMPRESSION, 'slug': slug, 'source': source_name,
            'target': target_name, 'doc_types': sorted(doc_types), 'start_seq': start_seq}


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
    """(header, offset after it); CorruptDumpFile when it is not one of ours,
    DumpFileMismatch when it is in another format of ours."""
    try:
        with open(path, 'rb') as f:
            line = f.readline(_MAX_HEADER)
    except FileNotFoundError:
        raise DumpFileError(f"{path} does not exist") from None
    header = _parse_header(line)
    if not isinstance(header, dict) or not str(header.get('format')).startswith(_FORMAT_FAMILY):
        raise CorruptDumpFile(f"{path} does not start with a doc type migration header")
    if header['format'] != FORMAT or header.get('compression') != COMPRESSION:
        raise DumpFileMismatch(_other_format_message(path, header['format']))
    return header, len(line)


def _parse_header(line):
    try:
        return orjson.loads(line) if line.endswith(b'\n') else None
    except orjson.JSONDecodeError:
        return None


def _other_format_message(path, found):
    written_by = " (uncompressed, written by an earlier version)" if found == _UNCOMPRESSED_FORMAT else ""
    return (f"{path} is a dump in the format {found}{written_by}, and this version reads only "
            f"{FORMAT}: move it away (or delete it) and rerun --initial. It dumps again, and the "
            f"load sends again what the target already holds, which changes nothing there.")


def check_header(path, expected):
    header, offset = read_header(path)
    differing = sorted(key for key in expected if header.get(key) != expected[key])
    if differing:
        raise DumpFileMismatch(
            f"{path} was written for another migration (its {', '.join(differing)} differ): "
            f"move it away and rerun --initial to dump again")
    return offset


# -- positions ----------------------------------------------------------------

def position(member_offset, index=0):
    return member_offset * LINE_SLOTS + index


def split_position(at):
    """(member offset, line index) of a position."""
    return divmod(at, LINE_SLOTS)


def describe_position(at):
    member_offset, index = split_position(at)
    return f"line {index} of the block at byte {member_offset}"


# -- writing --------------------------------------------------------------------

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
        """Returns the docs' size as JSON lines, before compression."""
        size = 0
        for content in _member_contents(docs):
            self._file.write(compress(content))
            size += len(content)
        return size

    def sync(self):
        """Make the written members durable; returns the offset to record."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _member_contents(docs):
    """The docs' lines, joined into the contents of members: a position can
    address at most LINE_SLOTS lines of a member."""
    lines, size = [], 0
    for doc in docs:
        line = deepjson.dumps(doc) + b'\n'
        lines.append(line)
        size += len(line)
        if size >= MEMBER_BYTES or len(lines) == LINE_SLOTS:
            yield b''.join(lines)
            lines, size = [], 0
    if lines:
        yield b''.join(lines)


def compress(content):
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP)
    return packer.compress(content) + packer.flush()


def compressed_size(docs):
    """What ``docs`` take in a dump file."""
    return sum(len(compress(content)) for content in _member_contents(docs))


# -- reading --------------------------------------------------------------------

def read_batches(path, start, max_bytes, max_docs, size=None):
    """Yield (lines, position after them) from the position ``start`` to the
    end of the file (or to byte ``size``, the recorded dump size, which the
    file must reach), each line as (raw JSON, its position).

    Every member is checked by gzip's CRC before its lines are handed on, so a
    truncated or damaged file stops the load with the member's position.
    """
    member_offset, skip = split_position(start)
    batch, nbytes = [], 0
    with open(path, 'rb') as f:
        for offset, lines, end in _members(path, f, member_offset, size):
            if skip > len(lines):
                raise _no_line(path, offset, skip)
            for index in range(skip, len(lines)):
                batch.append((lines[index], offset * LINE_SLOTS + index))
                nbytes += len(lines[index]) + 1
                if nbytes >= max_bytes or len(batch) >= max_docs:
                    yield batch, _after(offset, index, len(lines), end)
                    batch, nbytes = [], 0
            skip = 0
    if batch:
        yield batch, position(end)


def _after(offset, index, count, end):
    return position(end) if index + 1 == count else position(offset, index + 1)


def read_lines_at(path, positions):
    """The lines at ``positions``, as (raw JSON, position), reading each
    member once."""
    found = {}
    with open(path, 'rb') as f:
        for member_offset, indexes in _by_member(positions).items():
            lines = _read_member(path, f, member_offset)
            for index in indexes:
                if index >= len(lines):
                    raise _no_line(path, member_offset, index)
                found[position(member_offset, index)] = lines[index]
    return [(found[at], at) for at in positions]


def _by_member(positions):
    members = {}
    for at in sorted(set(positions)):
        member_offset, index = split_position(at)
        members.setdefault(member_offset, []).append(index)
    return members


def _read_member(path, f, offset):
    for _offset, lines, _end in _members(path, f, offset):
        return lines
    return []


def _no_line(path, offset, index):
    return CorruptDumpFile(
        f"{path} has no line {index} in the block at byte {offset}: it is not the file whose "
        f"progress was recorded. Move it away and rerun --initial to dump again")


def _members(path, f, offset, size=None):
    """Yield (offset, lines, end offset) of each member from ``offset``, a
    member boundary, to the end of the file or to byte ``size``."""
    f.seek(offset)
    data = f.read(_READ_CHUNK)
    while size is None or offset < size:
        if not data:
            if size is None:
                return
            raise CorruptDumpFile(
                f"{path} ends at byte {offset}, before the {size} bytes recorded as dumped: it was "
                f"truncated. Move it away and rerun --initial to dump again")
        content, data, end = _inflate_member(path, f, offset, data)
        yield offset, _lines_of(path, offset, content), end
        offset = end
        data = data or f.read(_READ_CHUNK)


def _inflate_member(path, f, offset, data):
    """(content, bytes read past it, end offset) of the member at ``offset``,
    whose first bytes are ``data``."""
    inflater = zlib.decompressobj(_GZIP)
    parts, read = [], 0
    while True:
        try:
            parts.append(inflater.decompress(data))
        except zlib.error as e:
            raise _damaged(path, offset, f"not valid gzip data ({e})") from None
        read += len(data)
        if inflater.eof:
            rest = inflater.unused_data
            return b''.join(parts), rest, offset + read - len(rest)
        data = f.read(_READ_CHUNK)
        if not data:
            raise _damaged(path, offset, "cut off")


def _lines_of(path, offset, content):
    if not content.endswith(b'\n'):
        raise _damaged(path, offset, "not whole JSON lines")
    return content[:-1].split(b'\n')


def _damaged(path, offset, what):
    return CorruptDumpFile(
        f"{path} is damaged at byte {offset}: the compressed block that starts there is {what}. "
        f"Move the file away and rerun --initial to dump again")


def id_and_rev(raw):
    doc = deepjson.loads(raw)
    return doc.get('_id'), doc.get('_rev')
