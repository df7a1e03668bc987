import json

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug, get_migrator_slugs
from corehq.preindex.registry import ExtraPreindexPlugin
from corehq.preindex.viewreport import build_report, report_as_dict, report_lines


class Command(BaseCommand):
    help = ("Before writing a doc type migration: list the views whose map.js mentions each doc "
            "type it moves, with the databases their design docs are on today and after the "
            "flip, and flag views that mix migrating and staying doc types and doc types no "
            "view on the target covers.")

    def add_arguments(self, parser):
        parser.add_argument('slug')
        parser.add_argument('--json', action='store_true', dest='as_json',
                            help="Print the report as JSON.")

    def handle(self, slug, as_json=False, **options):
        if slug not in get_migrator_slugs():
            raise CommandError(f"No doc type migration {slug!r}; known: {', '.join(get_migrator_slugs())}")
        report = build_report(get_migrator_by_slug(slug), settings.COUCH_SETTINGS_HELPER,
                              apps.get_app_configs(), ExtraPreindexPlugin.registrations())
        if as_json:
            self.stdout.write(json.dumps(report_as_dict(report), indent=2))
            return
        styles = {'heading': self.style.MIGRATE_HEADING, 'warning': self.style.WARNING,
                  'ok': self.style.SUCCESS, 'plain': str}
        for kind, line in report_lines(report):
            self.stdout.write(styles[kind](line))
