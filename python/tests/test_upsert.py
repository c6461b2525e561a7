"""upsert_counter_django against real Django, psycopg2 and PostgreSQL with
the extension installed by a migration."""
import datetime
import decimal
import threading
import uuid
import zoneinfo

from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError, connection, connections, transaction
from django.test import TransactionTestCase
from django.test.utils import CaptureQueriesContext

from abtest.models import AbTest, AbTestHourlyLog, Color, IpHit, Metric, Priority, TzEvent
from abtest.routers import RecordingRouter
from upsert_counter_django import (upsert_increment, upsert_increment_many,
                                   upsert_increment_returning)

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

    def test_many_streams_a_generator_in_chunks(self):
        def gen():
            for i in range(12000):
                yield {"ab_test_id": self.test.pk, "version": "control", "date": DAY, "hour": i % 24}, \
                      {"participants": 1}
        summary = upsert_increment_many(AbTestHourlyLog, gen(), chunk_size=1000)
        # every key is in all 12 chunks; each counts once
        self.assertEqual(summary, {"inserted": 24, "updated": 0, "chunks": 12})
        self.assertEqual(sum(AbTestHourlyLog.objects.values_list("participants", flat=True)), 12000)
        summary = upsert_increment_many(AbTestHourlyLog, gen(), chunk_size=1000)
        self.assertEqual(summary, {"inserted": 0, "updated": 24, "chunks": 12})
        self.assertEqual(sum(AbTestHourlyLog.objects.values_list("participants", flat=True)), 24000)

    def test_many_empty(self):
        self.assertEqual(upsert_increment_many(AbTestHourlyLog, []), {"inserted": 0, "updated": 0, "chunks": 0})


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


class CommitMode(Base):
    """upsert_counter.flush = commit: rows are buffered and written at
    commit, so the helpers cannot say yet what was created."""

    def test_single_and_many_in_commit_mode(self):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL upsert_counter.flush = commit")
            self.assertIsNone(upsert_increment(AbTestHourlyLog, keys=self.keys(), deltas={"participants": 1}))
            rows = [(self.keys(hour=h % 2), {"participants": 1}) for h in range(10)]
            summary = upsert_increment_many(AbTestHourlyLog, rows, chunk_size=4)
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
        self.assertIn("there is no usable unique index on the key columns", str(cm.exception))
        diag = cm.exception.__cause__.diag
        self.assertEqual(diag.sqlstate, "42P10")
        self.assertIn("(ab_test_id, version, date, hour)", diag.message_hint)

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
