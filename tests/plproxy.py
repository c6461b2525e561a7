#!/usr/bin/python3
"""upsert_counter sharded with PL/Proxy (plproxy/shard.sql, plproxy/proxy.sql).

    PGHOST=... PGPORT=... /usr/bin/python3 tests/plproxy.py [--shards 4] [--threads 8]

On the server given by PGHOST/PGPORT (a superuser connection; make test's
throwaway cluster), creates SHARDS shard databases (the extension, a
counter table, plproxy/shard.sql) and a proxy database (plproxy, the
cluster as a foreign server over loopback connections, plproxy/proxy.sql),
then checks, through the proxy only:

  routing      every key lives on exactly the shard hashtext(shard_key) says
  load         THREADS threads of single calls and batches (duplicate keys
               in a batch, keys on every shard) give exact per-key counts
  batches      one result row per shard touched, inserted + updated = the
               distinct keys of the batch
  returning    the returning / get-or-create form, from the owning shard
  errors       a shard's error reaches the caller with its SQLSTATE; that
               shard wrote nothing of the call
  commit mode  upsert_counter.flush = commit on the shards: still exact
  background   upsert_counter.flush = background on the shards: each shard
               logs and folds its own rows; exact after a fold

Drops its databases at the end.  Prints "result: N checks passed, N checks
failed" last; exit status 1 on any failure.
"""
import argparse
import json
import os
import random
import sys
import threading

import psycopg2
import psycopg2.errors

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TABLE = "CREATE TABLE hits (page text, day date, n bigint NOT NULL DEFAULT 0, " \
        "small smallint NOT NULL DEFAULT 0, UNIQUE (page, day))"
DAY = "2026-11-22"

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok: " + what)
    else:
        failed += 1
        print("FAILED: " + what)


def connect(db):
    conn = psycopg2.connect(dbname=db)
    conn.autocommit = True
    return conn


def run(db, *sql):
    conn = connect(db)      # not "with conn": that would open a transaction
    try:
        cur = conn.cursor()
        for s in sql:
            cur.execute(s)
    finally:
        conn.close()


