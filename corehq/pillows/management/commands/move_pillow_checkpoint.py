from django.core.management.base import BaseCommand, CommandError

from corehq.couch.commandline import add_give_up_after, phase_budget
from corehq.doctypemigrations import state as states
from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug, get_migrator_slugs
from corehq.doctypemigrations.management.commands._operator import open_databases
from corehq.pillows.management.commands._common import app_db_name, operator_errors
from corehq.pillows.move import move_checkpoint
from corehq.pillows.pillow import PILLOWS, get_pillow


class Command(BaseCommand):
    help = ("After a doc type migration's flip (Commit 4 of the guide): move a stopped pillow's "
            "checkpoint from the migration's source to its target, by the positions the migration "
            "recorded, so that it goes on without processing every migrated doc again.")

    def add_arguments(self, parser):
        parser.add_argument('name', help=f"The pillow ({', '.join(sorted(PILLOWS))}).")
        parser.add_argument('slug', help="The doc type migration that copied its database.")
        add_give_up_after(parser)

    def handle(self, name, slug, **options):
        migrator = get_migrator_by_slug(slug)
        if migrator is None:
            raise CommandError(f"There is no doc type migration {slug!r}; the migrations are: "
                               f"{', '.join(get_migrator_slugs())}.")
        with operator_errors():
            pillow = get_pillow(name)
            source, target = open_databases(migrator, phase_budget(options['give_up_after']))
            state = states.open_state(migrator, source, target)
            result = move_checkpoint(pillow, state, source, target, app_db_name(pillow), slug)
        if not result.moved:
            self.stdout.write(f"Pillow {name} already follows {target.name} (seq {result.target_seq}): "
                              f"nothing to move.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Moved pillow {name} from {source.name} to {target.name}: it goes on at target seq "
            f"{result.target_seq}, recorded when the target held the source up to seq {result.source_seq}."))
        if result.gone:
            self.stdout.write(f"{result.gone} docs changed in the source since then are not in the target; "
                              f"their deletion went to its sink.")
        self.stdout.write(f"From there it processes {result.to_process} changes; a reset would process "
                          f"{result.reset_would_process}.")
