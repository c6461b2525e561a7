#!/usr/bin/python3
"""Load with an invariant, under faults and DDL.

Clients run single-row calls and batches on hot and spread keys; in the same
transaction each logs every delta it sent into st_log, and a share of
transactions roll back on purpose.  With --flush background the calls log
their rows for the fold worker, which the fault thread also terminates and
SIGKILLs; before the check everything pending is folded.  Meanwhile a fault thread terminates and
cancels backends (also in the middle of large batches), sets tiny statement
timeouts, and runs DDL on the counter table; with --kill it SIGKILLs a
backend (the server restarts all sessions), with --restart it stops the
server with pg_ctl stop -m immediate and starts it again.  Clients reconnect
and go on.

At the end, for every key, the counter must equal the sum of the committed
logged deltas, exactly; there must be no duplicate keys; and no client may
have seen an error outside the expected set.

    /usr/bin/python3 tests/stress.py --duration 15 --clients 32 --flush statement

Connects with the libpq environment.  --restart needs UC_PGDATA and
UC_PGBIN.  Prints a summary and one closing line
"result: N checks passed, N checks failed".  In the summary, "error CODE"
counts the errors clients saw by SQLSTATE; "error (connection lost)" counts
those with no SQLSTATE, when the server closed the connection (a terminated
or killed backend, a restart).  Ctrl-C or SIGTERM stops the clients at once.
"""
import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2

# errors a client may see while faults are injected
EXPECTED = {
    "57P01": "terminated by administrator",
    "57P02": "crash of another backend",
    "57P03": "server starting up",
    "57014": "canceled / statement timeout",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "42P01": "table renamed or recreated while the call waited",
    "25P02": "transaction aborted",
    "55000": "object not in prerequisite state",
    None: "connection lost",
}

SETUP = """
CREATE EXTENSION IF NOT EXISTS upsert_counter;
-- a table with rows pending in background mode cannot be dropped
TRUNCATE upsert_counter_delta, upsert_counter_fold_status;
DROP TABLE IF EXISTS st_counter, st_log, st_counter_tmp CASCADE;
DROP SEQUENCE IF EXISTS st_id;
CREATE SEQUENCE st_id;  -- not owned by the table: it is dropped and recreated
CREATE TABLE st_counter (id bigint PRIMARY KEY DEFAULT nextval('st_id'), k int NOT NULL, g text NOT NULL,
                         n bigint NOT NULL DEFAULT 0, CONSTRAINT st_key UNIQUE (k, g));
CREATE TABLE st_log (k int NOT NULL, g text NOT NULL, d bigint NOT NULL);
"""

UPSERT = ("SELECT upsert_increment('st_counter', jsonb_build_object('k', k, 'g', g), "
          "jsonb_build_object('n', d)) FROM unnest(%s::int[], %s::text[], %s::int[]) AS t(k, g, d)")
LOG = "INSERT INTO st_log SELECT * FROM unnest(%s::int[], %s::text[], %s::int[])"
BIG = ("SELECT upsert_increment('st_counter', jsonb_build_object('k', (i * 7919) %% 20000, 'g', 'big'), "
       "jsonb_build_object('n', 1)) FROM generate_series(1, %s) i")
BIG_LOG = "INSERT INTO st_log SELECT (i * 7919) %% 20000, 'big', 1 FROM generate_series(1, %s) i"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.unexpected = []

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n


def connect(deadline):
    while True:
        try:
            conn = psycopg2.connect("", application_name="uc_stress")
            return conn
        except psycopg2.OperationalError:
            if time.time() > deadline + 60:
                raise
            time.sleep(0.2)


