from django.apps import AppConfig
from django.conf import settings

from corehq.preindex import ExtraPreindexPlugin


class UsersAppConfig(AppConfig):
    name = 'corehq.apps.users'

    def ready(self):
        ExtraPreindexPlugin.register('users', __file__, settings.NEW_USERS_GROUPS_DB)
