"""Turns COUCHDB_APPS into the per-app database settings couchdbkit reads."""

from django.core.exceptions import ImproperlyConfigured

from corehq.couch.credentials import BadCouchUrl, normalize_url


def checked_server_url(url, setting='COUCH_SERVER_URL'):
    """The server url as every couch library reads it (its credentials
    percent-encoded), checked before couchdbkit parses it at start-up: a url
    it cannot parse would stop every command with a traceback, and a
    password it misreads could be printed whole."""
    try:
        return normalize_url(url)
    except BadCouchUrl as e:
        raise ImproperlyConfigured(f"{setting}: {e}") from None


class CouchSettingsHelper:
    """Maps apps to databases.

    ``main_db_url`` is the full url of the main database, e.g.
    ``http://user:pass@host:5984/commcarehq``. Each ``couchdb_apps`` entry is a
    module name (main db) or a ``(module, db_name)`` tuple where ``db_name`` is
    ``None`` (main db) or one of ``extra_db_names``, stored as ``<main>__<name>``.
    """

    def __init__(self, main_db_url, couchdb_apps, extra_db_names):
        self.main_db_url = main_db_url.rstrip('/')
        self.server_url, self.main_db_name = self.main_db_url.rsplit('/', 1)
        self.extra_db_names = [name for name in extra_db_names if name]
        self.app_db_names = dict(self._parse_app(entry) for entry in couchdb_apps)
        self._check_registered()

    @staticmethod
    def _parse_app(entry):
        if isinstance(entry, (tuple, list)):
            app_label, db_name = entry
            return app_label, db_name
        return entry, None

    def _check_registered(self):
        for app_label, db_name in self.app_db_names.items():
            if db_name is not None and db_name not in self.extra_db_names:
                raise ImproperlyConfigured(
                    f"COUCHDB_APPS maps {app_label!r} to the couch database {db_name!r}, "
                    f"which is not registered with COUCH_SETTINGS_HELPER "
                    f"(registered: {self.extra_db_names or 'none'})"
                )

    def full_db_name(self, db_name):
        """The real database name for a short name (``None`` is the main db)."""
        if db_name is None:
            return self.main_db_name
        if db_name not in self.extra_db_names:
            raise ImproperlyConfigured(f"Unknown couch database {db_name!r}")
        return f"{self.main_db_name}__{db_name}"

    def db_url(self, db_name):
        return f"{self.server_url}/{self.full_db_name(db_name)}"

    def all_db_names(self):
        return [None] + list(self.extra_db_names)

    def app_db_name(self, app_label):
        return self.app_db_names[app_label]

    def get_couchdb_databases(self):
        """The ``COUCHDB_DATABASES`` dict of couchdbkit's Django extension."""
        return {
            app_label: {'URL': self.db_url(db_name)}
            for app_label, db_name in self.app_db_names.items()
        }
