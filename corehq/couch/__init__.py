"""The CouchDB client shared by the doc type migration and the preindex:
works against CouchDB 3, Cloudant and pouchdb-server, retries under one
policy, and never prints a password.

``client``: the database API (CouchDB); ``transport``: sending a request;
``retry``: what is worth another try, for how long; ``errors``: what a caller catches."""
from corehq.couch.client import CouchDB, doc_path, dumps
from corehq.couch.credentials import mask_password, split_credentials
from corehq.couch.errors import (
    CouchError, CouchHTTPError, CouchNotFound, CouchUnauthorized, CouchUnreachable, DatabaseMissing,
    RequestTooLarge,
)
from corehq.couch.retry import MID_BODY_ERRORS, TRANSPORT_ERRORS, PhaseBudget, RetryPolicy
from corehq.couch.transport import DEFAULT_TIMEOUT, make_session

__all__ = [
    'DEFAULT_TIMEOUT', 'MID_BODY_ERRORS', 'TRANSPORT_ERRORS', 'CouchDB', 'CouchError', 'CouchHTTPError',
    'CouchNotFound', 'CouchUnauthorized', 'CouchUnreachable', 'DatabaseMissing', 'PhaseBudget',
    'RequestTooLarge', 'RetryPolicy', 'doc_path', 'dumps', 'make_session', 'mask_password',
    'split_credentials',
]
