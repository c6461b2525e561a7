"""upsert_counter_django against real Django, psycopg2 and PostgreSQL with
the extension installed by a migration."""
import asyncio
import datetime
import decimal
import os
import threading
import unittest
import uuid
import zoneinfo

import django
from asgiref.sync import async_to_sync
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import ExtractHour, TruncDate
from django.test import TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext

from abtest import models as abmodels
from abtest.models import (AbTest, AbTestHourlyLog, Color, Event, IpHit, Metric, NamedCounter,
                           PageCounter, PartitionedHit, Priority, TzEvent)
from abtest.routers import RecordingRouter
from upsert_counter_django import (CreateUpsertCounterExtension, UpsertCounterWarning,
                                   aupsert_increment, aupsert_increment_many,
                                   aupsert_increment_returning, aupsert_rollup, mode, reset_mode,
                                   upsert_increment, upsert_increment_many,
                                   upsert_increment_returning, upsert_rollup)

# make test runs this suite twice: against a database with the extension,
# and (UC_DJANGO_NO_EXTENSION=1) against one without it, in SQL mode
MODE = "sql" if os.environ.get("UC_DJANGO_NO_EXTENSION") else "extension"
extension_only = unittest.skipUnless(MODE == "extension", "needs the extension")
UTC = datetime.timezone.utc

DAY = datetime.date(2026, 11, 22)


class Base(TransactionTestCase):
    databases = {"default", "other"}

    def setUp(self):
        self.test = AbTest.objects.create(name="homepage")

    def keys(self, hour=13, version="control"):
        return {"ab_test": self.test, "version": version, "date": DAY, "hour": hour}

    def log(self, hour=13, version="control"):
        return AbTestHourlyLog.objects.get(ab_test=self.test, version=version, date=DAY, hour=hour)


class SingleRow(Base):
    def test_creates_then_increments(self):
        self.assertTrue(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
        self.assertFalse(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
        self.assertFalse(upsert_increment(AbTestHourlyLog, keys=self.keys(),
                                          deltas={"participants": 1, "conversions": 1}))
        row = self.log()
        self.assertEqual((row.participants, row.conversions), (3, 1))

    def test_one_of_two_counters(self):
        # conversions has default=0 and no column DEFAULT (Django 3.2-4.2):
        # the helper sends it as an insert-only value, else NOT NULL fails
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"conversions": 1})
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        row = self.log()
        self.assertEqual((row.participants, row.conversions), (1, 1))

    def test_foreign_key_by_instance_by_id_and_attname(self):
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        keys = dict(self.keys(), ab_test=self.test.pk)
        upsert_increment(AbTestHourlyLog, keys=keys, deltas={"participants": 1})
        keys = {"ab_test_id": self.test.pk, "version": "control", "date": DAY, "hour": 13}
        upsert_increment(AbTestHourlyLog, keys=keys, deltas={"participants": 1})
        self.assertEqual(AbTestHourlyLog.objects.count(), 1)
        self.assertEqual(self.log().participants, 3)

    def test_returning_gives_a_model_instance(self):
        obj, created = upsert_increment_returning(AbTestHourlyLog, keys=self.keys(),
                                                  deltas={"participants": 2})
        self.assertTrue(created)
        self.assertIsInstance(obj, AbTestHourlyLog)
        self.assertEqual((obj.ab_test_id, obj.version, obj.date, obj.hour), (self.test.pk, "control", DAY, 13))
        self.assertEqual((obj.participants, obj.conversions), (2, 0))
        self.assertFalse(obj._state.adding)
        self.assertEqual(obj._state.db, "default")
        obj2, created = upsert_increment_returning(AbTestHourlyLog, keys=self.keys(),
                                                   deltas={"participants": 3})
        self.assertFalse(created)
        self.assertEqual((obj2.pk, obj2.participants), (obj.pk, 5))
        self.assertEqual(obj2.ab_test, self.test)

    def test_get_or_create(self):
        obj, created = upsert_increment_returning(AbTestHourlyLog, keys=self.keys(), deltas={})
        self.assertTrue(created)
        obj2, created = upsert_increment_returning(AbTestHourlyLog, keys=self.keys(), deltas={})
        self.assertFalse(created)
        self.assertEqual(obj2.pk, obj.pk)


