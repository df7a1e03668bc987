from django.core.management.base import BaseCommand, CommandError

from corehq.doctypemigrations.conflicts import run_delete_doc_conflicts
from corehq.couch.commandline import add_give_up_after, number, phase_budget, stoppable
from corehq.doctypemigrations.management.commands._events import command_events
from corehq.doctypemigrations.management.commands._text import describe_errors
from corehq.doctypemigrations.management.commands._operator import (
    open_databases, operator_errors,
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
        with stoppable("delete_doc_conflicts"):
            self.delete_conflicts(slugs, **options)

    def delete_conflicts(self, slugs, verbosity=1, page_size=1000, give_up_after=None, **options):
        for slug in slugs or get_migrator_slugs():
            migrator = get_migrator_by_slug(slug)
            if migrator is None:
                raise CommandError(f"Unknown migrator {slug!r}; known: {', '.join(get_migrator_slugs())}")
            with operator_errors():
                source, target = open_databases(migrator, phase_budget(give_up_after))
                result = run_delete_doc_conflicts(migrator, source, target, page_size,
                                                  events=command_events(self, slug, verbosity))
            if verbosity:
                self.stdout.write(f"{slug}: deleted {result.leaves_deleted} losing revisions of "
                                  f"{result.docs} conflicted docs in {source.display_url}")
            if result.errors:
                raise CommandError("Some losing revisions could not be deleted:\n"
                                   + describe_errors(result.errors))
