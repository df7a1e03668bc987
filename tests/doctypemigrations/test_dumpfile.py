"""The dump file's format on its own: a plain header line, then gzip members
whose boundaries are the recorded offsets, and one integer per line."""
import gzip
import json

import pytest

from corehq.doctypemigrations import dumpfile
from corehq.doctypemigrations.errors import CorruptDumpFile, DumpFileMismatch

HEADER = dumpfile.make_header('user_db_migration', 'commcarehq', 'commcarehq__users', ['WebUser'], 7)


def docs(start, n):
    return [{'_id': f"d{i:04}", '_rev': f"1-{i:032x}", 'doc_type': 'WebUser', 'n': i, 'pad': 'x' * (i % 50)}
            for i in range(start, start + n)]


def write_pages(path, pages):
    """A dump of ``pages`` (lists of docs), synced after each; returns the
    offsets recorded after each page, the header's end first."""
    offsets = [dumpfile.create(path, HEADER)]
    with dumpfile.DumpWriter(path, offsets[0]) as writer:
        for page in pages:
            writer.write(page)
            offsets.append(writer.sync())
    return offsets


def read_all(path, start, max_bytes=10 ** 9, max_docs=10 ** 9, size=None):
    return list(dumpfile.read_batches(path, start, max_bytes, max_docs, size))


def ids(batches):
    return [json.loads(raw)['_id'] for lines, _end in batches for raw, _at in lines]


@pytest.fixture
def dump(tmp_path):
    return str(tmp_path / 'dump.log')


def test_the_header_is_a_plain_line_and_the_rest_is_gzip(dump):
    write_pages(dump, [docs(0, 5), docs(5, 5)])
    with open(dump, 'rb') as f:
        header = json.loads(f.readline())
        rest = f.read()
    assert header['format'] == 'doctype-migration-dump/2' and header['compression'] == 'gzip'
    assert [json.loads(line)['_id'] for line in gzip.decompress(rest).splitlines()] == [
        d['_id'] for d in docs(0, 10)]
    assert dumpfile.read_header(dump) == (header, len(json.dumps(header, separators=(',', ':'))) + 1)


def test_every_position_reads_back_its_own_line_and_every_end_resumes_exactly(dump, monkeypatch):
    monkeypatch.setattr(dumpfile, 'MEMBER_BYTES', 300)  # members inside pages too
    offsets = write_pages(dump, [docs(0, 13), docs(13, 1), docs(14, 20)])
    batches = read_all(dump, dumpfile.position(offsets[0]), max_bytes=250, max_docs=4)
    assert ids(batches) == [d['_id'] for d in docs(0, 34)]
    lines = [line for batch, _end in batches for line in batch]
    assert len({dumpfile.split_position(at)[0] for _raw, at in lines}) > 3  # many members
    assert dumpfile.read_lines_at(dump, [at for _raw, at in reversed(lines)]) == lines[::-1]
    for n, (_batch, end) in enumerate(batches):
        assert ids(read_all(dump, end)) == ids(batches[n + 1:])
    assert batches[-1][1] == dumpfile.position(offsets[-1])
    ends = [end for _batch, end in read_all(dump, dumpfile.position(offsets[0]), max_docs=1)]
    assert {dumpfile.position(offset) for offset in offsets[1:]} <= set(ends)  # never (member, past its end)


def test_a_position_reads_as_member_offset_and_line(dump):
    assert dumpfile.position(123456, 7) == 123456000007
    assert dumpfile.split_position(123456000007) == (123456, 7)
    assert dumpfile.describe_position(123456000007) == 'line 7 of the block at byte 123456'


