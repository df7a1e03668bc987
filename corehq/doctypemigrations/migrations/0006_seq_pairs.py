import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Where the target stood at each checkpoint (source seq, target seq), for
    moving change consumers to the target (Commit 4 of the guide)."""

    dependencies = [
        ('doctypemigrations', '0005_claim_fields'),
    ]

    operations = [
        migrations.AddField(
            model_name='doctypemigration',
            name='dump_end_seq',
            field=models.TextField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name='DocTypeMigrationSeqPair',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source_seq', models.TextField()),
                ('target_seq', models.TextField()),
                ('usable', models.BooleanField(default=False)),
                ('recorded_at', models.DateTimeField(auto_now_add=True)),
                ('migration', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='seq_pairs', to='doctypemigrations.doctypemigration')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
    ]
