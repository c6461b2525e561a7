#!/usr/bin/python3
"""Fuzz upsert_counter with random and malformed arguments.

Every call must end in success with the right result, or in an error whose
SQLSTATE is documented; never a crash, an internal error (XX000) or a
connection loss.  Successful calls on the model table are replayed in
Python and the table compared at the end.

    /usr/bin/python3 tests/fuzz.py [--seed N] [--calls N]

Connects with the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE).
Prints one closing line "result: N checks passed, N checks failed".
"""
import argparse
import collections
import json
import random
import sys

import psycopg2

# SQLSTATEs a call may end with: the extension's documented errors, the
# types' own input and range errors, and PostgreSQL's own.
DOCUMENTED = {
    "42P01", "42809", "22004", "22023", "42703", "428C9", "42701", "42P10", "42804",
    "0A000", "55000", "25006",
    "22P02", "22003", "22007", "22008", "22001", "22021", "22025", "2200N", "22P05",
    "23502", "23514", "42501", "54000", "54001",
}
# classes: the types' own input errors (22, data exceptions) and constraint
# violations (23).  fz_types has unique constraints besides the arbiter, and
# ON CONFLICT absorbs conflicts on the arbiter only, so a 23505 on another
# one is PostgreSQL's own answer.  (tests/stress.py, with one unique key,
# counts any 23505 as a failure.)
DOCUMENTED_CLASSES = {"22", "23"}

WEIRD_NAMES = [
    'Mixed Case', 'quo"te', 'semi;colon', 'select', 'drop table x; --',
    'ünïcödé', '日本', 'a' * 63, 'b' * 64, '', ' ', 'n', 'xmin', 'ctid', 'tableoid',
]

SETUP = r'''
CREATE EXTENSION IF NOT EXISTS upsert_counter;
DROP TABLE IF EXISTS fz_exact, fz_model, fz_types, fz_weird, fz_part CASCADE;
DROP TYPE IF EXISTS fz_mood CASCADE;
DROP DOMAIN IF EXISTS fz_pos CASCADE;
CREATE TYPE fz_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN fz_pos AS int CHECK (VALUE >= 0);
CREATE TABLE fz_model (k int, g text, n bigint NOT NULL DEFAULT 0, m int DEFAULT 0,
                       PRIMARY KEY (k, g));
CREATE TABLE fz_exact (LIKE fz_model INCLUDING ALL);
CREATE TABLE fz_types (
    k_int int, k_text text, k_date date, k_uuid uuid, k_mood fz_mood,
    d_small smallint DEFAULT 0, d_int int DEFAULT 0, d_big bigint DEFAULT 0,
    d_num numeric(12,3) DEFAULT 0, d_real real DEFAULT 0, d_dbl double precision DEFAULT 0,
    d_dom fz_pos DEFAULT 0,
    a_json jsonb, a_ts timestamptz, a_bool boolean, a_arr int[], a_vc varchar(4),
    UNIQUE (k_int, k_text), UNIQUE (k_date, k_uuid), UNIQUE NULLS NOT DISTINCT (k_mood));
CREATE TABLE fz_weird ("Mixed Case" int, "quo""te" text, "semi;colon" int DEFAULT 0,
                       "select" int DEFAULT 0, "drop table x; --" int DEFAULT 0,
                       "ünïcödé" int DEFAULT 0, "日本" text,
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" int DEFAULT 0,
                       n int DEFAULT 0,
                       UNIQUE ("Mixed Case", "quo""te"));
CREATE TABLE fz_part (day date, k int, n int DEFAULT 0, PRIMARY KEY (day, k)) PARTITION BY RANGE (day);
CREATE TABLE fz_part_a PARTITION OF fz_part FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE fz_part_b PARTITION OF fz_part FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
CREATE OR REPLACE VIEW fz_view AS SELECT * FROM fz_model;
CREATE SEQUENCE IF NOT EXISTS fz_seq;
'''

TYPES_COLS = ["k_int", "k_text", "k_date", "k_uuid", "k_mood", "d_small", "d_int", "d_big",
              "d_num", "d_real", "d_dbl", "d_dom", "a_json", "a_ts", "a_bool", "a_arr", "a_vc"]


def rand_number(r):
    return r.choice([
        0, 1, -1, 2, 7, 32767, 32768, -32769, 2147483647, 2147483648, -2147483649,
        9223372036854775807, 9223372036854775808, -9223372036854775809,
        10 ** 30, 1.5, -0.25, 1e300, 1e-300, 123.456789, 0.0001,
    ])


