"""Which design docs belong on which database.

An app's design docs (``<app>/_design/``) go to the database ``COUCHDB_APPS``
maps it to; ``ExtraPreindexPlugin.register`` puts them on another database as
well, so that during a doc type migration a module's views exist in both the
old and the new database.
"""
from collections import namedtuple
from pathlib import Path

from corehq.preindex.designdocs import load_design_docs

DesignDocPlacement = namedtuple('DesignDocPlacement', 'db_name app_label doc_id ddoc')


class ExtraPreindexPlugin:
    _registrations = []  # (app_label, design_dir, db_name)

    @classmethod
    def register(cls, app_label, file, db_name):
        """Call from ``AppConfig.ready``: ``register('users', __file__, settings.NEW_USERS_GROUPS_DB)``."""
        design_dir = Path(file).resolve().parent / '_design'
        entry = (app_label, design_dir, db_name)
        if entry not in cls._registrations:
            cls._registrations.append(entry)

    @classmethod
    def registrations(cls):
        return list(cls._registrations)


def app_design_dirs(app_configs):
    """{app_label: its _design folder} for installed apps that have one."""
    dirs = {}
    for app_config in app_configs:
        design_dir = Path(app_config.path) / '_design'
        if design_dir.is_dir():
            dirs[app_config.label] = design_dir
    return dirs


def design_doc_placements(helper, app_configs, extra_registrations):
    """Every (db_name, app_label, doc_id, ddoc) the databases should hold, deduplicated.

    ``helper`` is the project's CouchSettingsHelper; db_name ``None`` is the main db.
    """
    wanted = []
    for app_label, design_dir in app_design_dirs(app_configs).items():
        if app_label in helper.app_db_names:
            wanted.append((app_label, design_dir, helper.app_db_name(app_label)))
    wanted.extend(extra_registrations)
    placements, seen = [], set()
    for app_label, design_dir, db_name in wanted:
        for doc_id, ddoc in load_design_docs(design_dir).items():
            if (db_name, doc_id) not in seen:
                seen.add((db_name, doc_id))
                placements.append(DesignDocPlacement(db_name, app_label, doc_id, ddoc))
    return placements
