from django.contrib import admin

from corehq.doctypemigrations.models import DocTypeMigration, DocTypeMigrationCheckpoint, DocTypeMigrationRefusal


class CheckpointInline(admin.TabularInline):
    model = DocTypeMigrationCheckpoint
    extra = 0
    readonly_fields = ('seq', 'timestamp')


class RefusalInline(admin.TabularInline):
    model = DocTypeMigrationRefusal
    extra = 0
    readonly_fields = ('doc_id', 'rev', 'error', 'reason', 'dump_offset', 'created')


@admin.register(DocTypeMigration)
class DocTypeMigrationAdmin(admin.ModelAdmin):
    list_display = ('slug', 'phase', 'docs_loaded', 'continuous_heartbeat', 'created')
    readonly_fields = ('phase', 'fingerprint', 'identity', 'original_seq', 'follower_owner', 'created')
    inlines = [RefusalInline, CheckpointInline]


@admin.register(DocTypeMigrationCheckpoint)
class DocTypeMigrationCheckpointAdmin(admin.ModelAdmin):
    list_display = ('migration', 'seq', 'timestamp')