class FieldsNotNamed(Base):
    """Fields the caller leaves out behave as Model.save() would."""

    def test_defaults_auto_now_add_and_auto_now(self):
        key = uuid.uuid4()
        before = datetime.datetime.now(datetime.timezone.utc)
        obj, created = upsert_increment_returning(Metric, keys={"key": key, "day": DAY}, deltas={"hits": 1})
        self.assertTrue(created)
        self.assertEqual((obj.hits, obj.misses, obj.label, obj.color, obj.priority, obj.meta),
                         (1, 0, "none", "red", 1, {}))
        self.assertEqual(obj.amount, decimal.Decimal("0.00"))
        self.assertGreaterEqual(obj.first_seen, before)
        self.assertEqual(obj.first_seen, obj.last_seen)
        first_seen = obj.first_seen

        obj, created = upsert_increment_returning(Metric, keys={"key": key, "day": DAY}, deltas={"misses": 1},
                                                  assign={"label": "set"})
        self.assertFalse(created)
        # auto_now_add is insert-only, auto_now is written on every call
        self.assertEqual(obj.first_seen, first_seen)
        self.assertGreater(obj.last_seen, first_seen)
        self.assertEqual((obj.hits, obj.misses, obj.label), (1, 1, "set"))

    def test_defaults_do_not_overwrite_on_update(self):
        key = uuid.uuid4()
        upsert_increment(Metric, keys={"key": key, "day": DAY}, deltas={"hits": 1})
        Metric.objects.filter(key=key).update(label="changed", meta={"a": 1})
        upsert_increment(Metric, keys={"key": key, "day": DAY}, deltas={"hits": 1})
        row = Metric.objects.get(key=key)
        self.assertEqual((row.hits, row.label, row.meta), (2, "changed", {"a": 1}))

    def test_encodings(self):
        key = uuid.uuid4()
        for _ in range(10):
            upsert_increment(Metric, keys={"key": key, "day": DAY}, deltas={"amount": decimal.Decimal("0.10")},
                             assign={"color": Color.BLUE, "priority": Priority.HIGH,
                                     "meta": {"nested": [1, "two", None]}})
        row = Metric.objects.get(key=key)
        self.assertEqual(row.amount, decimal.Decimal("1.00"))
        self.assertEqual((row.color, row.priority, row.meta), ("blue", 2, {"nested": [1, "two", None]}))

    def test_dates_across_a_time_zone_boundary(self):
        # 23:30 in New York is 04:30 UTC the next day: one instant, one row
        ny = datetime.datetime(2026, 11, 22, 23, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
        utc = ny.astimezone(datetime.timezone.utc)
        tokyo = ny.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
        self.assertNotEqual(ny.date(), utc.date())
        for at in (ny, utc, tokyo):
            upsert_increment(TzEvent, keys={"at": at}, deltas={"n": 1})
        self.assertEqual(list(TzEvent.objects.values_list("at", "n")), [(ny, 3)])


class Batches(Base):
    def test_many_merges_duplicate_keys(self):
        rows = [(self.keys(hour=h % 3), {"participants": 1}) for h in range(30)]
        rows += [(self.keys(hour=0), {"conversions": 2})]
        summary = upsert_increment_many(AbTestHourlyLog, rows)
        # two shapes (participants / conversions) in one statement; the
        # summary counts distinct keys: three created, none existed before
        self.assertEqual(summary, {"inserted": 3, "updated": 0, "chunks": 1})
        self.assertEqual([(r.hour, r.participants, r.conversions)
                          for r in AbTestHourlyLog.objects.order_by("hour")],
                         [(0, 10, 2), (1, 10, 0), (2, 10, 0)])

    def test_many_keeps_the_callers_order_for_assign(self):
        key = uuid.uuid4()
        rows = [{"keys": {"key": key, "day": DAY}, "deltas": {"hits": 1},
                 "assign": {"label": "row %d" % i}, "on_insert": {"meta": {"first": i}}}
                for i in range(50)]
        upsert_increment_many(Metric, rows)
        row = Metric.objects.get(key=key)
        self.assertEqual((row.hits, row.label, row.meta), (50, "row 49", {"first": 0}))

    def test_many_streams_a_generator_in_windows(self):
        produced = []

        def gen():
            for i in range(12000):
                produced.append(i)
                yield {"ab_test_id": self.test.pk, "version": "control", "date": DAY, "hour": i % 24}, \
                      {"participants": 1}

        read_at_each_statement = []

        def wrapper(execute, sql, params, many, context):
            read_at_each_statement.append(len(produced))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(wrapper):
            summary = upsert_increment_many(AbTestHourlyLog, gen(), window=1000)
        # 1000 input rows are read, merged to their 24 keys and sent before
        # the next 1000 are read; every key is in all 12 windows and counts once
        self.assertEqual(summary, {"inserted": 24, "updated": 0, "chunks": 12})
        self.assertEqual(read_at_each_statement, [1000 * (w + 1) for w in range(12)])
        self.assertEqual(sum(AbTestHourlyLog.objects.values_list("participants", flat=True)), 12000)
        produced.clear()
        summary = upsert_increment_many(AbTestHourlyLog, gen(), window=1000)
        self.assertEqual(summary, {"inserted": 0, "updated": 24, "chunks": 12})
        self.assertEqual(sum(AbTestHourlyLog.objects.values_list("participants", flat=True)), 24000)

    def test_many_sends_only_the_distinct_keys(self):
        # 3000 rows over 30 keys, one window: 30 merged rows, chunk_size of
        # them per statement (29 + 1), each row's total exact
        rows = [(self.keys(hour=i % 30), {"participants": 1 + i % 3}) for i in range(3000)]
        with CaptureQueriesContext(connection) as queries:
            summary = upsert_increment_many(AbTestHourlyLog, rows, chunk_size=29)
        self.assertEqual(summary, {"inserted": 30, "updated": 0, "chunks": 2})
        self.assertEqual(len([q for q in queries if "INSERT" in q["sql"] or "upsert_increment" in q["sql"]]), 2)
        want = {h: sum(1 + i % 3 for i in range(3000) if i % 30 == h) for h in range(30)}
        self.assertEqual(dict(AbTestHourlyLog.objects.values_list("hour", "participants")), want)

    def test_many_merge_rules_hold_across_windows(self):
        key = uuid.uuid4()
        rows = [{"keys": {"key": key, "day": DAY}, "deltas": {"hits": 1, "amount": decimal.Decimal("0.05")},
                 "assign": {"label": "row %d" % i}, "on_insert": {"meta": {"first": i}}}
                for i in range(50)]
        summary = upsert_increment_many(Metric, rows, window=7)
        self.assertEqual(summary, {"inserted": 1, "updated": 0, "chunks": 8})
        row = Metric.objects.get(key=key)
        self.assertEqual((row.hits, row.amount, row.label, row.meta),
                         (50, decimal.Decimal("2.50"), "row 49", {"first": 0}))

    def test_many_sums_every_delta_whatever_each_row_names(self):
        # the window's first row names one delta (participants); other rows
        # name it with another, only another, or it summing to zero
        rows = [(self.keys(hour=0), {"participants": 1}),
                (self.keys(hour=1), {"conversions": 1}),
                (self.keys(hour=1), {"participants": 2}),
                (self.keys(hour=0), {"participants": 2, "conversions": 5}),
                (self.keys(hour=2), {"participants": 3}),
                (self.keys(hour=2), {"participants": -3}),
                (self.keys(hour=0), {"participants": 4}),
                (self.keys(hour=1), {"participants": 1.0})]
        self.assertEqual(upsert_increment_many(AbTestHourlyLog, rows), {"inserted": 3, "updated": 0, "chunks": 1})
        self.assertEqual(sorted(AbTestHourlyLog.objects.values_list("hour", "participants", "conversions")),
                         [(0, 7, 5), (1, 3, 1), (2, 0, 0)])

    def test_many_merges_a_key_given_as_instance_and_as_id(self):
        rows = [(self.keys(), {"participants": 1}),
                ({"ab_test_id": self.test.pk, "version": "control", "date": DAY, "hour": 13}, {"participants": 2}),
                ({"hour": 13, "date": DAY, "version": "control", "ab_test": self.test.pk}, {"participants": 4})]
        self.assertEqual(upsert_increment_many(AbTestHourlyLog, rows),
                         {"inserted": 1, "updated": 0, "chunks": 1})
        self.assertEqual(self.log().participants, 7)

    def test_many_fractional_deltas_are_refused_before_they_are_summed(self):
        # 0.5 + 0.5 would be whole: each row's delta is checked as a lone row's is
        with CaptureQueriesContext(connection) as queries:
            with self.assertRaises(ValueError):
                upsert_increment_many(AbTestHourlyLog, [(self.keys(), {"participants": 0.5})] * 2)
            with self.assertRaises(ValueError):
                upsert_increment_many(AbTestHourlyLog, [(self.keys(), {"participants": 1}),
                                                        (self.keys(), {"participants": None})])
            with self.assertRaises(ValueError):
                upsert_increment_many(AbTestHourlyLog, [(self.keys(), {"participants": 1})], window=0)
        self.assertEqual(len(queries), 0)
        upsert_increment_many(AbTestHourlyLog, [(self.keys(), {"participants": 2.0})] * 2)
        self.assertEqual(self.log().participants, 4)

    def test_many_values_survive_the_batch_encoding(self):
        """Batches send one text array per column: quoting, NULLs, the text
        "NULL", decimals, aware datetimes, UUIDs and JSON come back exact."""
        slugs = ['a"b', "back\\slash", "comma,brace{}", "NULL", "", " spaced ", "\u00fcn\u00ef", "it's"]
        rows = [{"keys": {"slug": s}, "deltas": {"views": 1},
                 "assign": {"title": s + "!", "code": None if i % 2 else "c%d" % i},
                 "on_insert": {"site": 1, "path": "/" + s}}
                for i, s in enumerate(slugs)] * 2
        with CaptureQueriesContext(connection) as queries:
            self.assertEqual(upsert_increment_many(PageCounter, rows),
                             {"inserted": len(slugs), "updated": 0, "chunks": 1})
        if MODE == "extension":     # the typed form, one text[] per column
            self.assertIn("upsert_increment_rows(", queries[-1]["sql"])
        self.assertEqual(sorted(PageCounter.objects.values_list("slug", "views", "title", "path", "code")),
                         sorted((s, 2, s + "!", "/" + s, None if i % 2 else "c%d" % i)
                                for i, s in enumerate(slugs)))
        key = uuid.uuid4()
        at = datetime.datetime(2026, 11, 22, 23, 30, 0, 123456, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))
        upsert_increment_many(Metric, [
            {"keys": {"key": key, "day": DAY}, "deltas": {"amount": decimal.Decimal("0.10")},
             "assign": {"meta": {"q": 'say "hi"', "n": [1, None]}, "color": Color.BLUE,
                        "first_seen": at}}] * 3)
        row = Metric.objects.get(key=key)
        self.assertEqual((row.amount, row.meta, row.color, row.first_seen),
                         (decimal.Decimal("0.30"), {"q": 'say "hi"', "n": [1, None]}, "blue", at))

    def test_many_over_long_text_is_an_error_not_cut(self):
        # version is varchar(9): batches send text arrays, the column's
        # length still applies as for any INSERT
        with self.assertRaises(DatabaseError) as cm:
            upsert_increment_many(AbTestHourlyLog, [(self.keys(version="controlled-experiment"),
                                                     {"participants": 1})] * 2)
        self.assertEqual(cm.exception.__cause__.diag.sqlstate, "22001")
        self.assertEqual(AbTestHourlyLog.objects.count(), 0)

    def test_many_mixed_shapes_in_one_chunk(self):
        # rows naming different fields go as the jsonb form, merged as one
        # (the third names the same key in another order and by attname)
        rows = [(self.keys(), {"participants": 1}), (self.keys(), {"conversions": 1}),
                ({"hour": 13, "date": DAY, "version": "control", "ab_test_id": self.test.pk},
                 {"participants": 1, "conversions": 1})]
        self.assertEqual(upsert_increment_many(AbTestHourlyLog, rows),
                         {"inserted": 1, "updated": 0, "chunks": 1})
        self.assertEqual((self.log().participants, self.log().conversions), (2, 2))

    def test_many_empty(self):
        self.assertEqual(upsert_increment_many(AbTestHourlyLog, []), {"inserted": 0, "updated": 0, "chunks": 0})


