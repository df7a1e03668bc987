"""What a doc type migration moves: from which database, to which, which doc types."""
import hashlib
import json

DELETED_SUFFIX = '-Deleted'


class Migrator:
    """``Migrator(slug, source_db_name, target_db_name, doc_types)``.

    Database names are the short names of ``COUCH_SETTINGS_HELPER``
    (``None`` is the main db). Every doc type ``T`` brings ``T-Deleted`` along.
    """

    def __init__(self, slug, source_db_name, target_db_name, doc_types):
        if source_db_name == target_db_name:
            raise ValueError(f"Migrator {slug!r}: source and target are the same database")
        self.slug = slug
        self.source_db_name = source_db_name
        self.target_db_name = target_db_name
        self.doc_types = tuple(doc_types)
        self.all_doc_types = with_deleted_doc_types(self.doc_types)

    def __repr__(self):
        return f"Migrator({self.slug!r})"

    @property
    def legacy_fingerprint(self):
        """The fingerprint of states recorded before it named the real
        databases and servers (see ``state.identity``)."""
        identity = {'source': self.source_db_name, 'target': self.target_db_name,
                    'doc_types': sorted(self.all_doc_types)}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def validate(self, helper):
        """Both databases must be configured (raises ImproperlyConfigured)."""
        helper.full_db_name(self.source_db_name)
        helper.full_db_name(self.target_db_name)


def with_deleted_doc_types(doc_types):
    result = []
    for doc_type in doc_types:
        base = doc_type[:-len(DELETED_SUFFIX)] if doc_type.endswith(DELETED_SUFFIX) else doc_type
        for name in (base, base + DELETED_SUFFIX):
            if name not in result:
                result.append(name)
    return tuple(sorted(result))


class MigratorRegistry:
    def __init__(self, migrators):
        self._by_slug = {}
        for migrator in migrators:
            if migrator.slug in self._by_slug:
                raise ValueError(f"Two migrators share the slug {migrator.slug!r}")
            self._by_slug[migrator.slug] = migrator

    def slugs(self):
        return sorted(self._by_slug)

    def get(self, slug):
        return self._by_slug.get(slug)
