import enum

import django
from django.db import models
from django.db.models.functions import Now, TruncDate

from upsert_counter_django import UpsertCounterManager


class AbTest(models.Model):
    name = models.CharField(max_length=100)


class AbTestHourlyLog(models.Model):
    """wagtail-ab-testing's hourly log, as it declares it."""

    VERSION_CHOICES = [("control", "Control"), ("variant", "Variant")]

    ab_test = models.ForeignKey(AbTest, on_delete=models.CASCADE)
    version = models.CharField(max_length=9, choices=VERSION_CHOICES)
    date = models.DateField()
    hour = models.PositiveSmallIntegerField()
    participants = models.PositiveIntegerField(default=0)
    conversions = models.PositiveIntegerField(default=0)

    objects = UpsertCounterManager()

    class Meta:
        unique_together = [("ab_test", "version", "date", "hour")]


class Color(models.TextChoices):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Metric(models.Model):
    """Python-side defaults only (no column DEFAULT), auto_now fields, and
    types that need encoding."""

    key = models.UUIDField()
    day = models.DateField()
    hits = models.IntegerField(default=0)
    misses = models.IntegerField(default=0)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    label = models.CharField(max_length=20, default="none", db_column="label_text")
    color = models.CharField(max_length=10, choices=Color.choices, default=Color.RED)
    priority = models.IntegerField(default=Priority.LOW)
    meta = models.JSONField(default=dict)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        unique_together = [("key", "day")]


class TzEvent(models.Model):
    at = models.DateTimeField(unique=True)
    n = models.IntegerField(default=0)


class IpHit(models.Model):
    """A counter keyed by an IP address (Django prepares it as a driver adapter)."""
    ip = models.GenericIPAddressField(unique=True)
    n = models.IntegerField(default=0)


class Event(models.Model):
    """A raw event stream, rolled up into AbTestHourlyLog in one statement."""
    ab_test = models.ForeignKey(AbTest, on_delete=models.CASCADE)
    version = models.CharField(max_length=9)
    at = models.DateTimeField()
    converted = models.BooleanField(default=False)
    weight = models.IntegerField(null=True)

    objects = UpsertCounterManager()


class PartitionedHit(models.Model):
    """A partitioned table (created by RunSQL): SQL mode cannot tell
    created from existing rows through its parent."""
    page = models.CharField(max_length=50, primary_key=True)
    n = models.IntegerField(default=0)

    class Meta:
        managed = False
        db_table = "abtest_partitionedhit"


class PageCounter(models.Model):
    """Several unique constraints: instances in a batch name their key."""
    site = models.IntegerField()
    path = models.CharField(max_length=100)
    slug = models.CharField(max_length=100, unique=True)
    code = models.CharField(max_length=10, null=True, unique=True)
    views = models.IntegerField(default=0)
    title = models.CharField(max_length=100, default="")
    touched = models.DateTimeField(auto_now=True)

    objects = UpsertCounterManager()

    class Meta:
        unique_together = [("site", "path")]


class NamedCounter(models.Model):
    """Keyed by its primary key alone (not an auto field): instances in a
    batch need no unique_fields."""
    name = models.CharField(max_length=50, primary_key=True)
    n = models.IntegerField(default=0)
    label = models.CharField(max_length=50, default="")


class PageView(models.Model):
    path = models.CharField(max_length=200)
    day = models.DateField()
    views = models.PositiveIntegerField(default=0)

    objects = UpsertCounterManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["path", "day"], name="pageview_path_day")]


if django.VERSION >= (5, 0):
    class Dj5Counter(models.Model):
        """Django 5 field features: db_default beside default, auto_now
        with a db_default, a GeneratedField of another type, a unique
        constraint whose NULLs are not distinct."""
        name = models.CharField(max_length=20, null=True)
        n = models.IntegerField(default=0)
        both = models.IntegerField(default=1, db_default=2)
        only_db = models.IntegerField(db_default=3)
        stamp = models.DateTimeField(auto_now=True, db_default=Now())
        day = models.GeneratedField(expression=TruncDate("stamp"), output_field=models.DateField(),
                                    db_persist=True)

        class Meta:
            constraints = [models.UniqueConstraint(fields=["name"], name="dj5_name",
                                                   nulls_distinct=False)]

if hasattr(models, "CompositePrimaryKey"):    # Django 5.2
    class CompositeHit(models.Model):
        pk = models.CompositePrimaryKey("site", "day")
        site = models.IntegerField()
        day = models.DateField()
        n = models.IntegerField(default=0)
