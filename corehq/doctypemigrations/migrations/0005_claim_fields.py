from django.db import migrations


class Migration(migrations.Migration):
    """The claim is held by whichever phase runs (--initial, --continuous,
    --cleanup), not only by the follower: its fields say so."""

    dependencies = [
        ('doctypemigrations', '0004_merge_state_and_gate'),
    ]

    operations = [
        migrations.RenameField('doctypemigration', 'follower_owner', 'runner'),
        migrations.RenameField('doctypemigration', 'continuous_heartbeat', 'heartbeat_at'),
    ]