def worker(n, args, stats, stop, deadline):
    r = random.Random(args.seed * 1000 + n)
    conn = connect(deadline)
    big = (n == 0)
    while not stop.is_set():
        try:
            with conn.cursor() as cur:
                if args.flush != "statement":
                    cur.execute("SET LOCAL upsert_counter.flush = %s", (args.flush,))
                if big:
                    # a large batch, a target for kills, cancels and timeouts
                    rows = r.choice([5000, 20000])
                    if r.random() < 0.3:
                        cur.execute("SET LOCAL statement_timeout = %s", (r.choice([20, 50, 100]),))
                    cur.execute(BIG, (rows,))
                    cur.execute("SET LOCAL statement_timeout = 0")
                    cur.execute(BIG_LOG, (rows,))
                    stats.add("big batches")
                else:
                    count = 1 if r.random() < 0.7 else r.randrange(2, 20)
                    ks, gs, ds = [], [], []
                    for _ in range(count):
                        hot = r.random() < 0.5
                        ks.append(r.randrange(4) if hot else r.randrange(10000))
                        gs.append("hot" if hot else r.choice(["a", "b"]))
                        ds.append(r.randrange(-2, 10))
                    cur.execute(UPSERT, (ks, gs, ds))
                    cur.execute(LOG, (ks, gs, ds))
                    stats.add("calls")
                    stats.add("rows", count)
            if r.random() < 0.1:
                conn.rollback()
                stats.add("rolled back on purpose")
            else:
                conn.commit()
                stats.add("committed")
        except psycopg2.Error as e:
            code = e.pgcode
            stats.add("error %s" % (code or "(connection lost)"))
            if code not in EXPECTED:
                with stats.lock:
                    stats.unexpected.append("%s: %s" % (code, (e.pgerror or str(e)).strip()))
            try:
                conn.rollback()
            except psycopg2.Error:
                pass
            if conn.closed or code is None or code.startswith("57P"):
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
                conn = connect(deadline)
                stats.add("reconnects")
    conn.close()


def faults(args, stats, stop):
    r = random.Random(args.seed)
    conn = psycopg2.connect("")
    conn.autocommit = True
    extra = 0
    while not stop.is_set():
        time.sleep(r.uniform(0.2, 0.6))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pid, query FROM pg_stat_activity WHERE application_name = 'uc_stress' "
                            "AND state = 'active'")
                active = cur.fetchall()
                big = [pid for pid, q in active if "generate_series" in q]
                cur.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'upsert_counter fold'")
                folders = [pid for (pid,) in cur.fetchall()]
                roll = r.random()
                if roll < 0.08 and folders:
                    if r.random() < 0.5 and args.kill:
                        os.kill(folders[0], signal.SIGKILL)
                        stats.add("fault: SIGKILL of the fold worker")
                        time.sleep(2)
                        conn.close()
                        conn = connect(time.time())
                        conn.autocommit = True
                    else:
                        cur.execute("SELECT pg_terminate_backend(%s)", (folders[0],))
                        stats.add("fault: fold worker terminated")
                elif roll < 0.25 and active:
                    pid = r.choice(big or [p for p, _ in active])
                    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    stats.add("fault: terminate" + (" mid-batch" if pid in big else ""))
                elif roll < 0.45 and active:
                    pid = r.choice(big or [p for p, _ in active])
                    cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
                    stats.add("fault: cancel" + (" mid-batch" if pid in big else ""))
                elif roll < 0.55 and args.ddl:
                    extra += 1
                    cur.execute("ALTER TABLE st_counter ADD COLUMN extra%d int" % extra)
                    stats.add("ddl: add column")
                elif roll < 0.65 and args.ddl:
                    cur.execute("REINDEX TABLE st_counter")
                    stats.add("ddl: reindex")
                elif roll < 0.72 and args.ddl:
                    cur.execute("BEGIN; ALTER TABLE st_counter DROP CONSTRAINT st_key; "
                                "ALTER TABLE st_counter ADD CONSTRAINT st_key UNIQUE (g, k); COMMIT")
                    stats.add("ddl: unique index dropped and recreated")
                elif roll < 0.78 and args.ddl:
                    cur.execute("ALTER TABLE st_counter RENAME TO st_counter_tmp")
                    time.sleep(0.05)
                    cur.execute("ALTER TABLE st_counter_tmp RENAME TO st_counter")
                    stats.add("ddl: table renamed and back")
                elif roll < 0.82 and args.ddl and args.flush != "background":
                    # (a dropped table's pending background rows cannot be
                    # folded into its copy: not done in background mode)
                    cur.execute("""BEGIN;
                        LOCK TABLE st_counter, st_log IN ACCESS EXCLUSIVE MODE;
                        CREATE TABLE st_counter_tmp (LIKE st_counter INCLUDING DEFAULTS);
                        INSERT INTO st_counter_tmp SELECT * FROM st_counter;
                        DROP TABLE st_counter;
                        ALTER TABLE st_counter_tmp RENAME TO st_counter;
                        ALTER TABLE st_counter ADD PRIMARY KEY (id), ADD CONSTRAINT st_key UNIQUE (k, g);
                        COMMIT""")
                    stats.add("ddl: table dropped and recreated")
                elif roll < 0.85 and args.kill and active:
                    pid = r.choice(big or [p for p, _ in active])
                    os.kill(pid, signal.SIGKILL)
                    stats.add("fault: SIGKILL of a backend")
                    time.sleep(2)
                    conn.close()
                    conn = connect(time.time())
                    conn.autocommit = True
                elif roll < 0.87 and args.restart:
                    pg_ctl = os.path.join(os.environ["UC_PGBIN"], "pg_ctl")
                    subprocess.run([pg_ctl, "-D", os.environ["UC_PGDATA"], "-m", "immediate", "-w", "stop"],
                                   check=True, stdout=subprocess.DEVNULL)
                    subprocess.run([pg_ctl, "-D", os.environ["UC_PGDATA"], "-w", "-l",
                                    os.path.join(os.path.dirname(os.environ["UC_PGDATA"]), "server.log"),
                                    "start"], check=True, stdout=subprocess.DEVNULL)
                    stats.add("fault: pg_ctl stop -m immediate, restart")
                    conn = connect(time.time())
                    conn.autocommit = True
        except psycopg2.Error:
            try:
                conn.close()
            except psycopg2.Error:
                pass
            conn = connect(time.time())
            conn.autocommit = True
    conn.close()


