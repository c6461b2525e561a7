import enum

from django.db import models


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
