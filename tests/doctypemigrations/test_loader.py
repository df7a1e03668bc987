"""loader: what a revision too large for _bulk_docs is sent as."""
from corehq.doctypemigrations.loader import _follows


def test_a_part_keeps_the_sources_revpos_and_leaves_the_digest_to_the_server():
    inline = {'content_type': 'image/jpeg', 'revpos': 2, 'digest': 'md5-ZfSwf5n9LaX3zN1/FyngCw==',
              'data': 'AAAA'}
    # pouchdb-server takes the doc's generation whatever the stub says (measured);
    # CouchDB keeps what it is sent, as its replicator sends it
    assert _follows(inline, 3) == {'content_type': 'image/jpeg', 'length': 3, 'follows': True, 'revpos': 2}
    assert 'revpos' not in _follows({'content_type': 'text/plain', 'data': 'AAAA'}, 3)
