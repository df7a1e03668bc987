"""Issue 18, point 2: attachments are faithful on every path.

``--initial``, ``--continuous`` and ``--cleanup --copy-missing`` each keep an
attachment's ``revpos``, digest, length and content_type, whether the
attachment goes inline in ``_bulk_docs`` or as a part of a multipart PUT (a
doc over the request limit). pouchdb-server does not show what it keeps of
``revpos``: it gives an attachment written with its data the revision's
generation, whatever the request said. So what the client sends is read
through the proxy, and the rest (digest, length, content_type, the data) on
the server. CouchDB stores a compressible type (text/*) gzipped and digests
what it stores, so the digest of data sent is the one the server gives it.
"""
import base64
import hashlib
import os
import re

import pytest
from django.core.management import call_command

from corehq.couch import CouchDB, deepjson, doc_path
from corehq.couchsettings import CouchSettingsHelper
from corehq.doctypemigrations.attachments import AttachmentSummary, attachment_summary
from corehq.doctypemigrations.migrator_instances import users_migration
from tests.conftest import bind_couchdbkit
from tests.couchproxy import CouchProxy
from tests.doctypemigrations.helpers import run
from tests.doctypemigrations.test_odd_docs import nested

SLUG = users_migration.slug
REQUEST_LIMIT = 50_000  # a LARGE attachment in base64 is over it: such a doc goes as a multipart PUT
LARGE = 40_000
WRITES = r'^(POST /[^/]+/_bulk_docs|PUT )'


@pytest.fixture
def recorded(couch_url, db_prefix, settings, db, tmp_path, monkeypatch):
    """users_migration's databases through a proxy that records the writes
    (in front of the --couch-proxy cluster-like proxy, when it runs), and the
    server's Digests."""
    proxy = CouchProxy(couch_url, record_bodies=WRITES).start()
    try:
        helper = CouchSettingsHelper(f"{proxy.url}/{db_prefix}", settings.COUCHDB_APPS, ['users'])
        settings.COUCH_SETTINGS_HELPER = helper
        bind_couchdbkit(helper.get_couchdb_databases())
        monkeypatch.chdir(tmp_path)
        call_command('sync_couch_views', verbosity=0)
        # straight to the server: the proxy records only the migration's writes
        digests = Digests(CouchDB(f"{couch_url}/{db_prefix}__digests"))
        yield proxy, CouchDB(helper.db_url(None)), CouchDB(helper.db_url('users')), digests
    finally:
        proxy.stop()


# -- building histories with normal edits, as an app does -----------------------------

def create(db, doc_id, **body):
    return db.put(dict(body, _id=doc_id, doc_type='CommCareUser'))['rev']


def attach(db, doc_id, name, data, content_type):
    doc = db.get(doc_id)
    return db.request('PUT', f"{doc_path(doc_id)}/{doc_path(name)}", params={'rev': doc['_rev']}, body=data,
                      headers={'Content-Type': content_type}).json()['rev']


def edit(db, doc_id, **fields):
    return db.put(dict(db.get(doc_id), **fields))['rev']


def added_then_edited(db, doc_id, name, data, content_type, **body):
    """The issue's case: an attachment added at rev 2, the doc edited at rev 3."""
    create(db, doc_id, **body)
    attach(db, doc_id, name, data, content_type)
    return edit(db, doc_id, edited=True)


# -- what the client sent, and what the source holds ------------------------------------

def digest(data):
    return 'md5-' + base64.b64encode(hashlib.md5(data).digest()).decode()


class Digests:
    """The digest the server gives data of a content type, asked by
    attaching the data to a doc of a scratch database (the test's, deleted
    with it): pouchdb-server digests the data, CouchDB what it stores (a
    compressible type gzipped)."""

    def __init__(self, db):
        self.db = db
        self.db.create()
        self.known = {}

    def __call__(self, data, content_type):
        key = (data, content_type)
        if key not in self.known:
            doc_id = f"d{len(self.known)}"
            self.db.request('PUT', f"{doc_id}/data", body=data, headers={'Content-Type': content_type})
            self.known[key] = self.db.get(doc_id)['_attachments']['data']['digest']
        return self.known[key]


