from django.apps import AppConfig


class FormsAppConfig(AppConfig):
    name = 'corehq.apps.forms'