def rand_scalar(r):
    kind = r.randrange(12)
    if kind < 4:
        return rand_number(r)
    if kind == 4:
        return None
    if kind == 5:
        return r.choice([True, False])
    if kind == 6:
        return r.choice(["NaN", "Infinity", "-Infinity", "1e400", "12", "x", "", "2026-02-30",
                         "2026-11-22", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "happy", "furious",
                         "{1,2}", "{", "'; DROP TABLE fz_model; --", "\u00e9\u65e5"])
    if kind == 7:
        return [rand_number(r), "x"]
    if kind == 8:
        return {"nested": {"deep": [1, None]}}
    return r.randrange(-5, 50)


def rand_name(r, cols):
    roll = r.random()
    if roll < 0.7 and cols:
        return r.choice(cols)
    if roll < 0.85:
        return r.choice(WEIRD_NAMES)
    return r.choice(cols).upper() if cols else "X"


def rand_object(r, cols, allow_non_object=True):
    roll = r.random()
    if allow_non_object and roll < 0.06:
        return r.choice([None, "[]", "1", '"s"', "null", "true", "[{}]"])
    if roll < 0.12:
        return "{}"
    obj = {}
    for _ in range(r.randrange(1, 5)):
        obj[rand_name(r, cols)] = rand_scalar(r)
    return json.dumps(obj)


# usable unique keys, delta columns and other columns per target
SHAPES = {
    "fz_model": ([["k", "g"]], ["n", "m"], []),
    "fz_types": ([["k_int", "k_text"], ["k_date", "k_uuid"], ["k_mood"]],
                 ["d_small", "d_int", "d_big", "d_num", "d_real", "d_dbl", "d_dom"],
                 ["a_json", "a_ts", "a_bool", "a_arr", "a_vc"]),
    "fz_weird": ([["Mixed Case", 'quo"te']],
                 ["semi;colon", "select", "drop table x; --", "ünïcödé", "a" * 63, "n"], ["日本"]),
    "fz_part": ([["day", "k"]], ["n"], []),
    "fz_part_a": ([["day", "k"]], ["n"], []),
}


def rand_typed(r, col):
    """A value for a column: usually right for its type, sometimes not."""
    if r.random() < 0.1:
        return rand_scalar(r)
    if col in ("k", "k_int", "Mixed Case"):
        return r.randrange(-3, 30)
    if col in ("g", "k_text", 'quo"te', "日本"):
        return r.choice(["a", "b", "ü", "'; --", "x" * 40, ""])
    if col in ("day", "k_date"):
        return "2026-%02d-%02d" % (r.randrange(1, 13), r.randrange(1, 29))
    if col == "k_uuid":
        return "a0eebc99-9c0b-4ef8-bb6d-6bb9bd38%04x" % r.randrange(16)
    if col == "k_mood":
        return r.choice(["sad", "ok", "happy", None])
    if col == "a_json":
        return r.choice([{"a": [1, 2]}, "text", 1.5, None])
    if col == "a_ts":
        return r.choice(["2026-11-22T13:00:00+01:00", "2026-11-22 13:00", "yesterday", "infinity"])
    if col == "a_bool":
        return r.choice([True, False, "yes", "off"])
    if col == "a_arr":
        return r.choice(["{1,2,3}", "{}", "{NULL}"])
    if col == "a_vc":
        return r.choice(["abcd", "abcde", "é"])
    return r.randrange(-5, 50)


def structured_call(r, target):
    """Keys that name a real unique key, deltas on numeric columns."""
    keysets, deltas, others = SHAPES[target]
    keys = {c: rand_typed(r, c) for c in r.choice(keysets)}
    d = {c: (r.randrange(-5, 50) if r.random() < 0.8 else rand_number(r))
         for c in r.sample(deltas, r.randrange(0, len(deltas) + 1))}
    a = {c: rand_typed(r, c) for c in r.sample(others, r.randrange(0, len(others) + 1))}
    return json.dumps(keys), json.dumps(d), json.dumps(a) if a else None


def rand_target(r):
    return r.choice(["fz_model", "fz_types", "fz_weird", "fz_part", "fz_view", "fz_seq",
                     "fz_nonexistent", "42424242", "pg_class", None, "fz_part_a"])


def cols_of(target):
    return {
        "fz_model": ["k", "g", "n", "m"],
        "fz_types": TYPES_COLS,
        "fz_weird": ["Mixed Case", 'quo"te', "semi;colon", "select", "drop table x; --",
                     "ünïcödé", "日本", "a" * 63, "n"],
        "fz_part": ["day", "k", "n"], "fz_part_a": ["day", "k", "n"],
    }.get(target, ["k", "n"])