def sent_attachments(proxy, digests):
    """{(id, rev): {name: (AttachmentSummary, how)}} of every revision
    written with new_edits=false, each attachment as the request carried it
    (how: 'stub', 'inline' or 'part'): the digest and length of data sent
    are those the server gives the data (``digests``); a stub is as it was sent."""
    sent = {}
    for request in proxy.bodies:
        if '/_bulk_docs' in request.line:
            body = deepjson.loads(request.body)
            if body.get('new_edits') is False:
                for doc in body['docs']:
                    sent[(doc['_id'], doc['_rev'])] = _as_sent(doc, {}, digests)
        elif 'multipart/related' in request.headers.get('content-type', ''):
            assert 'new_edits=false' in request.line
            doc, parts = multipart(request)
            sent[(doc['_id'], doc['_rev'])] = _as_sent(doc, parts, digests)
    return sent


def multipart(request):
    """(the JSON part, {attachment name: data}) of a multipart/related body."""
    boundary = re.search(r'boundary="?([^";]+)"?', request.headers['content-type'])[1].encode()
    segments = request.body.split(b'--' + boundary)
    assert segments[0] == b'' and segments[-1] == b'--'
    parts = []
    for segment in segments[1:-1]:
        head, _, data = segment[2:].partition(b'\r\n\r\n')
        assert data.endswith(b'\r\n')
        parts.append((head.decode(), data[:-2]))
    doc = deepjson.loads(parts[0][1])
    files = {re.search(r'filename="(.*)"', head)[1]: data for head, data in parts[1:]}
    return doc, files


def _as_sent(doc, parts, digests):
    summary = {}
    for name, att in (doc.get('_attachments') or {}).items():
        if att.get('stub'):
            summary[name] = (AttachmentSummary(att.get('revpos'), att.get('digest'), att.get('length'),
                                               att.get('content_type')), 'stub')
            continue
        how = 'part' if att.get('follows') else 'inline'
        data = parts[name] if how == 'part' else base64.b64decode(att['data'])
        as_sent = AttachmentSummary(att.get('revpos'), digests(data, att.get('content_type')), len(data),
                                    att.get('content_type'))
        summary[name] = (as_sent, how)
    return summary


def leaf_summaries(db, doc_ids):
    """{(id, rev): attachment_summary} of every leaf of the docs, as the db holds them."""
    rows = db.changes_for_ids(doc_ids)
    docs, _missing = db.bulk_get([(row['id'], c['rev']) for row in rows for c in row['changes']],
                                 attachments=False)
    return {(doc['_id'], doc['_rev']): attachment_summary(doc) for doc in docs}


def without_revpos(summaries):
    return {key: {name: att._replace(revpos=None) for name, att in atts.items()}
            for key, atts in summaries.items()}


def assert_faithful(proxy, digests, source_summaries, target, expected_data, expected_multipart):
    """Every revision sent carries each attachment as the source holds it; the
    target holds the same digest, length and content_type (its revpos is
    pouchdb-server's own), and the data."""
    sent = sent_attachments(proxy, digests)
    assert set(expected_data) <= set(sent)
    for key, atts in sent.items():
        assert {name: summary for name, (summary, _how) in atts.items()} == source_summaries[key], key
    for key, names in expected_data.items():  # these went with their data, not as stubs
        assert {name for name, (_summary, how) in sent[key].items() if how != 'stub'} == names, key
    as_parts = {doc_id for (doc_id, _rev), atts in sent.items()
                if any(how == 'part' for _summary, how in atts.values())}
    assert as_parts == expected_multipart
    held = leaf_summaries(target, {doc_id for doc_id, _rev in sent})
    assert without_revpos({key: held[key] for key in sent}) == without_revpos(
        {key: source_summaries[key] for key in sent})


