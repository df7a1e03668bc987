from django.core.management.base import BaseCommand

from corehq.demo.sample_data import create_sample_data


class Command(BaseCommand):
    help = "Save sample users, groups and domains through the apps (to the databases COUCHDB_APPS says)."

    def add_arguments(self, parser):
        parser.add_argument('--users', type=int, default=1000)
        parser.add_argument('--groups', type=int, default=100)

    def handle(self, users, groups, **options):
        counts = create_sample_data(users, groups)
        summary = ', '.join(f"{n} {doc_type}" for doc_type, n in sorted(counts.items()))
        self.stdout.write(f"Saved {summary}")
