from django.db import migrations, models


class Migration(migrations.Migration):
    """Positions are called positions (a dump line's, the load's), apart from
    the dump's byte offset; a revision --continuous could not copy is recorded
    as a refusal without a dump line."""

    dependencies = [
        ('doctypemigrations', '0006_seq_pairs'),
    ]

    operations = [
        migrations.RemoveConstraint('doctypemigrationrefusal', 'one_refusal_per_dump_line'),
        migrations.RenameField('doctypemigrationrefusal', 'dump_offset', 'line_position'),
        migrations.AlterField('doctypemigrationrefusal', 'line_position',
                              models.BigIntegerField(null=True, blank=True)),
        migrations.AddConstraint('doctypemigrationrefusal', models.UniqueConstraint(
            fields=['migration', 'line_position'], name='one_refusal_per_dump_line')),
        migrations.AlterModelOptions('doctypemigrationrefusal', {'ordering': ['line_position', 'id']}),
        migrations.RenameField('doctypemigration', 'load_offset', 'load_position'),
    ]
