from couchdbkit.ext.django.schema import (
    BooleanProperty, DateTimeProperty, Document, StringListProperty, StringProperty,
)


class CouchUser(Document):
    username = StringProperty()
    first_name = StringProperty()
    last_name = StringProperty()
    is_active = BooleanProperty(default=True)

    class Meta:
        abstract = True


class CommCareUser(CouchUser):
    domain = StringProperty()

    @classmethod
    def by_username(cls, username):
        return cls.view('users/by_username', key=username, include_docs=True, reduce=False).first()


class WebUser(CouchUser):
    domains = StringListProperty()


class Invitation(Document):
    email = StringProperty()
    domain = StringProperty()
    invited_on = DateTimeProperty()


class UserRole(Document):
    domain = StringProperty()
    name = StringProperty()
    permissions = StringListProperty()


class AdminUserRole(UserRole):
    pass


class DomainRemovalRecord(Document):
    domain = StringProperty()
    user_id = StringProperty()
    removed_on = DateTimeProperty()


class OrgRemovalRecord(Document):
    org = StringProperty()
    user_id = StringProperty()
    removed_on = DateTimeProperty()
