"""Where a pillow puts what it makes of the changes: a small interface, so a
search index can take the Django table's place."""
from corehq.pillows.models import UserIndexEntry


class Sink:
    """Entries by doc id. Both writes must be idempotent: a pillow processes
    every change at least once, some twice."""

    def save(self, entries):
        """Create or replace ``entries`` ({doc_id: fields})."""
        raise NotImplementedError

    def delete(self, doc_ids):
        raise NotImplementedError

    def clear(self):
        raise NotImplementedError


class UserIndexSink(Sink):
    """The user index in a Django table (UserIndexEntry)."""

    def save(self, entries):
        # one upsert: no read before the write, which on SQLite would take a
        # lock another process may hold, and fail at once rather than wait
        rows = [UserIndexEntry(doc_id=doc_id, **fields) for doc_id, fields in entries.items()]
        if rows:
            UserIndexEntry.objects.bulk_create(rows, update_conflicts=True, unique_fields=['doc_id'],
                                               update_fields=['doc_type', 'domain', 'name', 'active'])

    def delete(self, doc_ids):
        UserIndexEntry.objects.filter(doc_id__in=list(doc_ids)).delete()

    def clear(self):
        UserIndexEntry.objects.all().delete()

    def entries(self):
        """{doc_id: fields}, to compare one index with another."""
        return {row['doc_id']: {k: v for k, v in row.items() if k != 'doc_id'}
                for row in UserIndexEntry.objects.values()}