@extension_only
class RawSql(Base):
    def test_readme_raw_sql_example(self):
        """The README's example without the helper, as written there."""
        import json
        with connection.cursor() as cursor:
            cursor.execute("SELECT upsert_increment(%s, %s, %s, NULL, %s)",
                           [AbTestHourlyLog._meta.db_table,
                            json.dumps({"ab_test_id": self.test.pk, "version": "control",
                                        "date": "2026-11-22", "hour": 13}),
                            json.dumps({"participants": 1}),
                            json.dumps({"conversions": 0})])
            result = json.loads(cursor.fetchone()[0])   # the jsonb result arrives as str
        self.assertEqual(result, {"inserted": 1, "updated": 0})
        self.assertEqual((self.log().participants, self.log().conversions), (1, 0))


class Keys(Base):
    def test_generic_ip_address_key(self):
        """Django prepares IP addresses as a driver adapter (Inet)."""
        for ip in ("192.0.2.1", "2001:db8::1", "192.0.2.1"):
            upsert_increment(IpHit, keys={"ip": ip}, deltas={"n": 1})
        upsert_increment_many(IpHit, [({"ip": "2001:db8::1"}, {"n": 5})])
        self.assertEqual(sorted((h.ip, h.n) for h in IpHit.objects.all()),
                         [("192.0.2.1", 2), ("2001:db8::1", 6)])


@extension_only
class CommitMode(Base):
    """upsert_counter.flush = commit: rows are buffered and written at
    commit, so the helpers cannot say yet what was created."""

    def test_single_and_many_in_commit_mode(self):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL upsert_counter.flush = commit")
            self.assertIsNone(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
            rows = [(self.keys(hour=h % 2), {"participants": 1}) for h in range(10)]
            # three windows (4 + 4 + 2 input rows), each merged to its 2 keys
            summary = upsert_increment_many(AbTestHourlyLog, rows, window=4)
            self.assertEqual(summary, {"inserted": None, "updated": None, "deferred": 10, "chunks": 3})
            self.assertEqual(AbTestHourlyLog.objects.count(), 0)
        self.assertEqual(sorted((r.hour, r.participants) for r in AbTestHourlyLog.objects.all()),
                         [(0, 5), (1, 5), (13, 1)])


class Errors(Base):
    def test_fractional_deltas_are_refused_before_any_sql(self):
        for delta in (1.5, 0.9, -0.5, decimal.Decimal("1.7"), float("nan")):
            with CaptureQueriesContext(connection) as queries:
                with self.assertRaises(ValueError):
                    upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": delta})
                with self.assertRaises(ValueError):
                    upsert_increment_many(AbTestHourlyLog, [(self.keys(), {"participants": delta})])
            self.assertEqual(len(queries), 0)
        # whole numbers in any numeric type are fine
        upsert_increment(AbTestHourlyLog, keys=self.keys(),
                         deltas={"participants": 2.0, "conversions": decimal.Decimal("3")})
        self.assertEqual((self.log().participants, self.log().conversions), (2, 3))

    def test_unknown_field_raises_before_any_sql(self):
        with CaptureQueriesContext(connection) as queries:
            with self.assertRaises(FieldDoesNotExist):
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"visitors": 1})
            with self.assertRaises(FieldDoesNotExist):
                upsert_increment_many(AbTestHourlyLog, [({"nope": 1}, {"participants": 1})])
        self.assertEqual(len(queries), 0)

    def test_keys_matching_no_unique_constraint_come_from_the_database(self):
        with self.assertRaises(DatabaseError) as cm:
            upsert_increment(AbTestHourlyLog, keys={"ab_test": self.test, "version": "control"},
                             deltas={"participants": 1})
        diag = cm.exception.__cause__.diag
        self.assertEqual(diag.sqlstate, "42P10")
        if MODE == "extension":
            self.assertIn("there is no usable unique index on the key columns", str(cm.exception))
            self.assertIn("(ab_test_id, version, date, hour)", diag.message_hint)
        else:   # PostgreSQL's own inference, for the generated ON CONFLICT (columns)
            self.assertIn("no unique or exclusion constraint matching the ON CONFLICT",
                          str(cm.exception))

    def test_values_django_refuses_never_reach_sql(self):
        # as with .filter(participants="x"): the field's own ValueError
        with CaptureQueriesContext(connection) as queries:
            with self.assertRaises(ValueError):
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": "x"})
        self.assertEqual(len(queries), 0)

    def test_value_errors_are_database_errors(self):
        with self.assertRaises(DatabaseError) as cm:
            upsert_increment(AbTestHourlyLog, keys=self.keys(hour=70000), deltas={"participants": 1})
        self.assertEqual(cm.exception.__cause__.diag.sqlstate, "22003")

    def test_same_column_twice_in_one_role(self):
        with self.assertRaises(ValueError):
            upsert_increment(AbTestHourlyLog, keys=dict(self.keys(), ab_test_id=self.test.pk),
                             deltas={"participants": 1})

    def test_same_column_in_two_roles_is_the_databases_error(self):
        with self.assertRaises(DatabaseError) as cm:
            upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1},
                             assign={"participants": 5})
        self.assertEqual(cm.exception.__cause__.diag.sqlstate, "42701")


