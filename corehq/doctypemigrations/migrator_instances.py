from django.conf import settings

from corehq.doctypemigrations.migrator import Migrator, MigratorRegistry

users_migration = Migrator(
    slug='user_db_migration',
    source_db_name=None,
    target_db_name=settings.NEW_USERS_GROUPS_DB,
    doc_types=(
        'Group',
        'DeleteGroupRecord',
        'UserRole',
        'AdminUserRole',
        'CommCareUser',
        'WebUser',
        'Invitation',
        'DomainRemovalRecord',
        'OrgRemovalRecord',
    )
)

registry = MigratorRegistry([users_migration])


def get_migrator_by_slug(slug):
    return registry.get(slug)


def get_migrator_slugs():
    return registry.slugs()
