"""The CouchDB client shared by the doc type migration and the preindex:
works against CouchDB 3, Cloudant and pouchdb-server, retries under one
policy, and never prints a password."""
from corehq.couch.client import (
    DEFAULT_TIMEOUT, MID_BODY_ERRORS, TRANSPORT_ERRORS, CouchDB, CouchError, CouchHTTPError, CouchNotFound,
    CouchUnauthorized, CouchUnreachable, DatabaseMissing, PhaseBudget, RequestTooLarge, RetryPolicy,
    doc_path, dumps, make_session,
)
from corehq.couch.credentials import mask_password, split_credentials

__all__ = [
    'DEFAULT_TIMEOUT', 'MID_BODY_ERRORS', 'TRANSPORT_ERRORS', 'CouchDB', 'CouchError', 'CouchHTTPError',
    'CouchNotFound', 'CouchUnauthorized', 'CouchUnreachable', 'DatabaseMissing', 'PhaseBudget',
    'RequestTooLarge', 'RetryPolicy', 'doc_path', 'dumps', 'make_session', 'mask_password',
    'split_credentials',
]