def test_attachments_keep_revpos_digest_length_and_content_type_on_every_path(recorded):
    proxy, source, target, digests = recorded
    photo, scan, note = os.urandom(3000), os.urandom(LARGE), b'a note\n' * 100

    # --initial: from the dump, inline or (over the request limit) as parts
    added_then_edited(source, 'i-edited', 'photo.jpg', photo, 'image/jpeg')
    inline_note = {'content_type': 'text/plain', 'data': base64.b64encode(note).decode()}
    create(source, 'i-two', _attachments={'note.txt': inline_note})
    attach(source, 'i-two', 'blob.bin', photo, 'application/octet-stream')
    edit(source, 'i-two', edited=True)
    attach(source, 'i-two', 'note.txt', note + b'more\n', 'text/plain')  # revpos 4; blob.bin stays 2
    added_then_edited(source, 'i-large', 'scan.pdf', scan, 'application/pdf')
    added_then_edited(source, 'i-deep-large', 'scan.pdf', scan, 'application/pdf', form=nested(1000, 'x'))
    expected = leaf_summaries(source, ['i-edited', 'i-two', 'i-large', 'i-deep-large'])
    assert expected[('i-two', source.get('i-two')['_rev'])] == {
        'note.txt': AttachmentSummary(4, digests(note + b'more\n', 'text/plain'), len(note) + 5,
                                      'text/plain'),
        'blob.bin': AttachmentSummary(2, digest(photo), len(photo), 'application/octet-stream')}
    proxy.max_request_bytes = REQUEST_LIMIT
    proxy.reset()
    run(SLUG, '--initial')
    assert_faithful(proxy, digests, expected, target,
                    {(doc_id, rev): set(atts) for (doc_id, rev), atts in expected.items()},
                    {'i-large', 'i-deep-large'})
    assert target.request('GET', 'i-deep-large/scan.pdf').content == scan

    # --continuous: changed attachments with their data, the others as stubs
    added_then_edited(source, 'c-new', 'photo.jpg', photo, 'image/jpeg')
    edit(source, 'i-edited', again=True)
    attach(source, 'i-two', 'extra.txt', b'extra', 'text/plain')
    added_then_edited(source, 'c-large', 'scan.pdf', scan, 'application/pdf')
    expected = leaf_summaries(source, ['c-new', 'i-edited', 'i-two', 'c-large'])
    proxy.reset()
    run(SLUG, '--continuous', '--until-caught-up')
    latest = {doc_id: source.get(doc_id)['_rev'] for doc_id in ('c-new', 'i-two', 'c-large')}
    assert_faithful(proxy, digests, expected, target, {
        ('c-new', latest['c-new']): {'photo.jpg'},
        ('i-two', latest['i-two']): {'extra.txt'},
        ('c-large', latest['c-large']): {'scan.pdf'}}, {'c-large'})
    i_edited = sent_attachments(proxy, digests)[('i-edited', source.get('i-edited')['_rev'])]
    assert i_edited['photo.jpg'] == (expected[('i-edited', source.get('i-edited')['_rev'])]['photo.jpg'],
                                     'stub')  # the target had the photo already

    # --cleanup --copy-missing: what the source got after --continuous stopped
    added_then_edited(source, 'k-new', 'photo.jpg', photo, 'image/jpeg')
    edit(source, 'c-new', again=True)
    attach(source, 'c-new', 'second.png', photo[:100], 'image/png')
    added_then_edited(source, 'k-large', 'scan.pdf', scan, 'application/pdf')
    expected = leaf_summaries(source, ['k-new', 'c-new', 'k-large'])
    latest = {doc_id: source.get(doc_id)['_rev'] for doc_id in ('k-new', 'c-new', 'k-large')}
    proxy.reset()
    out = run(SLUG, '--cleanup', '--noinput', '--copy-missing', '--canary-wait', '0')
    assert 'Cleanup complete' in out
    assert_faithful(proxy, digests, expected, target, {
        ('k-new', latest['k-new']): {'photo.jpg'},
        ('c-new', latest['c-new']): {'second.png'},
        ('k-large', latest['k-large']): {'scan.pdf'}}, {'k-large'})
    assert target.request('GET', 'k-large/scan.pdf').content == scan


def test_attachment_summary_reads_stubs_and_inline_data():
    doc = {'_id': 'x', '_attachments': {
        'a.txt': {'content_type': 'text/plain', 'revpos': 3, 'digest': 'md5-abc', 'length': 5, 'stub': True},
        'b.bin': {'content_type': 'application/octet-stream', 'revpos': 2, 'digest': 'md5-def',
                  'data': base64.b64encode(b'1234567').decode()}}}
    assert attachment_summary(doc) == {
        'a.txt': AttachmentSummary(3, 'md5-abc', 5, 'text/plain'),
        'b.bin': AttachmentSummary(2, 'md5-def', 7, 'application/octet-stream')}
    assert attachment_summary({'_id': 'y'}) == {}
