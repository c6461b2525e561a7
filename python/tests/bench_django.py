#!/usr/bin/python3
"""The Django helper against what Django code does today, through the ORM.

    /usr/bin/python3 python/tests/bench_django.py [--threads 8] [--calls 500] [--keys 4]
                                                  [--rows 100000] [--repeated 5000]
                                                  [--rounds 3] [--only single,batch,repeated]

Single rows: THREADS threads, each CALLS increments over KEYS hourly-log
rows (they exist: every way takes the update path), autocommit, in the same
run:
  helper (extension)  upsert_increment() with the extension
  helper (SQL mode)   upsert_increment() generating the statement itself
  wagtail raw SQL     wagtail-ab-testing's own INSERT ... ON CONFLICT through
                      cursor.execute() on the same Django connection
  update_or_create    inside atomic(): update_or_create() (SELECT ... FOR
                      UPDATE, then UPDATE or INSERT) and save() of the
                      incremented value

Batches: upsert_increment_many() of ROWS wagtail rows, in both modes, over
24 keys (hot) and over ROWS/2 keys (spread, half of them existing).

The repeated-key batch (issue 21): ROWS increments over REPEATED keys in a
random order (half of the keys existing), upsert_increment_many() of the
rows as they come, against the merged-first baseline: the caller merges
them with a dict first and passes one row per key.  Keys repeat all over
the input, so merging per statement would write most keys in every
statement; the helper merges the whole input (a list) before it encodes.

Prints calls/s and rows/s (median of ROUNDS) and the ratios; every total is
checked exact.  Uses the test settings (PGHOST, PGPORT, PGUSER) and a
throwaway test database.  A benchmark, not a test: it asserts nothing about
speed.
"""
import argparse
import datetime
import os
import random
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.dirname(here)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from django.db import connection, connections, transaction  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402

from abtest.models import AbTest, AbTestHourlyLog  # noqa: E402
from upsert_counter_django import upsert_increment, upsert_increment_many  # noqa: E402

DAY = datetime.date(2026, 11, 22)


def helper(test, hour):
    upsert_increment(AbTestHourlyLog, keys={"ab_test": test, "version": "control", "date": DAY, "hour": hour},
                     deltas={"participants": 1})


def wagtail_raw(test, hour):
    # wagtail_ab_testing.models.AbTestHourlyLog._increment_stats, as it is
    table = connection.ops.quote_name(AbTestHourlyLog._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO %s (ab_test_id, version, date, hour, participants, conversions) "
            "VALUES (%%s, %%s, %%s, %%s, %%s, %%s) "
            "ON CONFLICT (ab_test_id, version, date, hour) "
            "DO UPDATE SET participants = %s.participants + %%s, conversions = %s.conversions + %%s;"
            % (table, table, table),
            [test.pk, "control", DAY, hour, 1, 0, 1, 0])


def update_or_create(test, hour):
    with transaction.atomic():
        obj, _ = AbTestHourlyLog.objects.update_or_create(ab_test=test, version="control", date=DAY, hour=hour)
        obj.participants += 1
        obj.save(update_fields=["participants"])


def run_single(fn, mode, test, threads, calls, keys):
    AbTestHourlyLog.objects.all().delete()
    for h in range(keys):   # rows exist: every way takes the update path
        AbTestHourlyLog.objects.create(ab_test=test, version="control", date=DAY, hour=h)

    def work(n):
        with override_settings(UPSERT_COUNTER_MODE=mode):
            for i in range(calls):
                fn(test, (i + n) % keys)
        connections.close_all()

    ts = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    total = sum(AbTestHourlyLog.objects.values_list("participants", flat=True))
    assert total == threads * calls, (fn.__name__, total)
    return threads * calls / elapsed


