# One recorded phase per migration instead of separate flags, the refused
# revisions of a load, and the identity behind the fingerprint.
#
# It depends on 0001 only, not on the blocking 0002: the state tables must be
# usable before --initial can open that gate (0004 merges the two branches).

import django.db.models.deletion
from django.db import migrations, models


def phase_from_flags(apps, schema_editor):
    migrations_ = apps.get_model('doctypemigrations', 'DocTypeMigration')
    for state in migrations_.objects.all():
        if state.cleanup_complete:
            state.phase = 'cleaned'
        elif state.checkpoints.exists():
            state.phase = 'following'
        elif state.dump_complete:
            state.phase = 'loading'
        else:
            state.phase = 'dumping'
        state.save(update_fields=['phase'])


class Migration(migrations.Migration):

    dependencies = [
        ('doctypemigrations', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='doctypemigration',
            name='dump_path',
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='doctypemigration',
            name='follower_owner',
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AddField(
            model_name='doctypemigration',
            name='identity',
            field=models.TextField(blank=True, default=''),
        ),
        migrations.AddField(
            model_name='doctypemigration',
            name='phase',
            field=models.CharField(choices=[('dumping', 'dumping'), ('loading', 'loading'), ('following', 'following'), ('cleaning', 'cleaning'), ('cleaned', 'cleaned')], default='dumping', max_length=20),
        ),
        migrations.RunPython(phase_from_flags, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='doctypemigration',
            name='cleanup_complete',
        ),
        migrations.RemoveField(
            model_name='doctypemigration',
            name='dump_complete',
        ),
        migrations.CreateModel(
            name='DocTypeMigrationRefusal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('doc_id', models.TextField()),
                ('rev', models.CharField(max_length=200)),
                ('error', models.CharField(max_length=200)),
                ('reason', models.TextField(blank=True, default='')),
                ('dump_offset', models.BigIntegerField()),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('migration', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='refusals', to='doctypemigrations.doctypemigration')),
            ],
            options={
                'ordering': ['dump_offset'],
                'constraints': [models.UniqueConstraint(fields=('migration', 'dump_offset'), name='one_refusal_per_dump_line')],
            },
        ),
    ]