class Transactions(Base):
    def test_atomic_rollback(self):
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        with self.assertRaises(RuntimeError):
            with transaction.atomic():
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 100})
                upsert_increment(AbTestHourlyLog, keys=self.keys(hour=1), deltas={"participants": 1})
                raise RuntimeError("roll back")
        self.assertEqual(AbTestHourlyLog.objects.count(), 1)
        self.assertEqual(self.log().participants, 1)

    def test_nested_atomic_savepoint(self):
        with transaction.atomic():
            upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
            try:
                with transaction.atomic():
                    upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 10})
                    # smallint out of range: the database refuses it
                    upsert_increment(AbTestHourlyLog, keys=self.keys(hour=70000), deltas={"participants": 1})
                self.fail("the inner block should have raised")
            except DatabaseError:
                pass
            upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        self.assertEqual(self.log().participants, 2)

    def test_using_and_routers(self):
        RecordingRouter.calls.clear()
        key = uuid.uuid4()
        upsert_increment(Metric, keys={"key": key, "day": DAY}, deltas={"hits": 1})
        self.assertIn("Metric", RecordingRouter.calls)
        with CaptureQueriesContext(connections["other"]) as other:
            upsert_increment(Metric, keys={"key": key, "day": DAY}, deltas={"hits": 1})
        self.assertEqual(len(other), 1)
        with CaptureQueriesContext(connections["default"]) as default:
            upsert_increment(Metric, keys={"key": key, "day": DAY}, deltas={"hits": 1}, using="default")
        self.assertEqual(len(default), 1)
        self.assertEqual(Metric.objects.get(key=key).hits, 3)


class Concurrency(Base):
    def test_eight_threads_on_four_keys(self):
        errors = []

        def work(n):
            try:
                for i in range(500):
                    upsert_increment(AbTestHourlyLog, keys=self.keys(hour=(i + n) % 4),
                                     deltas={"participants": 1})
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(AbTestHourlyLog.objects.values_list("hour", "participants")),
                         [(0, 1000), (1, 1000), (2, 1000), (3, 1000)])


class Modes(Base):
    """Which mode runs is found per connection, reported by a system check,
    and can be forced by a setting."""

    def test_mode_is_detected_and_reported(self):
        self.assertEqual(mode("default"), MODE)
        found = {m.id: m for m in checks.run_checks(databases=["default"])
                 if m.id.startswith("upsert_counter.")}
        if MODE == "sql":
            self.assertEqual(list(found), ["upsert_counter.I001"])
            self.assertIn("no upsert_counter extension", found["upsert_counter.I001"].msg)
            self.assertIn("CREATE EXTENSION upsert_counter", found["upsert_counter.I001"].hint)
        else:
            self.assertEqual(list(found), ["upsert_counter.D001"])
            with connection.cursor() as cursor:
                cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'upsert_counter'")
                version = cursor.fetchone()[0]
            self.assertIn("extension %s (extension mode)" % version, found["upsert_counter.D001"].msg)

    @extension_only
    def test_sql_mode_forced_on_a_database_with_the_extension(self):
        with override_settings(UPSERT_COUNTER_MODE={"default": "sql"}):
            self.assertEqual(mode("default"), "sql")
            with CaptureQueriesContext(connection) as queries:
                self.assertTrue(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 2}))
            self.assertIn("ON CONFLICT", queries[0]["sql"])
            self.assertNotIn("upsert_increment", queries[0]["sql"])
        self.assertEqual(mode("default"), "extension")
        self.assertFalse(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
        self.assertEqual(self.log().participants, 3)

    @unittest.skipUnless(MODE == "sql", "needs a database without the extension")
    def test_extension_mode_forced_without_the_extension(self):
        with override_settings(UPSERT_COUNTER_MODE="extension"):
            with self.assertRaises(ImproperlyConfigured):
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        self.assertEqual(AbTestHourlyLog.objects.count(), 0)

    def test_bad_setting(self):
        with override_settings(UPSERT_COUNTER_MODE="fast"):
            with self.assertRaises(ValueError):
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})


class DjangoIntegration(Base):
    """The single-row call keeps a cursor per connection: Django's own
    machinery still sees every statement."""

    def test_execute_wrappers_see_every_call(self):
        seen = []

        def wrapper(execute, sql, params, many, context):
            seen.append(sql)
            return execute(sql, params, many, context)

        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        with connection.execute_wrapper(wrapper):
            upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
            upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        self.assertEqual(len(seen), 2)
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        self.assertEqual(len(seen), 2)
        self.assertEqual(self.log().participants, 4)

    def test_queries_are_logged_when_django_logs_them(self):
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        for _ in range(2):
            with CaptureQueriesContext(connection) as queries:
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
            self.assertEqual(len(queries), 1)

    def test_a_new_connection_gets_a_new_cursor(self):
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        connection.close()
        self.assertFalse(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
        self.assertEqual(self.log().participants, 2)

    def test_sync_call_from_async_code_is_refused(self):
        from django.core.exceptions import SynchronousOnlyOperation

        async def main():
            upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})

        with self.assertRaises(SynchronousOnlyOperation):
            asyncio.run(main())


class DjangoNames(Base):
    """defaults / create_defaults mean what they mean to update_or_create()."""

    def test_create_defaults_on_create_defaults_on_update(self):
        kw = dict(keys={"slug": "home"}, deltas={"views": 1}, defaults={"title": "updated"},
                  create_defaults={"title": "created", "site": 1, "path": "/"})
        self.assertTrue(upsert_increment(PageCounter, **kw))
        row = PageCounter.objects.get(slug="home")
        self.assertEqual((row.views, row.title, row.site), (1, "created", 1))
        obj, created = upsert_increment_returning(PageCounter, **kw)
        self.assertFalse(created)
        self.assertEqual((obj.views, obj.title, obj.site, obj.path), (2, "updated", 1, "/"))

    def test_defaults_alone_is_assign(self):
        upsert_increment(PageCounter, keys={"slug": "a"}, deltas={"views": 1},
                         defaults={"title": "one", "site": 1, "path": "/a"})
        upsert_increment(PageCounter, keys={"slug": "a"}, deltas={"views": 1},
                         defaults={"title": "two", "site": 1, "path": "/a"})
        row = PageCounter.objects.get(slug="a")
        self.assertEqual((row.views, row.title), (2, "two"))

    def test_both_names_for_one_role_are_refused(self):
        with self.assertRaises(ValueError):
            upsert_increment(PageCounter, keys={"slug": "a"}, assign={"title": "x"}, defaults={"title": "y"})
        with self.assertRaises(ValueError):
            upsert_increment(PageCounter, keys={"slug": "a"}, on_insert={"title": "x"},
                             create_defaults={"title": "y"}, defaults={})
        with self.assertRaises(ValueError):
            upsert_increment(PageCounter, keys={"slug": "a"}, deltas={"views": 1},
                             defaults={"views": 5}, create_defaults={"site": 1, "path": "/a"})
        self.assertEqual(PageCounter.objects.count(), 0)


