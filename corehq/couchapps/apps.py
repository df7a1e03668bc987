from django.apps import AppConfig
from django.conf import settings

from corehq.preindex import ExtraPreindexPlugin


class CouchappsConfig(AppConfig):
    name = 'corehq.couchapps'

    def ready(self):
        # The doc type migration counts and lists docs with all_docs/by_doc_type
        # on both of its databases.
        ExtraPreindexPlugin.register('couchapps', __file__, settings.NEW_USERS_GROUPS_DB)
