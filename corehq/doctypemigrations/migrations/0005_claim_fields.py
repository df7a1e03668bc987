from django.db import migrations


class Migration(migrations.Migration):
    """The claim is held by whichever phase runs (--initial, --continuous,
    --cleanup), not only by the follower: its fields say so.

    It follows the state tables (0003), not the deploy gate (0002): --initial
    needs these fields while the gate still stops a plain `migrate`."""

    dependencies = [
        ('doctypemigrations', '0003_phases_and_refusals'),
    ]

    operations = [
        migrations.RenameField('doctypemigration', 'follower_owner', 'runner'),
        migrations.RenameField('doctypemigration', 'continuous_heartbeat', 'heartbeat_at'),
    ]