class NullKeys(Base):
    def test_null_key_under_a_nulls_distinct_index_is_refused(self):
        # it would never match an existing row: a new row per call
        for _ in range(2):
            with self.assertRaises(DatabaseError) as cm:
                upsert_increment(PageCounter, keys={"code": None}, deltas={"views": 1},
                                 on_insert={"site": 1, "path": "/", "slug": "s"})
            if MODE == "extension":
                self.assertEqual(cm.exception.__cause__.diag.sqlstate, "22004")
            else:
                self.assertIn("no unique index on (code) whose NULLs are not distinct",
                              str(cm.exception))
        with self.assertRaises(DatabaseError):
            upsert_increment_many(PageCounter, [{"keys": {"code": None}, "deltas": {"views": 1},
                                                 "on_insert": {"site": 1, "path": "/", "slug": "s"}}])
        self.assertEqual(PageCounter.objects.count(), 0)


class OrmNative(Base):
    def test_manager_and_queryset_using(self):
        self.assertTrue(AbTestHourlyLog.objects.upsert_increment(self.keys(), {"participants": 1}))
        with CaptureQueriesContext(connections["other"]) as other:
            obj, created = AbTestHourlyLog.objects.using("other").upsert_increment_returning(
                self.keys(), {"participants": 1})
        self.assertEqual(len(other), 1)
        self.assertEqual((created, obj.participants, obj._state.db), (False, 2, "other"))
        summary = AbTestHourlyLog.objects.upsert_increment_many([(self.keys(), {"conversions": 1})] * 3)
        self.assertEqual(summary, {"inserted": 0, "updated": 1, "chunks": 1})
        self.assertEqual((self.log().participants, self.log().conversions), (2, 3))

    def test_model_instances_in_a_batch(self):
        rows = [PageCounter(site=1, path="/a", slug="a", views=1, title="first"),
                PageCounter(site=1, path="/b", slug="b", views=5),
                PageCounter(site=1, path="/a", slug="a", views=2, title="second")]
        with self.assertRaises(ValueError) as cm:      # two unique constraints: which one?
            upsert_increment_many(PageCounter, rows, delta_fields=["views"])
        self.assertIn("unique_fields", str(cm.exception))
        summary = upsert_increment_many(PageCounter, rows, delta_fields=["views"],
                                        unique_fields=["slug"], update_fields=["title"])
        self.assertEqual(summary, {"inserted": 2, "updated": 0, "chunks": 1})
        self.assertEqual(sorted(PageCounter.objects.values_list("slug", "views", "title")),
                         [("a", 3, "second"), ("b", 5, "")])
        # the model's one-constraint case needs no unique_fields
        upsert_increment_many(IpHit, [IpHit(ip="192.0.2.7", n=4)], delta_fields=["n"])
        self.assertEqual(IpHit.objects.get(ip="192.0.2.7").n, 4)

    def test_per_row_results(self):
        upsert_increment(AbTestHourlyLog, keys=self.keys(hour=1), deltas={"participants": 10})
        rows = [(self.keys(hour=h), {"participants": 1}) for h in (2, 1, 2, 0)]
        out = upsert_increment_many(AbTestHourlyLog, rows, results=True)
        # one per distinct key, in key order, each with the row as it now is
        self.assertEqual([(o.hour, o.participants, created) for o, created in out],
                         [(0, 1, True), (1, 11, False), (2, 2, True)])
        self.assertTrue(all(isinstance(o, AbTestHourlyLog) and o.pk for o, _ in out))

    def test_partitioned_target(self):
        # SQL mode cannot read xmax through a partitioned parent: created is None there
        first = upsert_increment(PartitionedHit, keys={"page": "a"}, deltas={"n": 1})
        second = upsert_increment(PartitionedHit, keys={"page": "a"}, deltas={"n": 1})
        summary = upsert_increment_many(PartitionedHit, [({"page": p}, {"n": 1}) for p in "abcb"])
        if MODE == "extension":
            self.assertEqual((first, second), (True, False))
            self.assertEqual(summary, {"inserted": 2, "updated": 1, "chunks": 1})
        else:
            self.assertEqual((first, second), (None, None))
            self.assertEqual(summary, {"inserted": None, "updated": None, "chunks": 1})
        self.assertEqual(sorted(PartitionedHit.objects.values_list("page", "n")),
                         [("a", 3), ("b", 2), ("c", 1)])


class Rollups(Base):
    def events(self):
        at = datetime.datetime(2026, 11, 22, 13, 5, tzinfo=UTC)
        for i in range(10):
            Event.objects.create(ab_test=self.test, version="control" if i % 3 else "variant",
                                 at=at + datetime.timedelta(minutes=20 * i), converted=i % 4 == 0)

    def rollup(self, **kw):
        return Event.objects.filter(ab_test=self.test).upsert_rollup(
            AbTestHourlyLog,
            keys={"ab_test": "ab_test", "version": "version",
                  "date": TruncDate("at", tzinfo=UTC), "hour": ExtractHour("at", tzinfo=UTC)},
            deltas={"participants": Count("id"), "conversions": Count("id", filter=Q(converted=True))},
            **kw)

    def expected(self, times=1):
        want = {}
        for e in Event.objects.all():
            k = (e.version, e.at.astimezone(UTC).hour)
            p, c = want.get(k, (0, 0))
            want[k] = (p + times, c + times * e.converted)
        return sorted((v, h, p, c) for (v, h), (p, c) in want.items())

    def got(self):
        return sorted(AbTestHourlyLog.objects.values_list("version", "hour", "participants", "conversions"))

    def test_rollup_in_one_statement(self):
        self.events()
        with CaptureQueriesContext(connection) as queries:
            summary = self.rollup()
        self.assertEqual(len(queries), 1)
        groups = len(self.expected())
        self.assertEqual(summary, {"inserted": groups, "updated": 0})
        self.assertEqual(self.got(), self.expected())
        self.assertEqual(self.rollup(), {"inserted": 0, "updated": groups})
        self.assertEqual(self.got(), self.expected(times=2))

    def test_null_aggregate_adds_zero(self):
        self.events()
        upsert_rollup(AbTestHourlyLog, Event.objects.all(),
                      keys={"ab_test": "ab_test", "version": "version",
                            "date": TruncDate("at", tzinfo=UTC), "hour": ExtractHour("at", tzinfo=UTC)},
                      deltas={"participants": Count("id"), "conversions": Sum("weight")})
        self.assertEqual(sum(AbTestHourlyLog.objects.values_list("conversions", flat=True)), 0)
        self.assertEqual(sum(AbTestHourlyLog.objects.values_list("participants", flat=True)), 10)

    def test_rollup_with_defaults_and_auto_now(self):
        Event.objects.create(ab_test=self.test, version="x", at=datetime.datetime(2026, 1, 1, tzinfo=UTC))
        upsert_rollup(PageCounter, Event.objects.all(), keys={"slug": "version"},
                      deltas={"views": Count("id")}, assign={"site": Count("id"), "path": "version"})
        row = PageCounter.objects.get(slug="x")
        # title: its Python default (insert-only); touched: auto_now
        self.assertEqual((row.views, row.site, row.path, row.title), (1, 1, "x", ""))
        self.assertIsNotNone(row.touched)