def test_a_writer_cuts_off_what_a_killed_run_left_past_the_recorded_offset(dump):
    offsets = write_pages(dump, [docs(0, 10), docs(10, 10)])
    half_member = dumpfile.compress(b''.join(json.dumps(d).encode() + b'\n' for d in docs(20, 10)))
    with open(dump, 'ab') as f:
        f.write(half_member[:len(half_member) // 2])
    with dumpfile.DumpWriter(dump, offsets[-1]) as writer:
        writer.write(docs(20, 10))
        end = writer.sync()
    assert ids(read_all(dump, dumpfile.position(offsets[0]), size=end)) == [d['_id'] for d in docs(0, 30)]


def test_compressed_size_is_what_the_docs_add_to_the_file(dump):
    offsets = write_pages(dump, [docs(0, 40)])
    assert dumpfile.compressed_size(docs(0, 40)) == offsets[1] - offsets[0]


def test_a_damaged_member_names_the_byte_it_starts_at(dump):
    offsets = write_pages(dump, [docs(0, 10), docs(10, 10), docs(20, 10)])
    with open(dump, 'r+b') as f:
        middle = (offsets[1] + offsets[2]) // 2
        f.seek(middle)
        byte = f.read(1)
        f.seek(middle)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CorruptDumpFile, match=rf"dump.log is damaged at byte {offsets[1]}: .*not valid gzip"):
        read_all(dump, dumpfile.position(offsets[0]))
    assert ids(read_all(dump, dumpfile.position(offsets[2]))) == [d['_id'] for d in docs(20, 10)]
    with pytest.raises(CorruptDumpFile, match=rf"damaged at byte {offsets[1]}\b"):
        dumpfile.read_lines_at(dump, [dumpfile.position(offsets[1], 3)])


def test_a_cut_off_member_names_the_byte_it_starts_at(dump):
    offsets = write_pages(dump, [docs(0, 10), docs(10, 10)])
    with open(dump, 'r+b') as f:
        f.truncate(offsets[2] - 5)
    with pytest.raises(CorruptDumpFile, match=rf"damaged at byte {offsets[1]}: .*cut off"):
        read_all(dump, dumpfile.position(offsets[0]))


def test_a_file_cut_at_a_member_boundary_is_shorter_than_recorded(dump):
    offsets = write_pages(dump, [docs(0, 10), docs(10, 10)])
    with open(dump, 'r+b') as f:
        f.truncate(offsets[1])
    with pytest.raises(CorruptDumpFile, match=rf"ends at byte {offsets[1]}, before the {offsets[2]} bytes"):
        read_all(dump, dumpfile.position(offsets[0]), size=offsets[2])
    with pytest.raises(CorruptDumpFile, match='shorter than the'):
        dumpfile.DumpWriter(dump, offsets[2])


def test_a_position_past_the_lines_of_its_member_is_refused(dump):
    offsets = write_pages(dump, [docs(0, 10)])
    with pytest.raises(CorruptDumpFile, match=rf"no line 10 in the block at byte {offsets[0]}"):
        dumpfile.read_lines_at(dump, [dumpfile.position(offsets[0], 10)])
    with pytest.raises(CorruptDumpFile, match=rf"no line 11 in the block at byte {offsets[0]}"):
        read_all(dump, dumpfile.position(offsets[0], 11))


def test_an_uncompressed_dump_of_an_earlier_version_is_refused_with_what_to_do(dump):
    with open(dump, 'wb') as f:
        v1_header = {key: value for key, value in HEADER.items() if key != 'compression'}
        f.write(json.dumps(dict(v1_header, format='doctype-migration-dump/1')).encode() + b'\n')
        f.write(b''.join(json.dumps(d).encode() + b'\n' for d in docs(0, 3)))
    with pytest.raises(DumpFileMismatch, match=r'format doctype-migration-dump/1 \(uncompressed, written by '
                                               r'an earlier version\).*move it away.*rerun --initial'):
        dumpfile.check_header(dump, HEADER)


def test_a_file_that_is_not_a_dump_is_refused(dump):
    with open(dump, 'wb') as f:
        f.write(gzip.compress(b'{"a": 1}\n'))
    with pytest.raises(CorruptDumpFile, match='does not start with a doc type migration header'):
        dumpfile.read_header(dump)
