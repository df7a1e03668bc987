from django.db import migrations, models


class Migration(migrations.Migration):
    """How many source changes each seq pair's checkpoint covered, for the
    admin's chart of changes per minute (seqs are opaque: never subtracted)."""

    dependencies = [
        ('doctypemigrations', '0008_positions_and_follow_refusals'),
    ]

    operations = [
        migrations.AddField(
            model_name='doctypemigrationseqpair',
            name='changes',
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
