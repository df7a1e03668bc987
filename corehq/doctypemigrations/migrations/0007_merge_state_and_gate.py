from django.db import migrations


class Migration(migrations.Migration):
    """The state tables (up to 0006, which --initial needs before the gate
    opens) and the deploy gate (0002) meet again."""

    dependencies = [
        ('doctypemigrations', '0004_merge_state_and_gate'),
        ('doctypemigrations', '0006_seq_pairs'),
    ]

    operations = []