def fold_all(stats):
    """Background mode: fold what is pending, until nothing is."""
    conn = connect(time.time())
    conn.autocommit = True
    with conn.cursor() as cur:
        for _ in range(100):
            cur.execute("SELECT upsert_counter_fold()")
            cur.execute("SELECT coalesce(sum(pending), 0) FROM upsert_counter_backlog")
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.2)
        cur.execute("SELECT coalesce(sum(pending), 0), count(*) FILTER (WHERE last_error IS NOT NULL) "
                    "FROM upsert_counter_backlog")
        pending, errors = cur.fetchone()
        cur.execute("SELECT coalesce(sum(folded), 0) FROM upsert_counter_fold_status")
        stats.add("background: rows folded", cur.fetchone()[0])
    conn.close()
    return pending


def check(stats):
    conn = connect(time.time())
    with conn.cursor() as cur:
        cur.execute("""SELECT count(*) FROM st_counter c
                       FULL JOIN (SELECT k, g, sum(d) AS s FROM st_log GROUP BY k, g) l USING (k, g)
                       WHERE c.n IS DISTINCT FROM l.s""")
        mismatches = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM (SELECT k, g FROM st_counter GROUP BY k, g HAVING count(*) > 1) d")
        duplicates = cur.fetchone()[0]
        cur.execute("SELECT count(*), coalesce(sum(n), 0) FROM st_counter")
        keys, total = cur.fetchone()
    conn.close()
    return mismatches, duplicates, keys, total


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--flush", choices=["statement", "commit", "background"], default="statement")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-ddl", dest="ddl", action="store_false")
    p.add_argument("--kill", action="store_true", help="SIGKILL backends (the server restarts them all)")
    p.add_argument("--restart", action="store_true", help="pg_ctl stop -m immediate and start")
    args = p.parse_args()

    conn = psycopg2.connect("")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(SETUP)
    conn.close()

    stats = Stats()
    stop = threading.Event()
    deadline = time.time() + args.duration
    # daemon threads: an interrupt ends the process even if a client is stuck
    threads = [threading.Thread(target=worker, args=(i, args, stats, stop, deadline), daemon=True)
               for i in range(args.clients)]
    threads.append(threading.Thread(target=faults, args=(args, stats, stop), daemon=True))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        for t in threads:
            t.start()
        time.sleep(args.duration)
    except KeyboardInterrupt:
        print("stress: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        stop.set()
    for t in threads:
        t.join()

    pending = fold_all(stats) if args.flush == "background" else 0
    mismatches, duplicates, keys, total = check(stats)
    print("stress: flush=%s, %d clients, %.0f s, seed %d" % (args.flush, args.clients, args.duration, args.seed))
    for key, n in sorted(stats.c.items()):
        print("  %-45s %d" % (key, n))
    print("  keys %d, counted total %d, mismatches %d, duplicate keys %d%s" %
          (keys, total, mismatches, duplicates,
           ", left pending %d" % pending if args.flush == "background" else ""))
    for u in stats.unexpected[:20]:
        print("UNEXPECTED:", u)
    checks = [mismatches == 0, duplicates == 0, not stats.unexpected, stats.c["committed"] > 0,
              pending == 0]
    print("result: %d checks passed, %d checks failed" % (sum(checks), len(checks) - sum(checks)))
    sys.exit(0 if all(checks) else 1)


if __name__ == "__main__":
    main()
