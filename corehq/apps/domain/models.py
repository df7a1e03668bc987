from couchdbkit.ext.django.schema import BooleanProperty, Document, StringProperty


class Domain(Document):
    """Stays in the main database: the users/groups migration leaves it behind."""
    name = StringProperty()
    is_active = BooleanProperty(default=True)