def keys_of(page):
    return json.dumps({"page": page, "day": DAY})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--calls", type=int, default=300)
    a = p.parse_args()
    shards = ["uc_shard%d" % i for i in range(a.shards)]
    host, port = os.environ.get("PGHOST", ""), os.environ.get("PGPORT", "5432")
    for db in shards + ["uc_proxy"]:
        run("postgres", "DROP DATABASE IF EXISTS %s" % db, "CREATE DATABASE %s" % db)
    try:
        shard_sql = open(os.path.join(REPO, "plproxy", "shard.sql")).read()
        for db in shards:
            run(db, "CREATE EXTENSION upsert_counter", TABLE, shard_sql)
        partitions = ", ".join("p%d 'dbname=%s host=%s port=%s'" % (i, db, host, port)
                               for i, db in enumerate(shards))
        run("uc_proxy", "CREATE EXTENSION plproxy",
            "CREATE SERVER upsert_counter FOREIGN DATA WRAPPER plproxy OPTIONS (%s)" % partitions,
            "CREATE USER MAPPING FOR PUBLIC SERVER upsert_counter OPTIONS (user '%s')"
            % os.environ.get("PGUSER", "postgres"),
            open(os.path.join(REPO, "plproxy", "proxy.sql")).read())
        checks(a, shards)
    finally:
        for db in shards + ["uc_proxy"]:
            run("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    print("result: %d checks passed, %d checks failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def shard_rows(shards):
    """{shard index: {page: n}}"""
    out = {}
    for i, db in enumerate(shards):
        conn = connect(db)
        cur = conn.cursor()
        cur.execute("SELECT page, n FROM hits")
        out[i] = dict(cur.fetchall())
        conn.close()
    return out


def owner(cur, page, nshards):
    cur.execute("SELECT hashtext(%s) & %s", [page, nshards - 1])
    return cur.fetchone()[0]


def single(cur, page, n=1):
    cur.execute("SELECT upsert_counter_proxy.upsert_increment('hits', %s, %s, %s)",
                [page, keys_of(page), json.dumps({"n": n})])
    return cur.fetchone()[0]


def batch(cur, pages, n=1):
    cur.execute("SELECT * FROM upsert_counter_proxy.upsert_increment_many('hits', %s, %s::jsonb[], "
                "%s::jsonb[], %s::jsonb[], %s::jsonb[])",
                [pages, [keys_of(p) for p in pages], [json.dumps({"n": n})] * len(pages),
                 [None] * len(pages), [None] * len(pages)])
    return [r[0] for r in cur.fetchall()]


def load(shards, a, pages, expected, lock):
    errors = []

    def work(seed):
        rnd = random.Random(seed)
        mine = {}
        try:
            conn = connect("uc_proxy")
            cur = conn.cursor()
            for i in range(a.calls):
                if i % 15 == 0:
                    chosen = [rnd.choice(pages) for _ in range(40)]
                    batch(cur, chosen)
                    for pg in chosen:
                        mine[pg] = mine.get(pg, 0) + 1
                else:
                    pg = rnd.choice(pages)
                    single(cur, pg)
                    mine[pg] = mine.get(pg, 0) + 1
            conn.close()
        except Exception as e:  # reported below
            errors.append(repr(e))
        with lock:
            for pg, n in mine.items():
                expected[pg] = expected.get(pg, 0) + n

    threads = [threading.Thread(target=work, args=(s,)) for s in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def checks(a, shards):
    conn = connect("uc_proxy")
    cur = conn.cursor()
    n = len(shards)

    # routing and the first results
    r1, r2 = single(cur, "home"), single(cur, "home")
    check((r1["inserted"], r2["updated"]) == (1, 1), "single: created, then updated")
    pages = ["page-%d" % i for i in range(64)]
    results = batch(cur, pages + pages[:10])
    touched = {owner(cur, p, n) for p in pages}
    check(len(results) == len(touched), "batch: one result row per shard touched (%d)" % len(touched))
    check(sum(r["inserted"] + r["updated"] for r in results) == len(pages),
          "batch: inserted + updated = distinct keys")
    rows = shard_rows(shards)
    misplaced = [(p, i) for i, r in rows.items() for p in r if owner(cur, p, n) != i]
    check(not misplaced, "routing: every key on the shard hashtext(shard_key) names")
    check(all(rows[owner(cur, p, n)][p] == (2 if p in pages[:10] else 1) for p in pages),
          "batch: duplicate keys merged on their shard")

    cur.execute("SELECT inserted, new_row FROM upsert_counter_proxy.upsert_increment_returning("
                "'hits', 'home', %s, '{}')", [keys_of("home")])
    inserted, new_row = cur.fetchone()
    check(inserted is False and new_row["n"] == 2 and new_row["page"] == "home",
          "returning: get-or-create reads the row on its shard")

    # errors: 70000 does not fit the smallint column of one shard's rows
    try:
        cur.execute("SELECT upsert_counter_proxy.upsert_increment('hits', 'big', %s, "
                    "'{\"small\": 70000}')", [keys_of("big")])
        check(False, "errors: out-of-range delta refused")
    except psycopg2.Error as e:
        check(e.pgcode == "22003", "errors: the shard's SQLSTATE reaches the caller (%s)" % e.pgcode)
    check("big" not in shard_rows(shards)[owner(cur, "big", n)], "errors: the shard wrote nothing")

    # exact counts under concurrent load, in each mode
    for mode in ("statement", "commit", "background"):
        for db in shards:
            run(db, "TRUNCATE hits", "ALTER DATABASE %s SET upsert_counter.flush = %s" % (db, mode))
        # PL/Proxy keeps its connections per proxy backend: a new backend
        # makes new ones, which take the shards' database setting
        conn.close()
        conn = connect("uc_proxy")
        cur = conn.cursor()
        probe = single(cur, "probe")
        check((probe["inserted"] is None) == (mode != "statement"),
              "load (%s mode): the shards run in that mode (%s)" % (mode, json.dumps(probe)))
        expected = {"probe": 1}
        errors = load(shards, a, pages, expected, threading.Lock())
        check(not errors, "load (%s mode): no errors %s" % (mode, errors[:1]))
        if mode == "background":
            # each shard folds its own log (its worker may have done some)
            for db in shards:
                run(db, "SELECT upsert_counter_fold()")
        rows = shard_rows(shards)
        got = {}
        for r in rows.values():
            for p, v in r.items():
                got[p] = got.get(p, 0) + v
        check(got == expected, "load (%s mode): exact per-key counts over %d keys, %d increments"
              % (mode, len(expected), sum(expected.values())))
        check(sum(len(r) for r in rows.values()) == len(got),
              "load (%s mode): every key on one shard only" % mode)
        conn = connect("uc_proxy")
        cur = conn.cursor()
    conn.close()


if __name__ == "__main__":
    main()
