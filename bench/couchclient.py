"""A deliberately tiny CouchDB client for the bench.

The bench does not reuse corehq's client: the peers it measures (raw copy
loops, the writer, the observer) must not inherit the migrator's own costs or
bugs, and the core is edited concurrently by others.
"""
from urllib.parse import quote

import orjson
import requests


class CouchRequestError(Exception):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class Server:
    def __init__(self, url):
        self.url = url.rstrip('/')
        self.session = requests.Session()
        self._welcome = None

    def welcome(self):
        """What the server's root says of itself (read once)."""
        if self._welcome is None:
            self._welcome = self.json('GET', '')
        return self._welcome

    def is_couchdb(self):
        return 'couchdb' in self.welcome()   # pouchdb-server's root says 'express-pouchdb'

    def describe(self):
        """The server's name and version, e.g. 'CouchDB 3.5.0 (1 node)'."""
        version = self.welcome().get('version')
        if not self.is_couchdb():
            return f"pouchdb-server {version}"
        nodes = len(self.json('GET', '_membership').get('cluster_nodes', []))
        return f"CouchDB {version} ({nodes} node{'s' if nodes != 1 else ''})"

    def replication_endpoint(self, db_name):
        """A database of this server as ``_replicate`` names it: pouchdb-server
        replicates local databases by name; CouchDB 3 needs a url, with the
        credentials (sent to the server only, never printed)."""
        if not self.is_couchdb():
            return db_name
        return f"{self.url}/{quote(db_name, safe='')}"

    def request(self, method, path, params=None, body=None, timeout=600, **kwargs):
        headers = {'Accept': 'application/json'}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers['Content-Type'] = 'application/json'
        response = self.session.request(method, f"{self.url}/{path}", params=params, data=data,
                                        headers=headers, timeout=timeout, **kwargs)
        if response.status_code >= 400:
            raise CouchRequestError(f"{method} /{path}: {response.status_code} {response.text[:300]}",
                                    response.status_code)
        return response

    def json(self, method, path, params=None, body=None, **kwargs):
        return orjson.loads(self.request(method, path, params, body, **kwargs).content)

    def db(self, name):
        return Database(self, name)

    def all_dbs(self):
        return self.json('GET', '_all_dbs')


class Database:
    def __init__(self, server, name):
        self.server = server
        self.name = name

    def json(self, method, path='', params=None, body=None, **kwargs):
        path = f"{quote(self.name, safe='')}/{path}" if path else quote(self.name, safe='')
        return self.server.json(method, path, params, body, **kwargs)

    def create(self):
        return self.json('PUT')

    def delete(self):
        return self.json('DELETE')

    def delete_if_exists(self):
        try:
            self.delete()
        except CouchRequestError as e:
            if e.status != 404:
                raise

    def recreate(self):
        self.delete_if_exists()
        self.create()

    def info(self):
        return self.json('GET')

    def get(self, doc_id, **params):
        """The doc, or None when it is missing."""
        try:
            return self.json('GET', quote(doc_id, safe='/'), params=params or None)
        except CouchRequestError as e:
            if e.status == 404:
                return None
            raise

    def put(self, doc):
        return self.json('PUT', quote(doc['_id'], safe='/'), body=doc)

    def bulk_docs(self, docs, new_edits=True):
        """Write docs (dicts, or already encoded bytes); raises on any per-doc error."""
        if docs and isinstance(docs[0], bytes):
            body = (b'{"new_edits":' + (b'true' if new_edits else b'false')
                    + b',"docs":[' + b','.join(docs) + b']}')
        else:
            body = {'docs': docs, 'new_edits': new_edits}
        rows = self.json('POST', '_bulk_docs', body=body)
        errors = [row for row in rows if 'error' in row]
        if errors:
            raise CouchRequestError(f"{self.name}: {len(errors)} docs refused, e.g. {errors[0]}", 201)
        return rows

    def bulk_get(self, id_revs):
        """Each (id, rev) with its history and inline attachments; bodies in request order."""
        if not id_revs:
            return []  # pouchdb-server never answers an empty _bulk_get
        body = {'docs': [{'id': doc_id, 'rev': rev} for doc_id, rev in id_revs]}
        result = self.json('POST', '_bulk_get', params={'revs': 'true', 'attachments': 'true'}, body=body)
        return [item['ok'] for entry in result['results'] for item in entry['docs'] if 'ok' in item]

    def changes(self, **params):
        return self.json('GET', '_changes', params=params)

    def view(self, ddoc, view, timeout=600, **params):
        params = {k: (orjson.dumps(v).decode() if k in ('startkey', 'endkey', 'start_key', 'end_key')
                      else _query_value(v)) for k, v in params.items()}
        return self.json('GET', f"_design/{ddoc}/_view/{view}", params=params, timeout=timeout)


def _query_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return value
