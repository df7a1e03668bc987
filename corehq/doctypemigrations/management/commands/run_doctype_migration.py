import json
import sys
from collections import namedtuple

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from corehq.doctypemigrations import (
    cleanup, follower, inflight, initial, state as states, stats, status, verify,
)
from corehq.couch.commandline import add_give_up_after, number, phase_budget, stoppable
from corehq.doctypemigrations.dumpfile import check_dump_path, describe_position
from corehq.doctypemigrations.management.commands._allocator import keep_memory_flat
from corehq.doctypemigrations.management.commands._operator import (
    open_databases, operator_errors,
)
from corehq.doctypemigrations.management.commands._events import command_events
from corehq.doctypemigrations.status_text import render_text
from corehq.doctypemigrations.management.commands._text import (
    count_table, describe_errors, verify_hint,
)
from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug, get_migrator_slugs

VERIFIED = {
    False: "Source and target agree on every migrating doc.",
    True: "The cleanup kept its promise: the target holds every revision the source deleted, and no "
          "migrating doc is live in the source.",
}
PHASES = ('stats', 'initial', 'continuous', 'verify', 'cleanup', 'erase_continuous_progress')

# An option of one phase only, and its value when it is not given: given with
# another phase it would be silently ignored, so it is refused.
PhaseOption = namedtuple('PhaseOption', 'flag phase unset')
PHASE_OPTIONS = {
    'json': PhaseOption('--json', 'status', False),
    'max_pending': PhaseOption('--max-pending', 'status', None),
    'dry_run': PhaseOption('--dry-run', 'cleanup', False),
    'copy_missing': PhaseOption('--copy-missing', 'cleanup', False),
    'interactive': PhaseOption('--noinput', 'cleanup', True),
    'canary_wait': PhaseOption('--canary-wait', 'cleanup', None),
    'settle_wait': PhaseOption('--settle-wait', 'cleanup', None),
    'until_caught_up': PhaseOption('--until-caught-up', 'continuous', False),
    'heartbeat_seconds': PhaseOption('--heartbeat-seconds', 'continuous', None),
    'keep_dump': PhaseOption('--keep-dump', 'initial', False),
    'skip_disk_check': PhaseOption('--skip-disk-check', 'initial', False),
    'assume_free_bytes': PhaseOption('--assume-free-bytes', 'initial', None),
    'dump_file': PhaseOption('--dump-file', 'initial', None),
}
# The defaults of the options above that default to None (so that giving them is seen).
OPTION_DEFAULTS = {'max_pending': status.DEFAULT_MAX_PENDING, 'canary_wait': 10.0,
                   'settle_wait': cleanup.CleanupSettings().settle_wait,
                   'heartbeat_seconds': follower.DEFAULT_SETTINGS.heartbeat_seconds}


def usage_text():
    """The guide's text (its typo included: operators search for it), then the other phases."""
    slugs = '\n'.join(get_migrator_slugs())
    return ("You may run either of the following commands\n\n"
            "./manage.py run_doctype_migration <slug> --initial\n"
            "./manage.py run_doctype_migration <slug> --continuous\n\n"
            f"with with the following slugs:\n\n{slugs}\n\n"
            "The other phases: --stats (counts per doc type), --verify (compare every migrating doc), "
            "--cleanup (after the flip), --erase-continuous-progress, and --status (where the "
            "migration stands, changing nothing).\n")


def usage_error():
    return CommandError(usage_text())


def unknown_slug_error(slug, **kwargs):
    return CommandError(f"{slug!r} is not a known migration slug; the known ones: "
                        f"{', '.join(get_migrator_slugs())}.\n\n{usage_text()}", **kwargs)


