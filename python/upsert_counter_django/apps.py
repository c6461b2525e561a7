"""The app config: add "upsert_counter_django" to INSTALLED_APPS for the
system check that reports which mode each database uses."""

from django.apps import AppConfig
from django.core import checks


class UpsertCounterConfig(AppConfig):
    name = "upsert_counter_django"
    verbose_name = "upsert_counter"

    def ready(self):
        from .checks import check_mode
        checks.register(check_mode, checks.Tags.database)
