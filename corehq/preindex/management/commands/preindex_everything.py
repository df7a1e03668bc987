from corehq.preindex.management.commands.sync_couch_views import Command as SyncCommand


class Command(SyncCommand):
    help = ("Before a deploy: put every design doc on every database it belongs to and "
            "build its indexes, so the new code never waits on an index build.")
