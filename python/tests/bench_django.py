#!/usr/bin/python3
"""upsert_increment() against update_or_create through the Django ORM.

    /usr/bin/python3 python/tests/bench_django.py [--threads 8] [--calls 500] [--keys 4]

The same workload both ways: THREADS threads, each CALLS increments spread
over KEYS hourly-log rows, autocommit.  update_or_create cannot increment,
so it is used as Django code does for counters: inside atomic(), lock the
row with update_or_create (SELECT ... FOR UPDATE, then UPDATE or INSERT) and
save the incremented value.  Prints calls/s for each and the ratio; the
totals are checked.  Uses the test settings (PGHOST, PGPORT, PGUSER) and a
throwaway test database.  A benchmark, not a test: it asserts nothing about
speed.
"""
import argparse
import datetime
import os
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.dirname(here)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from django.db import connection, connections, transaction  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from abtest.models import AbTest, AbTestHourlyLog  # noqa: E402
from upsert_counter_django import upsert_increment  # noqa: E402

DAY = datetime.date(2026, 11, 22)


def ours(test, hour):
    upsert_increment(AbTestHourlyLog, keys={"ab_test": test, "version": "control", "date": DAY, "hour": hour},
                     deltas={"participants": 1})


def update_or_create(test, hour):
    with transaction.atomic():
        obj, _ = AbTestHourlyLog.objects.update_or_create(ab_test=test, version="control", date=DAY, hour=hour)
        obj.participants += 1
        obj.save(update_fields=["participants"])


def run(fn, test, threads, calls, keys):
    AbTestHourlyLog.objects.all().delete()
    for h in range(keys):   # rows exist: both take the update path
        AbTestHourlyLog.objects.create(ab_test=test, version="control", date=DAY, hour=h)

    def work(n):
        for i in range(calls):
            fn(test, (i + n) % keys)
        connections.close_all()

    ts = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.time() - t0
    total = sum(AbTestHourlyLog.objects.values_list("participants", flat=True))
    assert total == threads * calls, (fn.__name__, total)
    return threads * calls / elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    setup_test_environment()
    old = connection.creation.create_test_db(verbosity=0)
    try:
        test = AbTest.objects.create(name="bench")
        results = {"upsert_increment": [], "update_or_create": []}
        for _ in range(a.rounds):
            results["upsert_increment"].append(run(ours, test, a.threads, a.calls, a.keys))
            results["update_or_create"].append(run(update_or_create, test, a.threads, a.calls, a.keys))
        med = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
        print("Django %s, %d threads x %d calls on %d keys, median of %d rounds:"
              % (django.get_version(), a.threads, a.calls, a.keys, a.rounds))
        for k, v in med.items():
            print("  %-18s %8.0f calls/s" % (k, v))
        print("  ratio              %8.2f" % (med["upsert_increment"] / med["update_or_create"]))
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
