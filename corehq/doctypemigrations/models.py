from django.db import models

# The phases of one migration, in order. A migration with no row is "new".
DUMPING, LOADING, FOLLOWING, CLEANING, CLEANED = 'dumping', 'loading', 'following', 'cleaning', 'cleaned'
PHASE_CHOICES = [(phase, phase) for phase in (DUMPING, LOADING, FOLLOWING, CLEANING, CLEANED)]


class DocTypeMigration(models.Model):
    """The state of one migrator, by slug. Seqs are stored as JSON text: on
    clusters they are opaque strings, on pouchdb-server integers."""
    slug = models.CharField(max_length=100, unique=True)
    phase = models.CharField(max_length=20, choices=PHASE_CHOICES, default=DUMPING)
    fingerprint = models.CharField(max_length=64)
    # What the fingerprint was made of, readable: databases, servers, doc types.
    identity = models.TextField(default='', blank=True)
    original_seq = models.TextField()
    # The source's seq read right after the dump completed: every revision the
    # load copies was written at or before it (see state.record_pair).
    dump_end_seq = models.TextField(null=True, blank=True)
    # Where --initial writes its dump (absolute, so --status finds it from anywhere).
    dump_path = models.TextField(null=True, blank=True)
    dump_since = models.TextField(null=True, blank=True)
    dump_offset = models.BigIntegerField(default=0)
    docs_dumped = models.BigIntegerField(default=0)
    load_position = models.BigIntegerField(default=0)  # of the next dump line to load (dumpfile.position)
    docs_loaded = models.BigIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # host:pid:nonce:phase of the run holding the migration's claim (see claim.py).
    runner = models.CharField(max_length=200, null=True, blank=True)
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


class DocTypeMigrationSeqPair(models.Model):
    """Where the target stood when the migration had copied the source up to a
    seq: ``target_seq`` was read after the target acknowledged every write up
    to ``source_seq``. A pair is ``usable`` when every source change after
    ``source_seq`` shows up in the target's feed after ``target_seq`` (see
    state.record_pair): a change consumer that processed the source up to
    ``source_seq`` may go on from ``target_seq`` on the target."""
    migration = models.ForeignKey(DocTypeMigration, on_delete=models.CASCADE, related_name='seq_pairs')
    source_seq = models.TextField()
    target_seq = models.TextField()
    usable = models.BooleanField(default=False)
    recorded_at = models.DateTimeField(auto_now_add=True)
    # The source changes read since the previous pair (the batch's feed rows,
    # with those of pairs thinned out since); None for the pair of --initial
    # and for pairs recorded before this was. The admin's chart is drawn from it.
    changes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ['id']  # the order of recording, which is the order of the source's feed


class DocTypeMigrationRefusal(models.Model):
    """A revision the target refused. Refused while loading the dump, it keeps
    the initial phase from completing, and a rerun of --initial sends it again;
    refused while following (no dump line), --continuous moves on past it and
    sends the doc again with every batch until the target takes it."""
    migration = models.ForeignKey(DocTypeMigration, on_delete=models.CASCADE,
                                  related_name='refusals')
    doc_id = models.TextField()
    rev = models.CharField(max_length=200)
    error = models.CharField(max_length=200)
    reason = models.TextField(blank=True, default='')
    # The revision's line in the dump file, to send it again: the offset of
    # its compressed block times 1,000,000 plus its index in that block
    # (see dumpfile.position); None for a revision --continuous could not copy.
    line_position = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ['line_position', 'id']
        constraints = [models.UniqueConstraint(fields=['migration', 'line_position'],
                                               name='one_refusal_per_dump_line')]
