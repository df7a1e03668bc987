from django.db import models


class PillowCheckpoint(models.Model):
    """Where a pillow stands: the last seq it processed, of which database.
    Seqs are stored as JSON text and handed back unchanged: they are opaque."""
    name = models.CharField(max_length=100, unique=True)
    # The real database name the seq belongs to ('' before the first run).
    db_name = models.CharField(max_length=255, blank=True, default='')
    seq = models.TextField(null=True, blank=True)  # None: the start of the feed
    # Changes processed since the checkpoint was last set by hand (first run,
    # --rebuild or a move): what the pillow has had to do since.
    processed = models.BigIntegerField(default=0)
    # When the checkpoint was last saved; a move trusts only the migration's
    # seq pairs recorded before it (see move.py).
    saved_at = models.DateTimeField(null=True, blank=True)
    # host:pid:nonce:action of the one process running it (see doctypemigrations.claim).
    runner = models.CharField(max_length=200, null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"pillow {self.name}"


class UserIndexEntry(models.Model):
    """The sample pillow's sink: one row per live user or group, as a search
    index would hold them."""
    doc_id = models.CharField(max_length=255, primary_key=True)
    doc_type = models.CharField(max_length=100)
    domain = models.CharField(max_length=255, blank=True, default='')
    name = models.CharField(max_length=255, blank=True, default='')
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ['doc_id']
