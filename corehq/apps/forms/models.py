"""Submitted forms. They stay in the main database: no migration moves them.

An archived form keeps its class and changes its doc_type to ``XFormArchived``,
as CommCare HQ does.
"""
from couchdbkit.ext.django.schema import DateTimeProperty, DictProperty, Document, StringProperty


class XFormInstance(Document):
    domain = StringProperty()
    xmlns = StringProperty()
    app_id = StringProperty()
    received_on = DateTimeProperty()
    form = DictProperty()
