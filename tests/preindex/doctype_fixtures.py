"""A models module for test_list_doc_types: one class of its own, one imported."""
from couchdbkit.ext.django.schema import Document

from corehq.apps.groups.models import Group  # noqa: F401  (imported, so not ours)


class Team(Document):
    doc_type = 'SportsTeam'  # saved under this doc_type, not the class name

    class Meta:
        app_label = 'doctype_fixtures'
