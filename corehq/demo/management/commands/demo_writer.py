import random
import time

from django.core.management.base import BaseCommand

from corehq.apps.users.models import CommCareUser


class Command(BaseCommand):
    help = "Live traffic for the demo: keep renaming, creating and deleting users for a while."

    def add_arguments(self, parser):
        parser.add_argument('--seconds', type=float, default=10)

    def handle(self, seconds, **options):
        db = CommCareUser.get_db()
        ids = [row['id'] for row in db.view('all_docs/by_doc_type', startkey=['CommCareUser'],
                                            endkey=['CommCareUser', {}], reduce=False)]
        rng = random.Random(1)
        edits = {'renamed': 0, 'created': 0, 'deleted': 0}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            action = rng.choice(['renamed'] * 6 + ['created'] * 2 + ['deleted'])
            if action == 'created' or not ids:
                user = CommCareUser(username=f"live{edits['created']}@demo-clinic", domain='demo-clinic')
                user.save()
                ids.append(user._id)
            else:
                user = CommCareUser.get(ids.pop(rng.randrange(len(ids))) if action == 'deleted'
                                        else rng.choice(ids))
                if action == 'deleted':
                    # by rev: couchdbkit's delete() reads the rev from an ETag,
                    # which pouchdb-server does not set to the rev
                    db.delete_doc(user.to_json())
                else:
                    user.first_name = f"renamed {edits['renamed']}"
                    user.save()
            edits[action] += 1
        self.stdout.write(', '.join(f"{n} {action}" for action, n in edits.items()))
