from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from corehq.couch import CouchDB, CouchError
from corehq.couch.commandline import add_give_up_after, phase_budget
from corehq.couch.indexing import LOG_EVERY_SECONDS, describe, throttled
from corehq.preindex.registry import ExtraPreindexPlugin, design_doc_placements
from corehq.preindex.sync import UNCHANGED, group_by_db, sync_database


class Command(BaseCommand):
    help = ("Push every app's design docs to each database it belongs to (COUCHDB_APPS and "
            "ExtraPreindexPlugin), leaving unchanged ones alone, and build every view's index. "
            "A changed design doc is built as _design/<name>-tmp first and then copied over "
            "_design/<name>, so queries of the old version keep answering meanwhile.")

    def add_arguments(self, parser):
        parser.add_argument('--no-build', action='store_true',
                            help="Push design docs without querying their views (a changed one "
                                 "is then replaced in place).")
        add_give_up_after(parser)

    def handle(self, no_build=False, verbosity=1, give_up_after=None, **options):
        helper = settings.COUCH_SETTINGS_HELPER
        budget = phase_budget(give_up_after)  # one for every database the command writes to
        placements = design_doc_placements(
            helper, apps.get_app_configs(), ExtraPreindexPlugin.registrations())
        for db_name, db_placements in sorted(group_by_db(placements).items(), key=lambda i: str(i[0])):
            db = CouchDB(helper.db_url(db_name), budget=budget)
            if verbosity:
                self.stdout.write(f"{db.display_url}: {len(db_placements)} design docs")
            try:
                sync_database(db, db_placements, build=not no_build,
                              on_doc=self._reporter(verbosity), on_progress=self._progress(verbosity))
            except CouchError as e:
                raise CommandError(f"Could not sync design docs to {db.display_url}: {e}")
        if verbosity:
            self.stdout.write(self.style.SUCCESS("Design docs in sync"))

    def _reporter(self, verbosity):
        def report(placement, outcome):
            if verbosity >= 2 or (verbosity and outcome != UNCHANGED):
                self.stdout.write(f"  {placement.doc_id} ({placement.app_label}): {outcome}")
        return report

    def _progress(self, verbosity):
        if not verbosity:
            return None
        say = throttled(lambda progress, placement: self.stdout.write(
            f"  {placement.doc_id} ({placement.app_label}): {describe(progress)}"), LOG_EVERY_SECONDS)

        def report(placement, progress):
            say(progress, placement)
        return report
