from django.core.management.base import BaseCommand, CommandError

from corehq.demo.realistic import SHAPES, write_live


class Command(BaseCommand):
    help = ("Live traffic for the demo: every write shape of couchdbkit apps (save, bulk_save, soft and "
            "hard deletes, attachments, replicated conflicts) for a while, or a number of writes.")

    def add_arguments(self, parser):
        parser.add_argument('--seconds', type=float, default=10)
        parser.add_argument('--writes', type=int, help=f"stop after this many writes instead "
                            f"(at least {len(SHAPES)} writes every shape)")
        parser.add_argument('--seed', type=int, default=1)

    def handle(self, seconds, writes, seed, **options):
        if writes is not None and writes < 1:
            raise CommandError("--writes must be at least 1")
        written = write_live(n=writes, seconds=None if writes is not None else seconds, seed=seed)
        self.stdout.write(', '.join(f"{written[shape]} {shape}" for shape in SHAPES))
