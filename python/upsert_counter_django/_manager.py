"""The calls as QuerySet and Manager methods: ``HourlyLog.objects.upsert_increment(...)``."""

from django.db import models

from ._api import (_async, upsert_increment, upsert_increment_many, upsert_increment_returning,
                   upsert_rollup)


class UpsertCounterQuerySet(models.QuerySet):
    """``HourlyLog.objects.upsert_increment(keys=..., deltas=...)`` and the
    other calls as QuerySet methods: the model is the QuerySet's, the
    database its ``using()`` alias (else the router's write database).
    ``Event.objects.filter(...).upsert_rollup(HourlyLog, keys=..., deltas=...)``
    rolls the QuerySet up into another model.  The arguments are the
    functions' own, less the model."""

    def _using(self, kwargs):
        if self._db is not None:
            kwargs.setdefault("using", self._db)
        return kwargs

    def upsert_increment(self, *args, **kwargs):
        return upsert_increment(self.model, *args, **self._using(kwargs))

    def upsert_increment_returning(self, *args, **kwargs):
        return upsert_increment_returning(self.model, *args, **self._using(kwargs))

    def upsert_increment_many(self, *args, **kwargs):
        return upsert_increment_many(self.model, *args, **self._using(kwargs))

    def upsert_rollup(self, target, *args, **kwargs):
        return upsert_rollup(target, self, *args, **self._using(kwargs))

    async def aupsert_increment(self, *args, **kwargs):
        return await _async(self.upsert_increment)(*args, **kwargs)

    async def aupsert_increment_returning(self, *args, **kwargs):
        return await _async(self.upsert_increment_returning)(*args, **kwargs)

    async def aupsert_increment_many(self, *args, **kwargs):
        return await _async(self.upsert_increment_many)(*args, **kwargs)

    async def aupsert_rollup(self, *args, **kwargs):
        return await _async(self.upsert_rollup)(*args, **kwargs)


UpsertCounterManager = models.Manager.from_queryset(UpsertCounterQuerySet, "UpsertCounterManager")
UpsertCounterManager.__module__ = __name__
