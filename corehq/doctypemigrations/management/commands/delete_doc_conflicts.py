from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.conflicts import delete_doc_conflicts
from corehq.couch import CouchDB
from corehq.couch.commandline import add_give_up_after, number, phase_budget
from corehq.doctypemigrations.management.commands._events import command_events
from corehq.doctypemigrations.management.commands._text import describe_errors
from corehq.doctypemigrations.management.commands.run_doctype_migration import (
    operator_errors, stop_signals, stopped_error,
)
from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug, get_migrator_slugs


class Command(BaseCommand):
    help = ("Before --cleanup: in each migrator's source, delete the losing leaves of conflicted "
            "docs of its doc types, keeping each doc's winner.")

    def add_arguments(self, parser):
        parser.add_argument('slugs', nargs='*', help="Migrators to clean (default: all).")
        parser.add_argument('--page-size', type=number(int, 1), default=1000,
                            help="Docs per read and per write.")
        add_give_up_after(parser)

    def handle(self, slugs, **options):
        try:
            with stop_signals():
                self.delete_conflicts(slugs, **options)
        except KeyboardInterrupt as interrupt:
            raise stopped_error(interrupt, "delete_doc_conflicts") from None

    def delete_conflicts(self, slugs, verbosity=1, page_size=1000, give_up_after=None, **options):
        for slug in slugs or get_migrator_slugs():
            migrator = get_migrator_by_slug(slug)
            if migrator is None:
                raise CommandError(f"Unknown migrator {slug!r}; known: {', '.join(get_migrator_slugs())}")
            helper = settings.COUCH_SETTINGS_HELPER
            budget = phase_budget(give_up_after)
            with operator_errors():
                source = CouchDB(helper.db_url(migrator.source_db_name), retry=budget)
                target = CouchDB(helper.db_url(migrator.target_db_name), retry=budget)
                states.check('delete_doc_conflicts', states.open_state(migrator, source, target), slug)
                result = delete_doc_conflicts(source, migrator.all_doc_types, page_size,
                                              events=command_events(self, slug, verbosity))
            if verbosity:
                self.stdout.write(f"{slug}: deleted {result.leaves_deleted} losing revisions of "
                                  f"{result.docs} conflicted docs in {source.display_url}")
            if result.errors:
                raise CommandError("Some losing revisions could not be deleted:\n"
                                   + describe_errors(result.errors))
