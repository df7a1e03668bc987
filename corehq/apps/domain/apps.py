from django.apps import AppConfig


class DomainAppConfig(AppConfig):
    name = 'corehq.apps.domain'
