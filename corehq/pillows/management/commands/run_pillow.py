from django.core.management.base import BaseCommand

from corehq.couch.commandline import add_give_up_after, phase_budget, stop_signals
from corehq.pillows import checkpoints, runner
from corehq.pillows.management.commands._common import app_db, operator_errors
from corehq.pillows.pillow import PILLOWS, get_pillow


class Command(BaseCommand):
    help = ("Run a pillow: follow the changes of the database its app reads from into its sink, from "
            "its checkpoint. Ctrl-C (or SIGTERM) stops it with its checkpoint saved.")

    def add_arguments(self, parser):
        parser.add_argument('name', help=f"The pillow ({', '.join(sorted(PILLOWS))}).")
        parser.add_argument('--until-caught-up', action='store_true',
                            help="Stop at the end of the changes feed.")
        parser.add_argument('--rebuild', action='store_true',
                            help="Clear its sink and process its database from the start of the feed.")
        parser.add_argument('--batch-size', type=int, default=runner.DEFAULT_SETTINGS.batch_size,
                            help="Changes per page (default %(default)s).")
        parser.add_argument('--heartbeat-seconds', type=float,
                            default=runner.DEFAULT_SETTINGS.heartbeat_seconds,
                            help="How often it records that it is alive.")
        add_give_up_after(parser, "default: never, 600 with --until-caught-up")

    def _page_done(self, verbosity):
        if verbosity > 1:
            return lambda rows, seq: self.stdout.write(f"Processed {rows} changes, seq {seq}")
        return lambda rows, seq: None

    def handle(self, name, **options):
        with operator_errors():
            pillow = get_pillow(name)
            budget = phase_budget(options['give_up_after'], never_by_default=not options['until_caught_up'])
            db = app_db(pillow, budget)
            tuning = runner.DEFAULT_SETTINGS._replace(batch_size=options['batch_size'],
                                                      heartbeat_seconds=options['heartbeat_seconds'])
            try:
                with stop_signals():  # SIGTERM stops a pillow as Ctrl-C does
                    checkpoint = runner.run_pillow(pillow, db, until_caught_up=options['until_caught_up'],
                                                   rebuild=options['rebuild'], settings=tuning,
                                                   on_page=self._page_done(options['verbosity']))
            except KeyboardInterrupt:
                checkpoint = checkpoints.get(pillow.name)
                self.stdout.write(f"Stopped; checkpoint saved at seq {checkpoints.seq(checkpoint)} of "
                                  f"{checkpoint.db_name}")
                return
        self.stdout.write(self.style.SUCCESS(
            f"Pillow {name} caught up with {checkpoint.db_name} at seq {checkpoints.seq(checkpoint)}; "
            f"{checkpoint.processed} changes processed since its checkpoint was last set."))
