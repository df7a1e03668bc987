from django.apps import AppConfig


class EmbeddedCouchConfig(AppConfig):
    name = 'corehq.embedded_couch'
