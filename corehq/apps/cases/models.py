"""Cases. They stay in the main database: no migration moves them.

A deleted case keeps its body under the doc_type ``CommCareCase-Deleted``.
"""
from couchdbkit.ext.django.schema import (
    BooleanProperty, DateTimeProperty, Document, ListProperty, StringProperty,
)


class CommCareCase(Document):
    domain = StringProperty()
    type = StringProperty()
    name = StringProperty()
    owner_id = StringProperty()
    closed = BooleanProperty(default=False)
    opened_on = DateTimeProperty()
    xform_ids = ListProperty(str)