def run_many(mode, test, rows, distinct):
    AbTestHourlyLog.objects.all().delete()
    # half of the keys exist
    AbTestHourlyLog.objects.bulk_create(
        [AbTestHourlyLog(ab_test=test, version="control", date=DAY + datetime.timedelta(days=k // 24),
                         hour=k % 24) for k in range(0, distinct, 2)])
    batch = [({"ab_test_id": test.pk, "version": "control",
               "date": DAY + datetime.timedelta(days=(i % distinct) // 24), "hour": (i % distinct) % 24},
              {"participants": 1}) for i in range(rows)]
    with override_settings(UPSERT_COUNTER_MODE=mode):
        t0 = time.perf_counter()
        summary = upsert_increment_many(AbTestHourlyLog, batch)
        elapsed = time.perf_counter() - t0
    assert summary["inserted"] + summary["updated"] == distinct, summary
    assert sum(AbTestHourlyLog.objects.values_list("participants", flat=True)) == rows
    return rows / elapsed


def run_repeated(mode, test, rows, distinct, merged_first, seed):
    """ROWS increments over DISTINCT keys in a random order, half of the keys
    existing; as they come, or merged by the caller first.  Seconds."""
    AbTestHourlyLog.objects.all().delete()
    day = [DAY + datetime.timedelta(days=k // 24) for k in range(distinct)]
    AbTestHourlyLog.objects.bulk_create(
        [AbTestHourlyLog(ab_test=test, version="control", date=day[k], hour=k % 24)
         for k in range(0, distinct, 2)])
    rnd = random.Random(seed)
    batch = [({"ab_test_id": test.pk, "version": "control", "date": day[k], "hour": k % 24},
              {"participants": 1 + k % 3}) for k in (rnd.randrange(distinct) for _ in range(rows))]
    want = sum(d["participants"] for _, d in batch)
    with override_settings(UPSERT_COUNTER_MODE=mode):
        t0 = time.perf_counter()
        if merged_first:
            totals = {}
            for keys, deltas in batch:
                k = (keys["ab_test_id"], keys["version"], keys["date"], keys["hour"])
                totals[k] = totals.get(k, 0) + deltas["participants"]
            batch = [({"ab_test_id": k[0], "version": k[1], "date": k[2], "hour": k[3]},
                      {"participants": n}) for k, n in totals.items()]
        summary = upsert_increment_many(AbTestHourlyLog, batch)
        elapsed = time.perf_counter() - t0
    assert summary["inserted"] + summary["updated"] == distinct, summary
    assert summary["updated"] == (distinct + 1) // 2, summary
    assert sum(AbTestHourlyLog.objects.values_list("participants", flat=True)) == want
    assert AbTestHourlyLog.objects.count() == distinct
    return elapsed


def median(xs):
    return sorted(xs)[len(xs) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--rows", type=int, default=100000)
    p.add_argument("--repeated", type=int, default=5000, help="keys of the repeated-key batch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="single,batch,repeated")
    a = p.parse_args()
    only = set(a.only.split(","))
    a.keys = min(a.keys, 24)
    setup_test_environment()
    old = connection.creation.create_test_db(verbosity=0)
    try:
        test = AbTest.objects.create(name="bench")
        ways = [("helper (extension)", helper, "extension"), ("helper (SQL mode)", helper, "sql"),
                ("wagtail raw SQL", wagtail_raw, "auto"), ("update_or_create", update_or_create, "auto")]
        print("Django %s, %s" % (django.get_version(), connection.Database.__name__))
        for threads in sorted({1, a.threads}) if "single" in only else ():
            results = {name: [] for name, _, _ in ways}
            for _ in range(a.rounds):
                for name, fn, mode in ways:
                    results[name].append(run_single(fn, mode, test, threads, a.calls, a.keys))
            med = {k: median(v) for k, v in results.items()}
            print("single rows: %d thread(s) x %d calls on %d keys, median of %d rounds:"
                  % (threads, a.calls, a.keys, a.rounds))
            for k, v in med.items():
                print("  %-20s %8.0f calls/s   %5.2fx wagtail raw   %5.2fx update_or_create"
                      % (k, v, v / med["wagtail raw SQL"], v / med["update_or_create"]))
        for label, distinct in (("hot: 24 keys", 24), ("spread: rows/2 keys", a.rows // 2)) \
                if "batch" in only else ():
            results = {"extension": [], "sql": []}
            for _ in range(a.rounds):
                for mode in results:
                    results[mode].append(run_many(mode, test, a.rows, distinct))
            print("upsert_increment_many, %d rows, %s (half existing), median of %d rounds:"
                  % (a.rows, label, a.rounds))
            for mode, v in results.items():
                print("  %-20s %8.0f rows/s" % (mode + " mode", median(v)))
        if "repeated" in only:
            results = {}
            for r in range(a.rounds):
                for mode in ("extension", "sql"):
                    for merged_first in (False, True):
                        results.setdefault((mode, merged_first), []).append(
                            run_repeated(mode, test, a.rows, a.repeated, merged_first, seed=r))
            print("repeated-key batch: %d increments over %d keys in a random order (half existing), "
                  "median of %d rounds:" % (a.rows, a.repeated, a.rounds))
            for mode in ("extension", "sql"):
                t, base = median(results[(mode, False)]), median(results[(mode, True)])
                print("  %-20s as they come %6.3f s (%8.0f input rows/s)   merged first by the caller "
                      "%6.3f s   %.2fx the merged-first time" % (mode + " mode", t, a.rows / t, base, t / base))
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
