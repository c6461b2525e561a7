"""The app config: add "upsert_counter_django" to INSTALLED_APPS for the
system check that reports which mode each database uses, and for a fresh
look at the mode after ``migrate``."""

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


def _reset_after_migrate(sender, using=None, **kwargs):
    """migrate may have created (or dropped) the extension on this
    connection, by any operation: the next call detects the mode again."""
    from django.db import connections
    from ._connection import reset_mode
    if using is not None:
        reset_mode(connections[using])


class UpsertCounterConfig(AppConfig):
    name = "upsert_counter_django"
    verbose_name = "upsert_counter"

    def ready(self):
        from .checks import check_mode
        checks.register(check_mode, checks.Tags.database)
        # sent once per app with models, after every migrate
        post_migrate.connect(_reset_after_migrate,
                             dispatch_uid="upsert_counter_django.reset_after_migrate")
