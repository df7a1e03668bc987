from django.db import migrations


class Migration(migrations.Migration):
    """The state tables (up to 0008, which --initial needs before the gate
    opens) and the deploy gate meet again."""

    dependencies = [
        ('doctypemigrations', '0007_merge_state_and_gate'),
        ('doctypemigrations', '0008_positions_and_follow_refusals'),
    ]

    operations = []
