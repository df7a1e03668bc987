"""A doc id as 8 bytes, for the phases that remember every doc they saw:
a million ids of any length take 8 MB, and two of them share a hash by
chance about once in 37 million such runs (n² / 2⁶⁵)."""
import hashlib


def id_hash(doc_id):
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), 'big')
