import json

from django.core.management.base import BaseCommand

from corehq.demo.realistic import populate


class Command(BaseCommand):
    help = ("Write realistic data through the apps (to the databases COUCHDB_APPS says): the guide's "
            "doc-type mix beside forms and cases, with histories, conflicts, tombstones and attachments.")

    def add_arguments(self, parser):
        parser.add_argument('--docs', type=int, default=10000)
        parser.add_argument('--seed', type=int, default=0)
        parser.add_argument('--conflict-share', type=float, default=0.03)
        parser.add_argument('--deleted-share', type=float, default=0.03,
                            help="docs ending as tombstones that kept their body")
        parser.add_argument('--plain-deleted-share', type=float, default=0.01)
        parser.add_argument('--attachment-share', type=float, default=0.01)
        parser.add_argument('--json', dest='as_json', action='store_true', help="print the summary as JSON")

    def handle(self, docs, seed, as_json, **options):
        summary = populate(docs, seed=seed, conflict_share=options['conflict_share'],
                           deleted_share=options['deleted_share'],
                           plain_deleted_share=options['plain_deleted_share'],
                           attachment_share=options['attachment_share'])
        if as_json:
            self.stdout.write(json.dumps(summary.as_dict(), sort_keys=True))
            return
        self.stdout.write(f"Saved {summary.total} docs, {len(summary.migrating_ids)} live of migrating types")
        self.stdout.write("  doc types: " + ', '.join(
            f"{n} {doc_type}" for doc_type, n in summary.doc_types.most_common()))
        self.stdout.write("  shapes: " + ', '.join(f"{n} {shape}" for shape, n in summary.shapes.items()))
