from django.apps import AppConfig
from django.conf import settings

from corehq.preindex import ExtraPreindexPlugin


class GroupsAppConfig(AppConfig):
    name = 'corehq.apps.groups'

    def ready(self):
        ExtraPreindexPlugin.register('groups', __file__, settings.NEW_USERS_GROUPS_DB)
