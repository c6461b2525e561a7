import os
import uuid

import django.db.models.deletion
from django.db import migrations, models

from upsert_counter_django.operations import CreateUpsertCounterExtension


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        # the SQL-mode run of the suite (UC_DJANGO_NO_EXTENSION=1) tests the
        # helper against a database without the extension
        migrations.RunSQL("SELECT 1", reverse_sql=migrations.RunSQL.noop)
        if os.environ.get("UC_DJANGO_NO_EXTENSION") else CreateUpsertCounterExtension(),
        migrations.CreateModel(
            name="AbTest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
            ],
        ),
        migrations.CreateModel(
            name="AbTestHourlyLog",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.CharField(choices=[("control", "Control"), ("variant", "Variant")], max_length=9)),
                ("date", models.DateField()),
                ("hour", models.PositiveSmallIntegerField()),
                ("participants", models.PositiveIntegerField(default=0)),
                ("conversions", models.PositiveIntegerField(default=0)),
                ("ab_test", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="abtest.abtest")),
            ],
            options={"unique_together": {("ab_test", "version", "date", "hour")}},
        ),
        migrations.CreateModel(
            name="Metric",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.UUIDField()),
                ("day", models.DateField()),
                ("hits", models.IntegerField(default=0)),
                ("misses", models.IntegerField(default=0)),
                ("amount", models.DecimalField(decimal_places=2, default=0, max_digits=12)),
                ("label", models.CharField(db_column="label_text", default="none", max_length=20)),
                ("color", models.CharField(choices=[("red", "Red"), ("blue", "Blue")], default="red", max_length=10)),
                ("priority", models.IntegerField(default=1)),
                ("meta", models.JSONField(default=dict)),
                ("first_seen", models.DateTimeField(auto_now_add=True)),
                ("last_seen", models.DateTimeField(auto_now=True)),
            ],
            options={"unique_together": {("key", "day")}},
        ),
        migrations.CreateModel(
            name="TzEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(unique=True)),
                ("n", models.IntegerField(default=0)),
            ],
        ),
    ]
