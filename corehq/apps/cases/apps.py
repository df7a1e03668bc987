from django.apps import AppConfig


class CasesAppConfig(AppConfig):
    name = 'corehq.apps.cases'
