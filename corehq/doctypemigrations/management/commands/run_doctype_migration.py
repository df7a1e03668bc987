import signal
import sys
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from corehq.doctypemigrations import checkpoints, cleanup, dumpfile, follower, initial, stats, verify
from corehq.doctypemigrations.couch import CouchDB, CouchError
from corehq.doctypemigrations.loader import describe_errors
from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug, get_migrator_slugs
from corehq.doctypemigrations.progress import no_progress, terminal_progress
from corehq.doctypemigrations.selection import DocTypeSelection

PHASES = ('stats', 'initial', 'continuous', 'verify', 'cleanup', 'erase_continuous_progress')

# Failures that are the operator's to fix: each becomes a one-line CommandError.
EXPECTED_ERRORS = (CouchError, checkpoints.StateError, dumpfile.DumpFileError, ImproperlyConfigured,
                   initial.InitialAlreadyComplete, follower.NotReadyToFollow, cleanup.CleanupRefused,
                   stats.StatsViewMissing)


@contextmanager
def sigterm_as_interrupt():
    """A supervisor's SIGTERM stops --continuous as cleanly as Ctrl-C does
    (and a background job started by a script ignores SIGINT)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def usage_error():
    slugs = '\n'.join(get_migrator_slugs())
    return CommandError(
        "You may run either of the following commands\n\n"
        "./manage.py run_doctype_migration <slug> --initial\n"
        "./manage.py run_doctype_migration <slug> --continuous\n\n"
        f"with with the following slugs:\n\n{slugs}\n")


class Command(BaseCommand):
    help = "Copy a migrator's doc types to their new database: --stats, --initial, --continuous, --cleanup."

    def add_arguments(self, parser):
        parser.add_argument('slug', nargs='?')
        phase = parser.add_mutually_exclusive_group()
        phase.add_argument('--stats', action='store_true', help="Counts per doc type in both databases.")
        phase.add_argument('--initial', action='store_true',
                           help="Dump the docs to ./<slug>.log, then load them into the target.")
        phase.add_argument('--continuous', action='store_true',
                           help="Follow the source's changes from the last checkpoint.")
        phase.add_argument('--verify', action='store_true',
                           help="Compare every migrating doc's winner, conflicts and deleted state.")
        phase.add_argument('--cleanup', action='store_true',
                           help="Delete the migrated docs from the source (after the flip).")
        phase.add_argument('--erase-continuous-progress', action='store_true',
                           help="Reset --continuous to the seq recorded before the dump.")
        parser.add_argument('--until-caught-up', action='store_true',
                            help="With --continuous: stop at the end of the changes feed.")
        parser.add_argument('--noinput', '--no-input', action='store_false', dest='interactive',
                            help="With --cleanup: do not ask for confirmation.")
        parser.add_argument('--dry-run', action='store_true',
                            help="With --cleanup: show what would be deleted, delete nothing.")
        parser.add_argument('--canary-wait', type=float, default=10.0,
                            help="With --cleanup: seconds to watch for a running --continuous.")
        parser.add_argument('--dump-file', help="Where --initial dumps (default ./<slug>.log).")
        parser.add_argument('--page-size', type=int, default=initial.DEFAULT_SETTINGS.page_size,
                            help="Docs per read and per write (lower it for rate-limited clusters).")

    def handle(self, slug=None, **options):
        migrator = get_migrator_by_slug(slug) if slug else None
        if migrator is None:
            raise usage_error()
        phases = [name for name in PHASES if options[name]]
        if not phases:
            raise CommandError(f"Say what to do with {slug!r}: one of --stats, --initial, "
                               f"--continuous, --verify, --cleanup, --erase-continuous-progress.")
        self.verbosity = options['verbosity']
        try:
            migrator.validate(settings.COUCH_SETTINGS_HELPER)
            source, target = self._databases(migrator)
            getattr(self, f"run_{phases[0]}")(migrator, source, target, options)
        except EXPECTED_ERRORS as e:
            raise CommandError(str(e))
        except DatabaseError as e:
            raise CommandError(f"The migration state in Django's database is not readable ({e}): "
                               f"run `./manage.py migrate doctypemigrations 0001` first.")

    def _databases(self, migrator):
        helper = settings.COUCH_SETTINGS_HELPER
        return (CouchDB(helper.db_url(migrator.source_db_name)),
                CouchDB(helper.db_url(migrator.target_db_name)))

    def say(self, message, style=None):
        if self.verbosity:
            self.stdout.write(style(message) if style else message)

    def _progress(self):
        # Bars go to stderr, like tqdm's own default, so stdout stays parseable.
        if self.verbosity and self.stderr.isatty():
            return terminal_progress(self.stderr._out)
        return no_progress

    # -- phases ------------------------------------------------------------

    def run_stats(self, migrator, source, target, options):
        source_counts = stats.doc_type_counts(source)
        target_counts = stats.doc_type_counts(target)
        self.stdout.write(f"Source DB: {source.display_url}")
        self.stdout.write(f"Target DB: {target.display_url}")
        self.stdout.write("")
        for line in stats.count_table(migrator.all_doc_types, source_counts, target_counts):
            self.stdout.write(line)

    def run_initial(self, migrator, source, target, options):
        dump_path = options['dump_file'] or f"{migrator.slug}.log"
        self.say(f"Dumping {source.display_url} to {dump_path}, then loading into {target.display_url}")
        try:
            tuning = initial.DEFAULT_SETTINGS._replace(page_size=options['page_size'],
                                                       batch_docs=options['page_size'])
            result = initial.run_initial(migrator, source, target, dump_path, settings=tuning,
                                         progress=self._progress())
        except initial.LoadFailed as e:
            raise CommandError(f"{e}; the initial phase is not complete:\n{describe_errors(e.errors)}")
        if result.missing_revs:
            self.say(f"{result.missing_revs} revisions changed while dumping; --continuous copies them.")
        self.say(f"Initial migration complete: {result.docs_loaded} docs loaded. "
                 f"Now run --continuous (it starts at seq {result.original_seq}).", self.style.SUCCESS)

    def run_continuous(self, migrator, source, target, options):
        state = checkpoints.get_state(migrator)
        follower.check_can_follow(state, migrator.slug)
        events = _PrintingEvents(self)
        run = follower.ChangesFollower(source, target, DocTypeSelection(migrator.all_doc_types),
                                       state, events=events)
        try:
            with sigterm_as_interrupt():
                run.run(until_caught_up=options['until_caught_up'])
        except KeyboardInterrupt:
            self.say(f"Stopped; checkpoint saved at seq {checkpoints.latest_checkpoint(state)}")
        except follower.ContinuousWriteFailed as e:
            raise CommandError(f"{e}; the checkpoint was not moved past them:\n{describe_errors(e.errors)}")

    def run_verify(self, migrator, source, target, options):
        result = verify.verify(migrator, source, target)
        counts = result.counts
        self.stdout.write(", ".join(f"{counts[outcome]} {outcome}" for outcome in
                                    (verify.EQUAL, verify.MISSING, verify.STALE, verify.EXTRA)))
        if verify.is_clean(result):
            self.say("Source and target agree on every migrating doc.", self.style.SUCCESS)
            return
        self.stdout.write("First differing docs:")
        for doc_id, outcome in result.differing:
            self.stdout.write(f"  {doc_id}: {outcome}")
        raise CommandError("Source and target differ (a --continuous that is behind shows as stale).")

    def run_erase_continuous_progress(self, migrator, source, target, options):
        state = checkpoints.get_state(migrator)
        follower.check_can_follow(state, migrator.slug)
        checkpoints.reset_checkpoint_to_original(state)
        self.say(f"--continuous will start again at seq {checkpoints.original_seq(state)}")

    def run_cleanup(self, migrator, source, target, options):
        state = checkpoints.get_state(migrator)
        cleanup.check_can_clean_up(state, migrator.slug)
        dry_run = options['dry_run']
        if not dry_run:
            self._confirm_cleanup(migrator, source, options['interactive'])
            cleanup.check_not_following(state, source, target, migrator.all_doc_types[0],
                                        options['canary_wait'])
        with self._progress()('Cleaning up', unit='docs scanned') as bar:
            result = cleanup.clean_up(migrator, source, target, dry_run=dry_run, progress=bar)
        self._report_cleanup(result, dry_run)
        if dry_run:
            return
        if result.differing or result.errors:
            raise CommandError("Cleanup is not complete: the docs above were left in the source.")
        cleanup.mark_complete(state)
        self.say("Cleanup complete: the migrated docs are only in the target now.", self.style.SUCCESS)

    def _confirm_cleanup(self, migrator, source, interactive):
        if not interactive:
            return
        if not sys.stdin.isatty():
            raise CommandError("--cleanup deletes documents and needs confirmation: run it in a "
                               "terminal, or pass --noinput.")
        question = (f"This deletes every document of the doc types\n  {', '.join(migrator.all_doc_types)}\n"
                    f"from {source.display_url} when the target holds every revision of it.\n"
                    f"Run ./manage.py delete_doc_conflicts first, or conflicted docs keep their "
                    f"losing revisions.\nContinue? [y/n] ")
        if input(question).strip().lower() not in ('y', 'yes'):
            raise CommandError("Cleanup cancelled; nothing was deleted.")

    def _report_cleanup(self, result, dry_run):
        verb = "Would delete" if dry_run else "Deleted"
        self.say(f"{verb} {result.deleted} docs from the source.")
        if result.differing:
            self.stdout.write(self.style.WARNING(
                f"{len(result.differing)} docs have revisions the target lacks and were left alone "
                f"(is --continuous caught up?):"))
            for doc_id in result.differing[:50]:
                self.stdout.write(f"  {doc_id}")
        if result.errors:
            self.stdout.write(self.style.WARNING(f"{len(result.errors)} deletions failed:\n"
                                                 f"{describe_errors(result.errors)}"))


class _PrintingEvents(follower.FollowerEvents):
    def __init__(self, command):
        self.command = command

    def committed(self, changes_read, seq):
        self.command.say(f"Read {changes_read} changes, saved seq {seq}")

    def caught_up(self, seq):
        self.command.say("All caught up!", self.command.style.SUCCESS)

    def retrying(self, error, delay):
        self.command.stderr.write(f"{error}; retrying in {delay}s")
