from django.apps import AppConfig


class PreindexConfig(AppConfig):
    name = 'corehq.preindex'

    def ready(self):
        # couchdbkit's Django extension pushes each app's _design folder on
        # every `migrate`, in a layout of its own and to one database only;
        # sync_couch_views does this job instead.
        from django.db.models import signals
        from couchdbkit.ext import django as couchdbkit_django
        signals.post_migrate.disconnect(couchdbkit_django.syncdb)
