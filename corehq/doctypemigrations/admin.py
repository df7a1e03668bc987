from django.contrib import admin

from corehq.doctypemigrations.models import DocTypeMigration, DocTypeMigrationCheckpoint


class CheckpointInline(admin.TabularInline):
    model = DocTypeMigrationCheckpoint
    extra = 0
    readonly_fields = ('seq', 'timestamp')


@admin.register(DocTypeMigration)
class DocTypeMigrationAdmin(admin.ModelAdmin):
    list_display = ('slug', 'dump_complete', 'docs_loaded', 'cleanup_complete',
                    'continuous_heartbeat', 'created')
    readonly_fields = ('fingerprint', 'original_seq', 'created')
    inlines = [CheckpointInline]


@admin.register(DocTypeMigrationCheckpoint)
class DocTypeMigrationCheckpointAdmin(admin.ModelAdmin):
    list_display = ('migration', 'seq', 'timestamp')