class Fuzzer:
    def __init__(self, seed, calls):
        self.r = random.Random(seed)
        self.calls = calls
        self.conn = psycopg2.connect("")
        self.conn.autocommit = True
        self.model = collections.Counter()
        self.outcomes = collections.Counter()
        self.failures = []

    def sql(self, q, args=()):
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall() if cur.description else None

    def model_call(self):
        """A valid call on fz_exact (which nothing else touches): its result
        is predicted in Python."""
        r = self.r
        rows = [(r.randrange(20), r.choice(["a", "b"]), r.randrange(-3, 10))
                for _ in range(r.choice([1, 1, 1, 5, 50]))]
        q = ("SELECT upsert_increment('fz_exact', jsonb_build_object('k', k, 'g', g), "
             "jsonb_build_object('n', d)) FROM unnest(%s::int[], %s::text[], %s::int[]) AS t(k, g, d)")
        self.sql(q, ([x[0] for x in rows], [x[1] for x in rows], [x[2] for x in rows]))
        for k, g, d in rows:
            self.model[(k, g)] += d

    def random_call(self):
        r = self.r
        target = rand_target(r)
        cols = cols_of(target)
        structured = target in SHAPES and r.random() < 0.6
        if structured:
            keys, deltas, assign = structured_call(r, target)
        else:
            keys = rand_object(r, cols)
            deltas = rand_object(r, cols)
            assign = rand_object(r, cols) if r.random() < 0.3 else None
        on_insert = rand_object(r, cols) if r.random() < 0.3 else None
        form = r.randrange(4)
        if form == 0:
            q = "SELECT upsert_increment(%s::regclass, %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb)"
            args = (target, keys, deltas, assign, on_insert)
        elif form == 1:
            q = "SELECT * FROM upsert_increment_returning(%s::regclass, %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb)"
            args = (target, keys, deltas, assign, on_insert)
        elif form == 2:
            n = r.randrange(2, 30)
            rows = [structured_call(r, target) if structured else
                    (rand_object(r, cols), rand_object(r, cols), assign) for _ in range(n)]
            q = ("SELECT upsert_increment(%s::regclass, k, d, a, o) FROM unnest(%s::jsonb[], %s::jsonb[], "
                 "%s::jsonb[], %s::jsonb[]) AS t(k, d, a, o)")
            args = (target, [x[0] for x in rows], [x[1] for x in rows], [x[2] for x in rows],
                    [on_insert] * n)
        else:
            q = ("BEGIN; SET LOCAL upsert_counter.flush = commit; "
                 "SELECT upsert_increment(%s::regclass, %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb); COMMIT")
            args = (target, keys, deltas, assign, on_insert)
        self.sql(q, args)

    def run(self):
        self.sql(SETUP)
        for i in range(self.calls):
            model = self.r.random() < 0.25
            try:
                if model:
                    self.model_call()
                else:
                    self.random_call()
                self.outcomes["ok"] += 1
            except psycopg2.Error as e:
                code = e.pgcode
                if code is None:
                    self.failures.append("call %d lost the connection: %s" % (i, e))
                    return
                if not self.conn.autocommit or self.conn.status != psycopg2.extensions.STATUS_READY:
                    self.conn.rollback()
                try:
                    self.sql("ROLLBACK")
                except psycopg2.Error:
                    pass
                self.outcomes[code] += 1
                if model:
                    self.failures.append("model call %d failed: %s %s" % (i, code, e.pgerror))
                elif code not in DOCUMENTED and code[:2] not in DOCUMENTED_CLASSES:
                    self.failures.append("call %d: undocumented SQLSTATE %s: %s" % (i, code, e.pgerror))
        rows = self.sql("SELECT k, g, n FROM fz_exact")
        got = {(k, g): n for k, g, n in rows}
        want = {key: n for key, n in self.model.items()}
        for key in set(got) | set(want):
            if got.get(key, 0) != want.get(key, 0):
                self.failures.append("fz_exact %s: table has %s, model says %s"
                                     % (key, got.get(key), want.get(key)))
        # the backend is still alive and its cache usable
        try:
            self.sql("SELECT upsert_increment('fz_exact', '{\"k\": 0, \"g\": \"a\"}', '{}')")
        except psycopg2.Error as e:
            self.failures.append("model: the session is unusable after the run: %s" % e)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--calls", type=int, default=3000)
    a = p.parse_args()
    f = Fuzzer(a.seed, a.calls)
    f.run()
    print("fuzz: seed %d, %d calls; outcomes: %s" % (
        a.seed, a.calls, ", ".join("%s %d" % kv for kv in sorted(f.outcomes.items()))))
    for msg in f.failures[:50]:
        print("FAILED:", msg)
    checks = 2  # every call documented; the model table exact
    failed = (1 if any("undocumented" in m or "lost" in m for m in f.failures) else 0) + \
             (1 if any(m.startswith("fz_exact") or m.startswith("model") for m in f.failures) else 0)
    print("result: %d checks passed, %d checks failed" % (checks - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
