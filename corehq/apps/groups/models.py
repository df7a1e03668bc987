from couchdbkit.ext.django.schema import BooleanProperty, Document, StringListProperty, StringProperty


class Group(Document):
    domain = StringProperty()
    name = StringProperty()
    users = StringListProperty()
    case_sharing = BooleanProperty(default=False)


class DeleteGroupRecord(Document):
    domain = StringProperty()
    group_id = StringProperty()