def check_phase_options(phase, options, **kwargs):
    """Refuse an option of another phase: it would be silently ignored."""
    for dest, option in PHASE_OPTIONS.items():
        if option.phase != phase and options.get(dest, option.unset) != option.unset:
            raise CommandError(f"{option.flag} is an option of --{option.phase} only: it does "
                               f"nothing with --{phase.replace('_', '-')}.", **kwargs)


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
        phase.add_argument('--status', action='store_true',
                           help="Show where the migration stands, changing nothing. Exits 0 when "
                                "fine, 1 when it needs attention, 2 when it cannot be told.")
        parser.add_argument('--json', action='store_true', help="With --status: print JSON.")
        parser.add_argument('--max-pending', type=number(int, 0),
                            help="With --status: more changes than this behind the last "
                                 f"checkpoint need attention (default {status.DEFAULT_MAX_PENDING}).")
        parser.add_argument('--until-caught-up', action='store_true',
                            help="With --continuous: stop at the end of the changes feed.")
        parser.add_argument('--noinput', '--no-input', action='store_false', dest='interactive',
                            help="With --cleanup: do not ask for confirmation.")
        parser.add_argument('--dry-run', action='store_true',
                            help="With --cleanup: show what would be deleted, delete nothing.")
        parser.add_argument('--copy-missing', action='store_true',
                            help="With --cleanup: first copy into the target the revisions it lacks "
                                 "(written to the source after --continuous stopped), then delete.")
        parser.add_argument('--canary-wait', type=number(float, 0),
                            help=f"With --cleanup: seconds to watch for a running --continuous "
                                 f"(default {OPTION_DEFAULTS['canary_wait']}).")
        parser.add_argument('--settle-wait', type=number(float, 0),
                            help=f"With --cleanup on a cluster: seconds to wait for every node to be "
                                 f"up and its copies in step before the final check that nothing is "
                                 f"left (default {OPTION_DEFAULTS['settle_wait']:g}).")
        parser.add_argument('--heartbeat-seconds', type=number(float, 0, above=True),
                            help=f"With --continuous: how often it records that it is alive "
                                 f"(default {OPTION_DEFAULTS['heartbeat_seconds']}).")
        parser.add_argument('--dump-file', help="Where --initial dumps (default ./<slug>.log).")
        parser.add_argument('--keep-dump', action='store_true',
                            help="With --initial: keep the dump file once the load is complete (it "
                                 "holds every migrated doc, password hashes included).")
        parser.add_argument('--skip-disk-check', action='store_true',
                            help="With --initial: dump without comparing its estimated size with "
                                 "the free disk.")
        parser.add_argument('--assume-free-bytes', type=number(int, 0), metavar='N',
                            help="With --initial: take N bytes as the dump folder's free space "
                                 "instead of measuring it (to rehearse the disk check).")
        parser.add_argument('--workers', type=number(int, 1), default=inflight.DEFAULT_WORKERS,
                            help="Requests kept in flight by --initial, --verify and --cleanup, "
                                 "and by --continuous for attachment data (default %(default)s; "
                                 "fewer while the server rate-limits).")
        add_give_up_after(parser, "default 600; --continuous: never")
        parser.add_argument('--page-size', type=number(int, 1),
                            help="Docs per read and per write in every phase that pages (lower it "
                                 "for rate-limited clusters); each phase has its own default.")

    def handle(self, slug=None, **options):
        keep_memory_flat()
        migrator = get_migrator_by_slug(slug) if slug else None
        # --status answers monitors: whatever stops it is 2, "cannot be told" (see run_status)
        code = {'returncode': status.UNREADABLE} if options['status'] else {}
        if slug and migrator is None:
            raise unknown_slug_error(slug, **code)
        if options['status']:
            check_phase_options('status', options, **code)
            with stoppable('--status'):
                return self.run_status(migrator, self._with_defaults(options))
        if migrator is None:
            raise usage_error()
        phases = [name for name in PHASES if options[name]]
        if not phases:
            raise CommandError(f"Say what to do with {slug!r}: one of --stats, --initial, "
                               f"--continuous, --verify, --cleanup, --erase-continuous-progress, "
                               f"--status.")
        check_phase_options(phases[0], options)
        options = self._with_defaults(options)
        self.verbosity = options['verbosity']
        with operator_errors():
            if phases[0] == 'initial':
                check_dump_path(self._dump_path(migrator, options))
            source, target = open_databases(migrator, self._budget(phases[0], options))
            with stoppable(f"--{phases[0].replace('_', '-')}"):
                getattr(self, f"run_{phases[0]}")(migrator, source, target, options)

    @staticmethod
    def _with_defaults(options):
        return {**options, **{dest: default for dest, default in OPTION_DEFAULTS.items()
                              if options.get(dest) is None}}

    @staticmethod
    def _dump_path(migrator, options):
        return options['dump_file'] or f"{migrator.slug}.log"

    @staticmethod
    def _budget(phase, options):
        """One budget for the phase's requests to both databases."""
        return phase_budget(options['give_up_after'], never_by_default=phase == 'continuous')

    def say(self, message, style=None):
        if self.verbosity:
            self.stdout.write(style(message) if style else message)

    def warn(self, message):
        self.stdout.write(self.style.WARNING(message))

    def _events(self, migrator):
        return command_events(self, migrator.slug, self.verbosity)

    @staticmethod
    def _page_size(options, default):
        return options['page_size'] or default

    # -- phases ------------------------------------------------------------

    def run_stats(self, migrator, source, target, options):
        events = self._events(migrator)
        source_counts = stats.doc_type_counts(source, migrator.all_doc_types, events)
        target_counts = stats.doc_type_counts(target, migrator.all_doc_types, events)
        self.stdout.write(f"Source DB: {source.display_url}")
        self.stdout.write(f"Target DB: {target.display_url}")
        self.stdout.write("")
        for line in count_table(migrator.all_doc_types, source_counts, target_counts):
            self.stdout.write(line)

    def run_initial(self, migrator, source, target, options):
        dump_path = self._dump_path(migrator, options)
        self.say(f"Dumping {source.display_url} to {dump_path}, then loading into {target.display_url}")
        page_size = self._page_size(options, initial.DEFAULT_SETTINGS.page_size)
        tuning = initial.DEFAULT_SETTINGS._replace(page_size=page_size, batch_docs=page_size,
                                                   workers=options['workers'])
        result = initial.run_initial(migrator, source, target, dump_path, settings=tuning,
                                     events=self._events(migrator), keep_dump=options['keep_dump'],
                                     check_disk=not options['skip_disk_check'],
                                     free_bytes=options['assume_free_bytes'])
        if result.dump_resumed_at is not None:
            self.say(f"Resumed the dump at byte {result.dump_resumed_at} of {dump_path}.")
        if result.load_resumed_at is not None:
            self.say(f"Resumed the load at {describe_position(result.load_resumed_at)} of {dump_path}.")
        if result.retried:
            self.say(f"{result.retried} documents refused by an earlier run went in this time.")
        if result.missing_revs:
            self.say(f"{result.missing_revs} revisions changed while dumping; --continuous copies them.")
        self.say(f"Initial migration complete: {result.docs_loaded} docs loaded. "
                 f"Now run --continuous (it starts at seq {result.original_seq}).", self.style.SUCCESS)
        if result.dump_removed:
            self.say(f"Removed {dump_path}: it held every migrated doc (--keep-dump keeps it).")
        else:
            self.say(f"Kept {dump_path}: it holds every migrated doc, password hashes included; "
                     f"delete it once you no longer need it.")

    def run_continuous(self, migrator, source, target, options):
        tuning = follower.DEFAULT_SETTINGS._replace(
            batch_size=self._page_size(options, follower.DEFAULT_SETTINGS.batch_size),
            heartbeat_seconds=options['heartbeat_seconds'], workers=options['workers'])
        try:
            follower.run_continuous(migrator, source, target, tuning, self._events(migrator),
                                    until_caught_up=options['until_caught_up'])
        except KeyboardInterrupt:  # a stop of the follower is no failure (see stop_signals)
            state = states.get(migrator.slug)  # by slug: no request starts once stopping
            self.say(f"Stopped; checkpoint saved at seq {states.latest_checkpoint(state)}")

    def run_verify(self, migrator, source, target, options):
        result = verify.run_verify(migrator, source, target, page_size=self._page_size(options, 1000),
                                   workers=options['workers'], events=self._events(migrator))
        counts = result.counts
        self.stdout.write(", ".join(f"{counts[outcome]} {outcome}"
                                    for outcome in verify.outcomes_of(result.phase)
                                    if counts[outcome] or outcome in verify.ALWAYS_SHOWN))
        if verify.is_clean(result):
            self.say(VERIFIED[verify.is_after_cleanup_started(result.phase)], self.style.SUCCESS)
            return
        self.stdout.write("First differing docs:")
        for doc_id, outcome in result.differing:
            self.stdout.write(f"  {doc_id}: {outcome}")
        hints = [f"{outcome}: {verify_hint(outcome, result.phase, migrator.slug, result.follower_running)}"
                 for outcome in verify.outcomes_of(result.phase) if outcome not in verify.AGREEING
                 and counts[outcome]]
        raise CommandError(f"Source and target differ (phase {result.phase}).\n" + "\n".join(hints))

    def run_status(self, migrator, options):
        """Prints the status; its exit code is for monitors (see status.exit_code).
        Reads the state by slug, unchecked: it must answer when nothing else would."""
        try:
            if migrator is None:
                raise usage_error()
            with operator_errors():
                report = status.current_status(migrator, states.get(migrator.slug),
                                               settings.COUCH_SETTINGS_HELPER,
                                               max_pending=options['max_pending'])
        except CommandError as e:
            e.returncode = status.UNREADABLE
            raise
        self.stdout.write(json.dumps(report, indent=2) if options['json'] else render_text(report))
        code = status.exit_code(report)
        if code == status.ATTENTION:
            raise CommandError(f"{migrator.slug} needs attention: {', '.join(report['attention'])}",
                               returncode=code)
        if code == status.UNREADABLE:
            problems = '; '.join(f"the {p['database']}: {p['reason']}" for p in report['couch']['problems'])
            raise CommandError(f"{migrator.slug}: where it stands cannot be told ({problems})",
                               returncode=code)

    def run_erase_continuous_progress(self, migrator, source, target, options):
        seq = states.erase_continuous_progress(migrator, source, target)
        self.say(f"--continuous will start again at seq {seq}")

    def run_cleanup(self, migrator, source, target, options):
        dry_run = options['dry_run']
        tuning = cleanup.CleanupSettings(page_size=self._page_size(options, 1000), dry_run=dry_run,
                                         copy_missing=options['copy_missing'], workers=options['workers'],
                                         canary_wait=options['canary_wait'],
                                         settle_wait=options['settle_wait'])
        result = cleanup.run_cleanup(
            migrator, source, target, tuning, events=self._events(migrator),
            confirm=lambda: self._confirm_cleanup(migrator, source, options['interactive']))
        self._report_cleanup(migrator, result, dry_run)
        if dry_run:
            return
        if not cleanup.is_complete(result):
            raise CommandError("Cleanup is not complete: the docs above were left in the source. "
                               "Do not run --continuous again: the cleanup has started.")
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

    def _report_cleanup(self, migrator, result, dry_run):
        verb = "Would delete" if dry_run else "Deleted"
        self.say(f"{verb} {result.deleted} docs from the source.")
        if result.copied:
            self.say(f"Copied the missing revisions of {result.copied} docs into the target first.")
        if result.differing:
            self.warn(f"{len(result.differing)} docs have revisions the target lacks (written to the "
                      f"source after --continuous stopped) and were left in the source. Rerun "
                      f"--cleanup with --copy-missing to copy them into the target (new_edits=false: "
                      f"nothing in the target is deleted or overwritten), then delete them:")
            self._list_ids(result.differing)
        if result.changed:
            self.warn(f"{len(result.changed)} docs changed during the cleanup (a new revision the "
                      f"target lacks appeared after they were listed) and were left in the source; "
                      f"rerun --cleanup (with --copy-missing to bring the new revisions over):")
            self._list_ids(result.changed)
        if result.again:
            self.warn(f"{len(result.again)} docs were written to the source again after their deletion "
                      f"(something still writes there?); the target holds those revisions, so they "
                      f"were deleted again:")
            self._list_ids(result.again)
        if result.errors:
            self.warn(f"{len(result.errors)} deletions failed:\n{describe_errors(result.errors)}")
        for reason in result.unproven:
            self.warn(f"Could not check that no other migrating doc is live in the source: {reason}. "
                      f"Rerun --cleanup once every node is up and nothing writes to the source.")

    def _list_ids(self, doc_ids, limit=50):
        for doc_id in doc_ids[:limit]:
            self.stdout.write(f"  {doc_id}")
        if len(doc_ids) > limit:
            self.stdout.write(f"  ... and {len(doc_ids) - limit} more")
