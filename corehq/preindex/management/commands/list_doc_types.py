from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from corehq.preindex.doctypes import defined_doc_types


class Command(BaseCommand):
    help = ("List the doc types of the couchdbkit Document classes defined in an app's models "
            "module, one a line: a starting point for a migrator's doc_types.")

    def add_arguments(self, parser):
        parser.add_argument('app_label')

    def handle(self, app_label, **options):
        try:
            app_config = apps.get_app_config(app_label)
        except LookupError:
            raise CommandError(f"No installed app with the label {app_label!r}")
        for doc_type in defined_doc_types(app_config.models_module):
            self.stdout.write(doc_type)
