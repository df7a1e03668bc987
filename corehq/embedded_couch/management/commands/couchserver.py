from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from corehq.embedded_couch.server import EmbeddedCouch, EmbeddedCouchError


def embedded_couch():
    return EmbeddedCouch(settings.BASE_DIR, settings.COUCH_EMBEDDED_DATA_DIR,
                         settings.COUCH_EMBEDDED_PORT)


class Command(BaseCommand):
    help = "Start, stop or query the embedded pouchdb-server (the default CouchDB server)."

    def add_arguments(self, parser):
        parser.add_argument('action', choices=['start', 'stop', 'status'])

    def handle(self, action, **options):
        server = embedded_couch()
        try:
            getattr(self, action)(server)
        except EmbeddedCouchError as e:
            raise CommandError(str(e))

    def start(self, server):
        if server.start():
            started = f"pouchdb-server started on {server.url} (pid {server.pid()})"
            self.stdout.write(self.style.SUCCESS(started))
        else:
            self.stdout.write(f"pouchdb-server already running on {server.url} (pid {server.pid()})")

    def stop(self, server):
        if server.stop():
            self.stdout.write(self.style.SUCCESS("pouchdb-server stopped"))
        else:
            self.stdout.write("pouchdb-server was not running")

    def status(self, server):
        pid = server.pid()
        if pid is None:
            self.stdout.write(f"pouchdb-server is not running (port {server.port})")
        else:
            self.stdout.write(f"pouchdb-server is running on {server.url} (pid {pid})")
