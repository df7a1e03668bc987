"""The migration state in the Django admin: read-only, with the live status.

Every row is written by the migration commands alone: an edited phase,
checkpoint or refusal would open gates the data does not justify, so nothing
can be added or changed here. Deleting a migration's state is the documented
way to start it over, so it stays, but only while no --continuous runs and
before the cleanup has started (forgetting the phase then would let
--continuous follow the cleanup's deletions into the target), behind a
confirmation page that says what is lost.

Checkpoints and refusals show on their migration's page and have no admin
of their own: they go only with their migration.
"""
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote

from corehq.doctypemigrations import history, state as states, status
from corehq.doctypemigrations.errors import PhaseRefused
# The page is a view of the status like --status, so it takes the same words.
from corehq.doctypemigrations.status_text import attention_messages, summary_rows
from corehq.doctypemigrations.migrator_instances import get_migrator_by_slug
from corehq.doctypemigrations.models import DocTypeMigration, DocTypeMigrationCheckpoint


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CheckpointInline(ReadOnly, admin.TabularInline):
    model = DocTypeMigrationCheckpoint
    extra = 0
    fields = readonly_fields = ('seq', 'timestamp')
    verbose_name_plural = 'recent checkpoints'


@admin.register(DocTypeMigration)
class DocTypeMigrationAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ('slug', 'phase', 'docs_dumped', 'docs_loaded', 'refused', 'heartbeat_at',
                    'created')
    readonly_fields = ('slug', 'phase', 'identity', 'original_seq', 'dump_path', 'dump_since', 'dump_offset',
                       'load_position', 'runner', 'heartbeat_at', 'created')
    fieldsets = [('Recorded state', {'fields': readonly_fields})]
    inlines = [CheckpointInline]
    actions = None  # a bulk delete would bypass the check of each row

    @admin.display(description='refused docs')
    def refused(self, obj):
        return obj.refusals.count()

    def has_delete_permission(self, request, obj=None):
        return obj is not None and why_not_deletable(obj) is None and \
            admin.ModelAdmin.has_delete_permission(self, request, obj)

    def change_view(self, request, object_id, form_url='', extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {}, **(status_context(obj) if obj is not None else {}),
                       **(history_context(obj) if obj is not None else {}))
        return super().change_view(request, object_id, form_url, context)


def why_not_deletable(obj):
    try:
        states.check_deletable(obj)
    except PhaseRefused as refused:
        return str(refused)
    return None


def status_context(obj):
    """What the change page shows above the recorded fields."""
    migrator = get_migrator_by_slug(obj.slug)
    context = {'delete_refused': why_not_deletable(obj)}
    if migrator is None:
        return dict(context, status_missing=f"{obj.slug!r} is not a registered migrator: only the "
                                            f"recorded fields are shown.")
    report = status.current_status(migrator, obj, settings.COUCH_SETTINGS_HELPER)
    return dict(context, status=report, status_rows=summary_rows(report),
                status_attention=attention_messages(report),
                status_unreadable=[problem['database'] for problem in report['couch']['problems']])


def history_context(obj):
    """The chart of changes copied per minute, from the recorded checkpoints."""
    minutes = history.changes_per_minute(history.counted_pairs(obj))
    return {'history': history.bar_chart(minutes) if minutes else None,
            'history_minutes_shown': history.MINUTES_SHOWN}