class Async(Base):
    def test_async_variants(self):
        keys = self.keys()

        async def main():
            created = await aupsert_increment(AbTestHourlyLog, keys=keys, deltas={"participants": 1})
            many = await asyncio.gather(*[aupsert_increment(AbTestHourlyLog, keys=keys,
                                                            deltas={"participants": 1})
                                          for _ in range(20)])
            obj, c2 = await aupsert_increment_returning(AbTestHourlyLog, keys=keys, deltas={"conversions": 1})
            summary = await aupsert_increment_many(AbTestHourlyLog, [(keys, {"participants": 2})])
            via_manager = await AbTestHourlyLog.objects.aupsert_increment(keys, {"participants": 1})
            rolled = await aupsert_rollup(AbTestHourlyLog, Event.objects.none(), keys={"hour": "id"},
                                          deltas={"participants": Count("id")})
            return created, many, obj, c2, summary, via_manager, rolled

        created, many, obj, c2, summary, via_manager, rolled = async_to_sync(main)()
        self.assertTrue(created)
        self.assertEqual(set(many), {False})
        self.assertEqual((obj.participants, obj.conversions, c2), (21, 1, False))
        self.assertEqual(summary, {"inserted": 0, "updated": 1, "chunks": 1})
        self.assertFalse(via_manager)
        self.assertEqual(rolled, {"inserted": 0, "updated": 0})
        self.assertEqual(self.log().participants, 24)


@unittest.skipUnless(django.VERSION >= (5, 0), "Django 5.0 field features")
class Django5(Base):
    def test_default_beats_db_default_as_in_create(self):
        Model = abmodels.Dj5Counter
        obj, created = upsert_increment_returning(Model, keys={"name": "a"}, deltas={"n": 1})
        ref = Model.objects.create(name="ref")
        ref.refresh_from_db()
        self.assertEqual((obj.both, obj.only_db), (ref.both, ref.only_db))
        self.assertEqual((obj.both, obj.only_db), (1, 3))

    def test_auto_now_with_db_default_is_written_on_update(self):
        Model = abmodels.Dj5Counter
        obj, _ = upsert_increment_returning(Model, keys={"name": "a"}, deltas={"n": 1})
        obj2, _ = upsert_increment_returning(Model, keys={"name": "a"}, deltas={"n": 1})
        self.assertGreater(obj2.stamp, obj.stamp)

    def test_generated_field_converted_by_its_output_field(self):
        obj, _ = upsert_increment_returning(abmodels.Dj5Counter, keys={"name": "a"}, deltas={"n": 1})
        self.assertIsInstance(obj.day, datetime.date)
        self.assertEqual(obj.day, abmodels.Dj5Counter.objects.get(name="a").day)

    def test_nulls_not_distinct_key(self):
        # what the database has decides (some Django 5.0 pre-releases create
        # the constraint without NULLS NOT DISTINCT), in both modes
        with connection.cursor() as cursor:
            cursor.execute("SELECT indnullsnotdistinct FROM pg_index"
                           " WHERE indexrelid = 'dj5_name'::regclass")
            not_distinct = cursor.fetchone()[0]
        for _ in range(3):
            if not_distinct:
                upsert_increment(abmodels.Dj5Counter, keys={"name": None}, deltas={"n": 1})
            else:
                with self.assertRaises(DatabaseError):
                    upsert_increment(abmodels.Dj5Counter, keys={"name": None}, deltas={"n": 1})
        self.assertEqual(list(abmodels.Dj5Counter.objects.values_list("name", "n")),
                         [(None, 3)] if not_distinct else [])
        if not_distinct:    # get-or-create finds the row with the None key
            obj, created = upsert_increment_returning(abmodels.Dj5Counter, keys={"name": None})
            self.assertEqual((obj.name, obj.n, created), (None, 3, False))


@unittest.skipUnless(hasattr(django.db.models, "CompositePrimaryKey"), "Django 5.2 composite primary keys")
class CompositePk(Base):
    def test_pk_of_a_composite_key(self):
        Model = abmodels.CompositeHit
        with self.assertRaises(FieldDoesNotExist) as cm:
            upsert_increment(Model, keys={"pk": (1, DAY)}, deltas={"n": 1})
        self.assertIn("composite primary key (site, day)", str(cm.exception))
        upsert_increment(Model, keys={"site": 1, "day": DAY}, deltas={"n": 1})
        upsert_increment(Model, keys={"site": 1, "day": DAY}, deltas={"n": 1})
        self.assertEqual(Model.objects.get(site=1, day=DAY).n, 2)


class PrimaryKeyInstances(Base):
    """Instances of a model whose only unique key is its primary key."""

    def test_inferred_and_named_pk(self):
        rows = [NamedCounter(name="a", n=1, label="first"), NamedCounter(name="b", n=5),
                NamedCounter(name="a", n=2, label="second")]
        summary = upsert_increment_many(NamedCounter, rows, delta_fields=["n"])
        self.assertEqual(summary, {"inserted": 2, "updated": 0, "chunks": 1})
        # label is insert-only: the earlier row's
        self.assertEqual(sorted(NamedCounter.objects.values_list("name", "n", "label")),
                         [("a", 3, "first"), ("b", 5, "")])
        summary = upsert_increment_many(NamedCounter, [NamedCounter(name="a", n=10, label="x")],
                                        delta_fields=["n"], unique_fields=["pk"], update_fields=["label"])
        self.assertEqual(summary, {"inserted": 0, "updated": 1, "chunks": 1})
        out = upsert_increment_many(NamedCounter, [NamedCounter(name="c", n=1), NamedCounter(name="a", n=1)],
                                    delta_fields=["n"], results=True)
        self.assertEqual([(o.name, o.n, o.label, created) for o, created in out],
                         [("a", 14, "x", False), ("c", 1, "", True)])

    def test_auto_pk_only_model_needs_a_pk_or_unique_fields(self):
        with self.assertRaises(ValueError) as cm:
            upsert_increment_many(AbTest, [AbTest(name="x")], delta_fields=[])
        self.assertIn("no unique constraint besides its auto-incremented primary key", str(cm.exception))
        # with its pk set, the primary key is the key
        upsert_increment_many(AbTest, [AbTest(pk=self.test.pk, name="renamed")], delta_fields=[],
                              update_fields=["name"])
        self.assertEqual(AbTest.objects.get(pk=self.test.pk).name, "renamed")


