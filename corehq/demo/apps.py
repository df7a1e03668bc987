from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = 'corehq.demo'
    label = 'demo'
