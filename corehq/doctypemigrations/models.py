from django.db import models


class DocTypeMigration(models.Model):
    """The state of one migrator, by slug. Seqs are stored as JSON text: on
    clusters they are opaque strings, on pouchdb-server integers."""
    slug = models.CharField(max_length=100, unique=True)
    fingerprint = models.CharField(max_length=64)
    original_seq = models.TextField()
    dump_since = models.TextField(null=True, blank=True)
    dump_offset = models.BigIntegerField(default=0)
    dump_complete = models.BooleanField(default=False)
    docs_dumped = models.BigIntegerField(default=0)
    load_offset = models.BigIntegerField(default=0)
    docs_loaded = models.BigIntegerField(default=0)
    cleanup_complete = models.BooleanField(default=False)
    continuous_heartbeat = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.slug


class DocTypeMigrationCheckpoint(models.Model):
    """A seq of the source up to which the target has everything. The first one,
    written when --initial finishes, is what "initial complete" means."""
    migration = models.ForeignKey(DocTypeMigration, on_delete=models.CASCADE,
                                  related_name='checkpoints')
    seq = models.TextField()
    timestamp = models.DateTimeField(auto_now_add=True)

    class Meta:
        get_latest_by = 'timestamp'
        ordering = ['-timestamp', '-id']