class ModuleBoundaries(unittest.TestCase):
    """Each public name is its implementation (typed there), re-exported."""

    def test_public_names_are_the_typed_implementations(self):
        import inspect
        import typing
        import upsert_counter_django as pkg
        for name in pkg.__all__:
            obj = getattr(pkg, name)
            if name == "FieldDoesNotExist" or not callable(obj):
                continue
            self.assertTrue(obj.__module__.startswith("upsert_counter_django."), name)
            self.assertNotEqual(obj.__module__, "upsert_counter_django", name)
        for name in ("upsert_increment", "upsert_increment_returning", "upsert_increment_many",
                     "upsert_rollup", "mode"):
            fn = getattr(pkg, name)
            hints = typing.get_type_hints(inspect.unwrap(fn))
            self.assertIn("return", hints, name)
            params = [p for p in inspect.signature(fn).parameters if p not in ("self",)]
            self.assertTrue(params and all(p in hints for p in params), (name, params, hints))
            # the async variant has the same signature
            if name != "mode":
                self.assertEqual(inspect.signature(getattr(pkg, "a" + name)), inspect.signature(fn))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(pkg.__file__), "_core.py")))


class Packaging(unittest.TestCase):
    def test_the_running_django_is_declared(self):
        """pyproject.toml's Django range and classifiers cover the Django
        this suite runs on (the matrix in python/README.md runs it on each)."""
        import re
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        with open(path) as f:
            text = f.read()
        low, high = re.search(r'"Django>=([0-9.]+),<([0-9.]+)"', text).groups()
        version = django.VERSION[:2]
        self.assertLessEqual(tuple(map(int, low.split("."))), version)
        self.assertLess(version, tuple(map(int, high.split("."))))
        self.assertIn('"Framework :: Django :: %d.%d"' % version, text)
        self.assertEqual(high, "6.1")
        self.assertIn('"Framework :: Django :: 6.0"', text)


