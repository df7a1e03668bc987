from django.db import migrations


class Migration(migrations.Migration):
    """The state tables (up to 0010, which --initial needs before the gate
    opens) and the deploy gate meet again."""

    dependencies = [
        ('doctypemigrations', '0009_merge_state_and_gate'),
        ('doctypemigrations', '0010_pair_changes'),
    ]

    operations = []
