from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='PillowCheckpoint',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100, unique=True)),
                ('db_name', models.CharField(blank=True, default='', max_length=255)),
                ('seq', models.TextField(blank=True, null=True)),
                ('processed', models.BigIntegerField(default=0)),
                ('saved_at', models.DateTimeField(blank=True, null=True)),
                ('runner', models.CharField(blank=True, max_length=200, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='UserIndexEntry',
            fields=[
                ('doc_id', models.CharField(max_length=255, primary_key=True, serialize=False)),
                ('doc_type', models.CharField(max_length=100)),
                ('domain', models.CharField(blank=True, default='', max_length=255)),
                ('name', models.CharField(blank=True, default='', max_length=255)),
                ('active', models.BooleanField(default=True)),
            ],
            options={
                'ordering': ['doc_id'],
            },
        ),
    ]