class ExtensionLifecycle(Base):
    """The extension created by a migration operation, dropped under a
    running app, and the mode following it on the same connection."""

    def setUp(self):
        super().setUp()
        self.had_extension = self.installed()

    def tearDown(self):
        # as the suite's database had it
        if self.had_extension and not self.installed():
            self.sql("CREATE EXTENSION upsert_counter")
        elif not self.had_extension and self.installed():
            self.sql("DROP EXTENSION upsert_counter")
        for alias in connections:
            reset_mode(connections[alias])
        super().tearDown()

    def sql(self, statement):
        with connection.cursor() as cursor:
            cursor.execute(statement)

    def installed(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'upsert_counter'")
            return cursor.fetchone()[0] == 1

    def without_extension(self):
        self.sql("DROP EXTENSION IF EXISTS upsert_counter")
        reset_mode(connection)
        self.assertEqual(mode("default"), "sql")

    def with_extension(self):
        self.sql("CREATE EXTENSION IF NOT EXISTS upsert_counter")
        reset_mode(connection)
        self.assertEqual(mode("default"), "extension")

    def run_operation(self, backwards=False, **kw):
        op = CreateUpsertCounterExtension()
        from django.db.migrations.state import ProjectState
        state = ProjectState()
        with connection.schema_editor(**kw) as editor:
            if backwards:
                op.database_backwards("abtest", editor, state, state)
            else:
                op.database_forwards("abtest", editor, state, state)
        return editor

    def test_operation_creates_the_extension_and_the_mode_follows(self):
        self.without_extension()
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        self.run_operation()
        self.assertTrue(self.installed())
        # the same connection, no reconnect: the extension is used at once
        self.assertEqual(mode("default"), "extension")
        with CaptureQueriesContext(connection) as queries:
            self.assertFalse(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
        self.assertIn("upsert_increment", queries[-1]["sql"])
        self.assertNotIn("ON CONFLICT", queries[-1]["sql"])
        self.assertEqual(self.log().participants, 2)
        # again: nothing to do
        self.run_operation()
        self.assertEqual(mode("default"), "extension")
        # reversed: dropped, and SQL mode at once
        self.run_operation(backwards=True)
        self.assertFalse(self.installed())
        self.assertEqual(mode("default"), "sql")

    def test_operation_skips_with_a_warning_when_the_role_may_not(self):
        self.without_extension()
        self.sql("DO $$ BEGIN CREATE ROLE upsert_counter_app NOLOGIN; "
                 "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        with self.assertWarns(UpsertCounterWarning) as cm:
            with transaction.atomic():
                self.sql("SET LOCAL ROLE upsert_counter_app")
                self.run_operation()
        message = str(cm.warning)
        self.assertIn("role 'upsert_counter_app' may not create it", message)
        self.assertIn("a superuser runs CREATE EXTENSION upsert_counter", message)
        self.assertIn("SQL mode", message)
        self.assertFalse(self.installed())
        self.assertEqual(mode("default"), "sql")
        self.assertTrue(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))

    def test_operation_in_sqlmigrate_and_in_a_migration_file(self):
        editor = self.run_operation(collect_sql=True)
        self.assertEqual([s.rstrip(";") for s in editor.collected_sql],
                         ["CREATE EXTENSION IF NOT EXISTS upsert_counter"])
        from django.db.migrations.writer import OperationWriter
        text, imports = OperationWriter(CreateUpsertCounterExtension(schema="counters"), indentation=0).serialize()
        self.assertIn("upsert_counter_django.operations.CreateUpsertCounterExtension(", text)
        self.assertIn("schema='counters'", text)
        self.assertIn("import upsert_counter_django.operations", imports)

    def test_migrate_resets_the_mode_on_its_connection(self):
        from django.core.management.sql import emit_post_migrate_signal
        self.without_extension()
        # created by anything else a migration may run (RunSQL, CreateExtension)
        self.sql("CREATE EXTENSION upsert_counter")
        self.assertEqual(mode("default"), "sql")        # found once per connection...
        emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
        self.assertEqual(mode("default"), "extension")  # ...and again after migrate

    def test_dropped_extension_heals_outside_a_transaction(self):
        calls = [
            lambda: upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}),
            lambda: upsert_increment_returning(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}),
            lambda: upsert_increment_many(AbTestHourlyLog, [(self.keys(), {"participants": 1})] * 3,
                                          chunk_size=1),
            lambda: upsert_rollup(AbTestHourlyLog, Event.objects.filter(ab_test=self.test),
                                  keys={"ab_test": "ab_test", "version": "version",
                                        "date": TruncDate("at", tzinfo=UTC),
                                        "hour": ExtractHour("at", tzinfo=UTC)},
                                  deltas={"participants": Count("id")}),
        ]
        Event.objects.create(ab_test=self.test, version="control",
                             at=datetime.datetime(2026, 11, 22, 13, 5, tzinfo=UTC))
        total = 0
        for call in calls:
            self.with_extension()
            call()                                  # in extension mode
            self.sql("DROP EXTENSION upsert_counter")   # under the running app
            call()                                  # found gone: again, in SQL mode
            self.assertEqual(mode("default"), "sql")
            total += 2 if call is not calls[2] else 6
            self.assertEqual(self.log().participants, total)

    def test_extension_dropped_between_chunks_of_a_batch(self):
        # autocommit: each chunk commits on its own; the chunk that finds the
        # extension gone runs again in SQL mode, the others are not repeated
        self.with_extension()
        statements = []

        def drop_after_the_first(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            statements.append(sql)
            if len(statements) == 1:
                with connections["other"].cursor() as cursor:
                    cursor.execute("DROP EXTENSION upsert_counter")
            return result

        rows = [(self.keys(hour=h % 3), {"participants": 1}) for h in range(9)]
        with connection.execute_wrapper(drop_after_the_first):
            summary = upsert_increment_many(AbTestHourlyLog, rows, chunk_size=1)
        self.assertEqual(summary, {"inserted": 3, "updated": 0, "chunks": 3})
        self.assertEqual(sorted(AbTestHourlyLog.objects.values_list("hour", "participants")),
                         [(0, 3), (1, 3), (2, 3)])
        self.assertIn("upsert_increment", statements[0])
        self.assertIn("ON CONFLICT", statements[-1])
        self.assertEqual(mode("default"), "sql")

    def test_dropped_extension_inside_a_transaction_says_what_to_do(self):
        self.with_extension()
        upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        self.sql("DROP EXTENSION upsert_counter")
        with self.assertRaises(DatabaseError) as cm:
            with transaction.atomic():
                upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1})
        message = str(cm.exception)
        self.assertIn("upsert_counter extension (or its schema) was dropped", message)
        self.assertIn("roll it back and run it again", message)
        self.assertEqual(cm.exception.__cause__.diag.sqlstate, "42883")
        # the next call, outside: SQL mode
        self.assertFalse(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
        self.assertEqual(mode("default"), "sql")
        self.assertEqual(self.log().participants, 2)

    def test_check_of_a_forced_mode_says_so(self):
        with override_settings(UPSERT_COUNTER_MODE="sql"):
            found = {m.id: m for m in checks.run_checks(databases=["default"])
                     if m.id.startswith("upsert_counter.")}
        self.assertEqual(list(found), ["upsert_counter.I002"])
        msg = found["upsert_counter.I002"].msg
        self.assertIn("uses SQL mode because UPSERT_COUNTER_MODE says so", msg)
        self.assertNotIn("has no", msg)
        if MODE == "extension":
            self.assertIn("is installed there, unused", msg)
        else:
            self.assertIn("is not installed there", msg)


class Counts(Base):
    """The batch and the rollup count inserted and updated rows with one
    query (SQL mode) and agree with each other."""

    def test_batch_and_rollup_counts_agree(self):
        at = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
        for i in range(6):
            Event.objects.create(ab_test=self.test, version="control", at=at + datetime.timedelta(hours=i % 3))
        upsert_increment(AbTestHourlyLog, keys=self.keys(hour=10), deltas={"participants": 1})
        rolled = Event.objects.all().upsert_rollup(
            AbTestHourlyLog, keys={"ab_test": "ab_test", "version": "version",
                                   "date": TruncDate("at", tzinfo=UTC), "hour": ExtractHour("at", tzinfo=UTC)},
            deltas={"participants": Count("id")})
        AbTestHourlyLog.objects.filter(hour__in=(11, 12)).delete()
        batch = upsert_increment_many(AbTestHourlyLog, [(self.keys(hour=h), {"participants": 1})
                                                        for h in (10, 11, 12, 10)])
        self.assertEqual(rolled, {"inserted": 2, "updated": 1})
        self.assertEqual(batch, {"inserted": 2, "updated": 1, "chunks": 1})


class FirstCounter(Base):
    """python/README.md's first counter, as written there."""

    def readme_blocks(self):
        import re
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
        with open(path) as f:
            text = f.read()
        start = text.index("## A first counter")
        section = text[start:text.index("\n## ", start + 1)]
        return re.findall(r"```python\n(.*?)```", section, re.S)

    def test_model_and_call_as_in_the_readme(self):
        import inspect
        blocks = self.readme_blocks()
        model = next(b for b in blocks if "class PageView" in b)
        body = model[model.index("class PageView"):]
        source = inspect.getsource(abmodels.PageView)
        self.assertEqual([line.strip() for line in body.strip().splitlines() if line.strip()],
                         [line.strip() for line in source.strip().splitlines() if line.strip()])
        migration = next(b for b in blocks if "CreateUpsertCounterExtension()" in b)
        self.assertIn("from upsert_counter_django.operations import CreateUpsertCounterExtension", migration)
        call = next(b for b in blocks if "upsert_increment(PageView" in b)

        class Request:
            path = "/pricing/"
        scope = {"PageView": abmodels.PageView, "request": Request()}
        exec(call, scope)
        exec(call, scope)
        row = abmodels.PageView.objects.get()
        self.assertEqual((row.path, row.day, row.views), ("/pricing/", datetime.date.today(), 2))
        self.assertFalse(scope["created"])
        manager = next(b for b in blocks if "PageView.objects.upsert_increment" in b)
        exec(manager, scope)
        self.assertEqual(abmodels.PageView.objects.get().views, 3)


@unittest.skipUnless(hasattr(django.db.models, "CompositePrimaryKey"), "Django 5.2 composite primary keys")
class CompositePkCalls(Base):
    """Returning, batches (rows and instances) and rollups on a composite
    primary key."""

    def test_returning(self):
        Model = abmodels.CompositeHit
        obj, created = upsert_increment_returning(Model, keys={"site": 1, "day": DAY}, deltas={"n": 2})
        self.assertEqual((obj.pk, obj.n, created), ((1, DAY), 2, True))
        obj, created = upsert_increment_returning(Model, keys={"site": 1, "day": DAY}, deltas={"n": 3})
        self.assertEqual((obj.pk, obj.n, created), ((1, DAY), 5, False))
        self.assertFalse(obj._state.adding)

    def test_batches_of_rows_and_of_instances(self):
        Model = abmodels.CompositeHit
        summary = upsert_increment_many(Model, [({"site": s % 2, "day": DAY}, {"n": 1}) for s in range(10)])
        self.assertEqual(summary, {"inserted": 2, "updated": 0, "chunks": 1})
        summary = upsert_increment_many(Model, [Model(site=1, day=DAY, n=10), Model(site=2, day=DAY, n=1)],
                                        delta_fields=["n"])
        self.assertEqual(summary, {"inserted": 1, "updated": 1, "chunks": 1})
        out = upsert_increment_many(Model, [Model(site=2, day=DAY, n=1)] * 2, delta_fields=["n"],
                                    unique_fields=["pk"], results=True)
        self.assertEqual([(o.pk, o.n, created) for o, created in out], [((2, DAY), 3, False)])
        self.assertEqual(sorted(Model.objects.values_list("site", "n")), [(0, 5), (1, 15), (2, 3)])

    def test_rollup(self):
        Model = abmodels.CompositeHit
        at = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
        for i in range(5):
            Event.objects.create(ab_test=self.test, version="control", at=at + datetime.timedelta(hours=i % 2))
        keys = {"site": ExtractHour("at", tzinfo=UTC), "day": TruncDate("at", tzinfo=UTC)}
        self.assertEqual(upsert_rollup(Model, Event.objects.all(), keys=keys, deltas={"n": Count("id")}),
                         {"inserted": 2, "updated": 0})
        self.assertEqual(upsert_rollup(Model, Event.objects.all(), keys=keys, deltas={"n": Count("id")}),
                         {"inserted": 0, "updated": 2})
        self.assertEqual(sorted(Model.objects.values_list("site", "day", "n")), [(10, DAY, 6), (11, DAY, 4)])
