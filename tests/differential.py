#!/usr/bin/python3
"""Differential test: upsert_counter's calls against the plain statement.

Proves equality by generation, not by example.  For every generated table
(column types with domains, typmods and arrays; defaults constant, volatile
and SQL functions; CHECK, NOT NULL, foreign keys incl. MATCH FULL and NOT
VALID; partitioned roots, partitions targeted directly, inheritance;
publications with and without replica identity and row filters; stored
generated columns; row-level security; column privileges; triggers) it
builds identical copies, one schema per path:

    ucd_rseq    the reference for single calls: per input row, the plain
                INSERT ... ON CONFLICT (keys) DO UPDATE SET n = COALESCE(t.n, 0)
                + EXCLUDED.n, a = EXCLUDED.a (DO NOTHING without deltas and
                assigns), as src/sqlgen.c writes it
    ucd_rmrg    the reference for batches: the input rows merged as the
                README says (deltas summed in input order, the last assign
                and the first on_insert win), one multi-row statement in the
                arbiter's key order
    ucd_single  SELECT upsert_increment(...) without FROM, one per input row
    ucd_slow    the same with upsert_counter.fast_update = off (only where
                that setting exists)
    ucd_agg     SELECT upsert_increment(...) FROM (VALUES ...): the aggregate
    ucd_rows    upsert_increment_rows(...) over typed records (where it exists)
    ucd_commit  upsert_counter.flush = commit, calls or the aggregate

and runs the same random calls on each (a few call shapes per table, used
over and over, as an application does; keys from a small domain, so that
calls both insert and update; now and then values a type, domain, check or
partition refuses, and NULL keys and deltas), under the same random
settings (read-only transactions by BEGIN READ ONLY or
default_transaction_read_only, isolation levels, search_path, SET ROLE to a
non-owner or to a non-superuser owner), with DDL between calls (CREATE OR
REPLACE of a SQL function used in a default, constraints added NOT VALID,
privileges, replica identity).  Each call is one transaction, run on all
schemas at once (a connection each).  It compares per call the outcome
(success or SQLSTATE, and the {"inserted", "updated"} counts where the
reference can tell them) and the state after it (sequences, digests of the
rows and of the trigger log: a difference is reported at the first call
after which it shows), and per table the final rows (tableoid as the
relation's name), the trigger log, the sequences, and the logical decoding
stream (test_decoding: schema names normalized, xids stripped, volatile
columns masked) of each path against its reference.  A lost connection (a
crash) is reported, and the run goes on once the server is back.

Where the README says the extension differs from the plain statement, the
reference models it rather than skipping it: a NULL key under a NULLS
DISTINCT arbiter or a NULL delta is 22004; every input value is converted
(checked by its type and domain) at the call, before anything is written,
also values a merge discards; a merged delta is summed in the column's type
as rows arrive (overflow, 22003), checked against its domain before the
write, and reaches the statement as a value computed at run time (as the
batch's parameters do), not as a constant folded at plan time; commit mode
refuses a read-only transaction (25006) and checks the call's privileges
(42501) at the call.  One thing the README does not say, also modelled: a
call naming a column whose type has no array type (an array column) is
written one statement per merged key, in key order (the batch statement
takes an array of each column's type), so AFTER triggers and foreign key
checks fire per key.

    /usr/bin/python3 tests/differential.py [--seed N] [--tables N] [--calls N]
    /usr/bin/python3 tests/differential.py --long [--duration SECONDS]
    /usr/bin/python3 tests/differential.py --seed N --table I    # replay one table

Connects with the libpq environment; the server must run with
wal_level = logical (test_decoding ships with PostgreSQL).  Creates the
roles ucd_user and ucd_owner and the schemas above.  Prints the seed and a
replay command first and with every mismatch, and one closing line
"result: N checks passed, N checks failed".
"""
import argparse
import concurrent.futures
import json
import os
import random
import re
import sys
import time

import psycopg2
import psycopg2.extensions

REFS = ["rseq", "rmrg"]
EXT_PATHS = ["single", "slow", "agg", "rows", "commit"]
REF_OF = {"single": "rseq", "slow": "rseq", "agg": "rmrg", "rows": "rmrg", "commit": "rmrg"}
SCHEMA = {p: "ucd_" + p for p in REFS + EXT_PATHS}
MASKED = {"ts"}          # volatile columns (clock_timestamp(), now()): never compared
ROLES = ["ucd_user", "ucd_owner"]
# make test's seed: against 1.2, its 60 tables find each of the direct
# update path's six known faults (read-only transactions, the partition
# constraint, replica identity, stale defaults, MATCH FULL foreign keys,
# tableoid in CHECK constraints)
DEFAULT_SEED = 1


class Val:
    """One JSON value of a call: its JSON text, and the text of the SQL
    literal the plain statement writes for it (None: NULL)."""

    def __init__(self, js, lit):
        self.js, self.lit = js, lit

    def __repr__(self):
        return self.js


def num(x):
    return Val(str(x), str(x))


def string(x):
    return Val(json.dumps(x), x)


def jval(text):
    return Val(text, text)


NULL = Val("null", None)


def ints(a, b):
    return [num(i) for i in range(a, b)]


# kinds of column: SQL type ({d} is the domain's name), domain definition,
# values (good, and those a check or the type refuses), how keys sort
KEY_KINDS = {
    "int4": dict(sql="integer", good=ints(0, 5), bad=[num("1.5"), num("2147483648")], sort=int),
    "int8": dict(sql="bigint", good=ints(0, 5), bad=[num("1.5")], sort=int),
    "int2": dict(sql="smallint", good=ints(0, 5), bad=[num("70000")], sort=int),
    "text": dict(sql="text", good=[string(c) for c in "abcd"], bad=[], sort=str),
    "vc3": dict(sql="varchar(3)", good=[string(c) for c in ["a", "bb", "ccc", "d"]],
                bad=[string("dddd")], sort=str),
    "date": dict(sql="date", good=[string("2026-01-0%d" % d) for d in range(1, 5)],
                 bad=[string("2026-02-30")], sort=str),
    "dkey": dict(sql="{d}", domain="integer CHECK (VALUE >= 0)", good=ints(0, 5),
                 bad=[num(-1)], sort=int),
}
DELTA_KINDS = {
    "int4": dict(sql="integer", good=ints(-2, 10), big=[num(2147483000)], bad=[num("1.5")]),
    "int8": dict(sql="bigint", good=ints(-2, 10), big=[num(9223372036854775000)], bad=[num("1.5")]),
    "int2": dict(sql="smallint", good=ints(-2, 10), big=[num(30000)], bad=[num("2.5")]),
    "numeric": dict(sql="numeric", good=[num(x) for x in ["1", "2.5", "-0.75", "0.125", "3"]],
                    big=[num("1e3")], bad=[]),
    "num62": dict(sql="numeric(6,2)", good=[num(x) for x in ["1", "2.125", "-0.5", "3.999", "2"]],
                  big=[num("9999.5")], bad=[num("123456")]),
    "float8": dict(sql="double precision", good=[num(x) for x in ["0.5", "1.25", "-2", "3"]],
                   big=[num("1" + "0" * 308)], bad=[]),
    "dint": dict(sql="{d}", domain="integer CHECK (VALUE BETWEEN -5 AND 1000)", good=ints(-2, 10),
                 big=[num(900)], bad=[num(2000)]),
    "dnum": dict(sql="{d}", domain="numeric(8,2) CHECK (VALUE <> 13)",
                 good=[num(x) for x in ["1", "2.5", "6.5", "3"]], big=[num("6.5")], bad=[num(13)]),
}
DELTA_WEIGHTS = dict(int4=30, int8=22, int2=8, numeric=8, num62=8, float8=8, dint=8, dnum=8)
ASSIGN_KINDS = {
    "text": dict(sql="text", good=[string(x) for x in ["x", "y", "hello world"]], bad=[]),
    "vc4": dict(sql="varchar(4)", good=[string(x) for x in ["ab", "abcd"]], bad=[string("abcde")]),
    "int4": dict(sql="integer", good=ints(0, 10), bad=[num("1.5")]),
    "intarr": dict(sql="integer[]", good=[string(x) for x in ["{1,2}", "{}", "{3,NULL}"]],
                   bad=[string("{")]),
    "num52": dict(sql="numeric(5,2)", good=[num(x) for x in ["1.234", "12.5", "0"]],
                  bad=[num("999.999")]),
    "date": dict(sql="date", good=[string(x) for x in ["2026-03-01", "2026-03-02"]],
                 bad=[string("2026-02-30")]),
    "jsonb": dict(sql="jsonb", good=[jval(x) for x in ['{"a": 1}', "[1, 2]", '"s"', "5"]], bad=[]),
    "bool": dict(sql="boolean", good=[jval("true"), jval("false"), string("yes")],
                 bad=[string("maybe")]),
    "dtext": dict(sql="{d}", domain="text CHECK (length(VALUE) <= 3)",
                  good=[string(x) for x in ["ab", "xyz"]], bad=[string("abcd")]),
}
FK_VALUES = [num(1), num(2), num(3), NULL]


def jsonb_order(names):
    """Object keys in jsonb's order: shorter first, then bytewise."""
    return sorted(names, key=lambda n: (len(n.encode()), n.encode()))


def q(name):
    return '"%s"' % name.replace('"', '""')


class Col:
    def __init__(self, name, sql, kind=None, values=None, domain=None):
        self.name = name
        self.sql = sql               # may contain {s}
        self.kind = kind
        self.values = values or {}   # good/bad/big lists
        self.domain = domain         # CREATE DOMAIN body, or None
        self.default = None          # SQL, may contain {s}
        self.notnull = False
        self.generated = None
        self.role = None             # key / delta / assign / other
        self.on_insert_ok = True
        self.sortkey = None


class Spec:
    """One generated table and everything around it; DDL templates use {s}
    for the schema."""

    def __init__(self, r, i):
        self.r, self.i = r, i
        self.t = "t%d" % i
        self.ddl = []          # before the seed rows
        self.seeds = []        # plain INSERTs, each on its own (may fail, identically)
        self.post = []         # after them: NOT VALID constraints, triggers, RLS, ...
        self.events = []       # (weight, [templates]) DDL run between calls
        self.features = []
        self.pubs = []
        self.cols = []
        self.has_log = False
        self.grants = False
        self.owner = None
        self.sf = False
        self.partitioned_target = False
        self.build()

    # -- generation -------------------------------------------------------
    def col(self, name):
        for c in self.cols:
            if c.name == name:
                return c
        return None

    def dense(self, p):
        """the probability p of a feature that only the executor handles
        (triggers, row-level security, generated columns, domain-typed
        defaults), scaled by the table's density: some tables get many,
        some few"""
        return min(1.0, p * self.density)

    def build(self):
        r, t = self.r, self.t
        self.density = r.choice([0.3, 1.0, 1.7])
        self.structure = r.choices(["plain", "part_root", "part_direct", "inh_parent", "inh_child"],
                                   [45, 12, 20, 8, 15])[0]
        self.features.append(self.structure)
        pre = []   # sequences, domains, functions, referenced tables

        # keys
        nkeys = r.choices([1, 2], [70, 30])[0]
        keynames = ["k", "kb"][:nkeys]
        self.keys = []
        for j, name in enumerate(keynames):
            kinds = list(KEY_KINDS)
            if j == 0 and self.structure == "part_root":
                kinds = ["int4", "int8", "date", "text"]
            kind = r.choice(kinds)
            spec = KEY_KINDS[kind]
            c = Col(name, spec["sql"], kind, dict(good=spec["good"], bad=spec["bad"]), spec.get("domain"))
            c.role = "key"
            c.sortkey = spec["sort"]
            self.cols.append(c)
            self.keys.append(c)
        self.arbiter = r.choices(["pk", "unique", "unique_nnd", "uindex"], [45, 20, 12, 23])[0]
        if self.arbiter != "pk" and r.random() < 0.5:
            for c in self.keys:
                c.notnull = True
        self.nulls_not_distinct = self.arbiter == "unique_nnd"
        self.features.append("arbiter " + self.arbiter)

        # deltas
        self.deltas = []
        for j in range(r.choices([1, 2, 3], [50, 35, 15])[0]):
            name = ["n", "hits", "v2"][j]
            # counters are mostly integers
            kind = r.choices(list(DELTA_KINDS), [DELTA_WEIGHTS[k] for k in DELTA_KINDS])[0]
            if j == 0 and self.structure == "part_direct":
                kind = r.choice(["int4", "int8"])
            spec = DELTA_KINDS[kind]
            c = Col(name, spec["sql"], kind, dict(good=spec["good"], bad=spec["bad"], big=spec["big"]),
                    spec.get("domain"))
            c.role = "delta"
            if r.random() < 0.55 or (j == 0 and self.structure == "part_direct"):
                c.default = "0"
                c.notnull = r.random() < 0.3
            else:
                c.notnull = r.random() < 0.05
            self.cols.append(c)
            self.deltas.append(c)

        # assigned columns
        self.assigns = []
        for j in range(r.choices([0, 1, 2, 3], [20, 40, 28, 12])[0]):
            kind = r.choice(list(ASSIGN_KINDS))
            spec = ASSIGN_KINDS[kind]
            name = ["a", "lbl", "tags", "note"][j]
            c = Col(name, spec["sql"], kind, dict(good=spec["good"], bad=spec["bad"]), spec.get("domain"))
            c.role = "assign"
            if r.random() < 0.25:
                c.default = r.choice([lit for lit in [v.lit for v in spec["good"]] if lit is not None])
                c.default = "'%s'" % c.default.replace("'", "''")
            if r.random() < 0.1:
                c.notnull = True
                if c.default is None:
                    c.default = "'%s'" % spec["good"][0].lit.replace("'", "''")
            self.cols.append(c)
            self.assigns.append(c)
        if self.structure == "part_direct" and self.assigns and self.assigns[0].kind == "int4" \
                and r.random() < 0.5:
            self.partcol = self.assigns[0]
        else:
            self.partcol = self.deltas[0]

        # other columns
        others = []
        if r.random() < 0.45:
            how = r.choice(["nextval", "serial", "identity"])
            if how == "identity" and self.structure in ("part_root", "part_direct", "inh_parent", "inh_child"):
                how = "nextval"
            if how == "nextval":
                pre.append("CREATE SEQUENCE {s}.%s_seq" % t)
                c = Col("id", "bigint")
                c.default = "nextval('{s}.%s_seq')" % t
            elif how == "serial":
                c = Col("id", "bigserial")
            else:
                c = Col("id", "bigint GENERATED BY DEFAULT AS IDENTITY")
            c.on_insert_ok = False
            others.append(c)
            self.features.append("id " + how)
        if r.random() < 0.3:
            c = Col("ts", "timestamptz")
            c.default = r.choice(["clock_timestamp()", "now()"])
            c.on_insert_ok = False
            others.append(c)
        if r.random() < 0.4:
            self.sf = True
            pre.append("CREATE SEQUENCE {s}.%s_seq2" % t)
            pre.append("CREATE FUNCTION {s}.%s_f() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$" % t)
            c = Col("sf", "integer", values=dict(good=ints(1, 4), bad=[num(150)]))
            c.default = "{s}.%s_f()" % t
            others.append(c)
            self.features.append("SQL function default")
            bodies = ["SELECT 1", "SELECT 2", "SELECT 150", "SELECT nextval('{s}.%s_seq2')::integer" % t,
                      "SELECT nextval('%s_seq2')::integer" % t]
            for w, body in zip([2, 2, 3, 4, 1], bodies):
                self.events.append((w, ["CREATE OR REPLACE FUNCTION {s}.%s_f() RETURNS integer LANGUAGE sql "
                                        "AS $$ %s $$" % (t, body)]))
        if r.random() < 0.3:
            c = Col("c", "integer", values=dict(good=ints(0, 5), bad=[]))
            c.default = r.choice(["7", "0"])
            c.notnull = r.random() < 0.5
            others.append(c)
        if r.random() < self.dense(0.05):
            c = Col("nn", "integer", values=dict(good=ints(1, 4), bad=[]))
            c.notnull = True
            others.append(c)
            self.features.append("NOT NULL without default")
        if r.random() < self.dense(0.05):
            c = Col("dd", "{d}", "dother", values=dict(good=ints(1, 4), bad=[num(0)]),
                    domain="integer CHECK (VALUE > 0)")
            others.append(c)
            self.features.append("domain column without default")
        if r.random() < self.dense(0.12):
            d = self.deltas[0]
            c = Col("g", "numeric")
            c.generated = "(COALESCE(%s, 0) * 2)" % q(d.name)
            c.on_insert_ok = False
            others.append(c)
            self.features.append("generated column")
        self.fk = None
        if r.random() < 0.45:
            # NOT VALID foreign keys: not on partitioned tables (core refuses them)
            self.fk = dict(match=r.choices(["FULL", "SIMPLE"], [60, 40])[0],
                           not_valid=r.random() < 0.75 and not self.structure.startswith("part"),
                           deferred=r.random() < 0.12)
            pre.append("CREATE TABLE {s}.%s_ref (a integer, b integer, PRIMARY KEY (a, b))" % t)
            pre.append("INSERT INTO {s}.%s_ref VALUES (1, 1), (1, 2), (2, 1)" % t)
            for name in ["fa", "fb"]:
                c = Col(name, "integer", values=dict(good=FK_VALUES, bad=[]))
                c.role = "fk"
                others.append(c)
            self.features.append("FK MATCH %s%s%s" % (self.fk["match"], " NOT VALID" if self.fk["not_valid"] else "",
                                                      " DEFERRED" if self.fk["deferred"] else ""))
        self.keyfk = False
        if self.keys[0].kind == "int4" and r.random() < 0.12:
            self.keyfk = True
            pre.append("CREATE TABLE {s}.%s_kref (k integer PRIMARY KEY)" % t)
            pre.append("INSERT INTO {s}.%s_kref VALUES (0), (1), (2), (3)" % t)
            self.features.append("FK on key")
        self.cols += others
        self.others = others
        r.shuffle(self.cols)
        self.dropped = r.random() < 0.15
        if self.dropped:
            self.features.append("dropped column")

        # domains
        for c in self.cols:
            if c.domain:
                dname = "{s}.%s_%s_dom" % (t, c.name)
                pre.append("CREATE DOMAIN %s AS %s%s" % (dname, c.domain,
                                                        " NOT NULL" if r.random() < 0.1 and c.role != "key" else ""))
                c.sql = c.sql.replace("{d}", dname)
                self.features.append("domain " + c.kind)

        # the table
        defs = []
        for c in self.cols:
            d = "%s %s" % (q(c.name), c.sql)
            if c.generated:
                d += " GENERATED ALWAYS AS %s STORED" % c.generated
            if c.default is not None:
                d += " DEFAULT " + c.default
            if c.notnull:
                d += " NOT NULL"
            defs.append(d)
        if self.dropped:
            defs.insert(r.randrange(len(defs) + 1), "junk integer DEFAULT 1")
        keylist = ", ".join(q(c.name) for c in self.keys)
        checks = []
        for c in self.deltas:
            if r.random() < 0.2:
                checks.append("CHECK (%s >= 0)" % q(c.name))
            if r.random() < 0.2:
                checks.append("CHECK (%s < 60)" % q(c.name))
        if self.sf and r.random() < 0.6:
            checks.append("CHECK (sf < 100)")
            self.features.append("CHECK on SQL function default")
        if self.assigns and r.random() < 0.1:
            a = self.assigns[0]
            checks.append("CHECK (%s IS DISTINCT FROM %s)" % (q(a.name), self.literal(a, a.values["good"][0])))
        if r.random() < 0.1 and len(self.deltas) > 1:
            checks.append("CHECK (%s <= %s + 100)" % (q(self.deltas[1].name), q(self.deltas[0].name)))
        t_ddl = []
        root_constraints = list(checks)
        if self.fk and not self.fk["not_valid"] and self.structure.startswith("part"):
            root_constraints.append(self.fk_clause())
        if self.keyfk:
            root_constraints.append("FOREIGN KEY (%s) REFERENCES {s}.%s_kref (k)" % (q(self.keys[0].name), t))
        arb = self.arbiter_clause(keylist)
        if self.structure in ("plain", "inh_parent", "inh_child", "part_root") and arb:
            root_constraints.append(arb)
        body = ", ".join(defs + root_constraints)
        if self.structure == "part_root":
            self.partitioned_target = True
            k0 = self.keys[0]
            t_ddl.append("CREATE TABLE {s}.%s (%s) PARTITION BY %s (%s)" % (
                t, body, "LIST" if k0.kind == "text" else "RANGE", q(k0.name)))
            if k0.kind == "text":
                bounds = ["IN ('a', 'b')", "IN ('c')"]
            elif k0.kind == "date":
                bounds = ["FROM (MINVALUE) TO ('2026-01-03')", "FROM ('2026-01-03') TO ('2026-01-04')"]
            else:
                bounds = ["FROM (MINVALUE) TO (2)", "FROM (2) TO (4)"]
            if r.random() < 0.5:
                bounds.append("DEFAULT")
            self.parts = []
            for j, b in enumerate(bounds):
                pname = "%s_p%d" % (t, j + 1)
                self.parts.append(pname)
                t_ddl.append("CREATE TABLE {s}.%s PARTITION OF {s}.%s %s" % (
                    pname, t, b if b == "DEFAULT" else "FOR VALUES " + b))
            self.target = t
        elif self.structure == "part_direct":
            pc = self.partcol
            bound = r.choice([5, 12, 30])
            t_ddl.append("CREATE TABLE {s}.%s (%s) PARTITION BY RANGE (%s)" % (t, body, q(pc.name)))
            t_ddl.append("CREATE TABLE {s}.%s_p1 PARTITION OF {s}.%s FOR VALUES FROM (MINVALUE) TO (%d)"
                         % (t, t, bound))
            t_ddl.append("CREATE TABLE {s}.%s_p2 PARTITION OF {s}.%s FOR VALUES FROM (%d) TO (MAXVALUE)"
                         % (t, t, bound))
            self.parts = ["%s_p1" % t, "%s_p2" % t]
            for p in self.parts:
                t_ddl.append(self.arbiter_on(p, keylist))
            self.target = "%s_p1" % t
            self.features.append("partition bound %d on %s" % (bound, pc.name))
        else:
            t_ddl.append("CREATE TABLE {s}.%s (%s)" % (t, body))
            self.target = t
            if self.structure.startswith("inh"):
                t_ddl.append("CREATE TABLE {s}.%s_c (extra integer DEFAULT 5) INHERITS ({s}.%s)" % (t, t))
                t_ddl.append(self.arbiter_on("%s_c" % t, keylist))
                if self.structure == "inh_child":
                    self.target = "%s_c" % t
        if self.arbiter == "uindex" and self.structure in ("plain", "inh_parent", "inh_child", "part_root"):
            t_ddl.append("CREATE UNIQUE INDEX %s_uidx ON {s}.%s (%s)" % (t, t, keylist))
        if self.dropped:
            t_ddl.append("ALTER TABLE {s}.%s DROP COLUMN junk" % t)
        # foreign keys are not inherited: on the target itself
        if self.fk and not self.fk["not_valid"] and not self.structure.startswith("part"):
            t_ddl.append("ALTER TABLE {s}.%s ADD %s" % (self.target, self.fk_clause()))
        if r.random() < 0.15:
            tc = r.choice(["tableoid = '{s}.%s'::regclass" % self.target, "tableoid <> 0"])
            if self.target == t and self.structure in ("part_root", "inh_parent"):
                tc = "tableoid <> 0"
            t_ddl.append("ALTER TABLE {s}.%s ADD CONSTRAINT %s_toid CHECK (%s)" % (self.target, t, tc))
            self.features.append("CHECK (%s)" % tc)
        self.ddl = pre + t_ddl

        # seed rows, then what comes after them
        self.seed_rows()
        post = []
        if self.fk and self.fk["not_valid"]:
            post.append("ALTER TABLE {s}.%s ADD %s NOT VALID" % (self.target, self.fk_clause()))
        if r.random() < 0.12 and self.structure != "part_root":
            d = self.deltas[0]
            post.append("ALTER TABLE {s}.%s ADD CONSTRAINT %s_nv CHECK (%s < 5) NOT VALID"
                        % (self.target, t, q(d.name)))
            self.features.append("CHECK NOT VALID")
        self.triggers(post)
        self.publication(post)
        self.security(post)
        self.post = post
        # events between calls
        d = self.deltas[0]
        self.events.append((1, ["ALTER TABLE {s}.%s ADD CONSTRAINT %s_ev CHECK (%s < 40) NOT VALID"
                                % (self.target, t, q(d.name))]))
        self.events.append((1, ["ALTER TABLE {s}.%s DROP CONSTRAINT IF EXISTS %s_ev" % (self.target, t)]))

    def fk_clause(self):
        f = self.fk
        return "CONSTRAINT %s_fk FOREIGN KEY (fa, fb) REFERENCES {s}.%s_ref (a, b) MATCH %s%s" % (
            self.t, self.t, f["match"], " DEFERRABLE INITIALLY DEFERRED" if f["deferred"] else "")

    def arbiter_clause(self, keylist):
        if self.arbiter == "pk":
            return "PRIMARY KEY (%s)" % keylist
        if self.arbiter == "unique":
            return "UNIQUE (%s)" % keylist
        if self.arbiter == "unique_nnd":
            return "UNIQUE NULLS NOT DISTINCT (%s)" % keylist
        return None

    def arbiter_on(self, table, keylist):
        if self.arbiter == "uindex":
            return "CREATE UNIQUE INDEX %s_uidx ON {s}.%s (%s)" % (table, table, keylist)
        return "ALTER TABLE {s}.%s ADD %s" % (table, self.arbiter_clause(keylist))

    def literal(self, c, v):
        """The SQL text of value v for column c, as a constant of its type."""
        if v.lit is None:
            return "NULL"
        return "CAST('%s' AS %s)" % (v.lit.replace("'", "''"), c.sql)

    def seed_rows(self):
        r = self.r
        n = r.choices([0, 1, 2, 3], [25, 30, 30, 15])[0]
        fk_nv = self.fk and self.fk["not_valid"]
        if fk_nv:
            n = max(n, 2)
        used = set()
        for j in range(n):
            vals = {}
            for c in self.keys:
                vals[c.name] = r.choice(self.key_domain(c))
            kt = tuple(vals[c.name].js for c in self.keys)
            if kt in used:
                continue
            used.add(kt)
            # values every constraint takes: the rows must be there
            for c in self.deltas:
                vals[c.name] = r.choice([v for v in c.values["good"] if not v.lit.startswith("-")][:3])
            for c in self.assigns:
                if r.random() < 0.6:
                    vals[c.name] = r.choice(c.values["good"])
            for c in self.others:
                if c.name in ("nn", "dd"):
                    vals[c.name] = num(1)
            if self.fk:
                if fk_nv and j == 0:
                    fa, fb = num(1), NULL        # partly NULL: refused by MATCH FULL
                elif fk_nv and j == 1:
                    fa, fb = num(3), num(3)      # no such row
                else:
                    fa, fb = r.choice([(num(1), num(1)), (NULL, NULL), (num(2), num(1))])
                vals["fa"], vals["fb"] = fa, fb
            cols = [c for c in self.cols if c.name in vals]
            self.seeds.append("INSERT INTO {s}.%s (%s) VALUES (%s)" % (
                self.target, ", ".join(q(c.name) for c in cols),
                ", ".join(self.literal(c, vals[c.name]) for c in cols)))

    def triggers(self, post):
        r, t = self.r, self.t
        on = self.target if self.structure != "part_root" else t
        if r.random() < self.dense(0.18):
            self.has_log = True
            self.features.append("AFTER ROW trigger")
            post.append("CREATE TABLE {s}.%s_log (seq bigint GENERATED BY DEFAULT AS IDENTITY, op text, "
                        "tbl text, r jsonb)" % t)
            post.append("GRANT INSERT ON {s}.%s_log TO PUBLIC" % t)
            post.append("GRANT USAGE ON SEQUENCE {s}.%s_log_seq_seq TO PUBLIC" % t)
            post.append("CREATE FUNCTION {s}.%s_after() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                        "INSERT INTO {s}.%s_log (op, tbl, r) VALUES (TG_OP, TG_TABLE_NAME, to_jsonb(NEW) - 'ts'); "
                        "RETURN NULL; END $$" % (t, t))
            post.append("CREATE TRIGGER %s_after AFTER INSERT OR UPDATE ON {s}.%s FOR EACH ROW "
                        "EXECUTE FUNCTION {s}.%s_after()" % (t, on, t))
        if r.random() < self.dense(0.12):
            d = self.deltas[0]
            what = r.choice(["skip", "modify", "skip_update"])
            self.features.append("BEFORE ROW trigger " + what)
            if what == "skip":
                body = "IF NEW.%s > 20 THEN RETURN NULL; END IF; RETURN NEW;" % q(d.name)
            elif what == "skip_update":
                body = "IF TG_OP = 'UPDATE' AND OLD.%s = 3 THEN RETURN NULL; END IF; RETURN NEW;" % q(d.name)
            else:
                body = "NEW.%s := NEW.%s + 1; RETURN NEW;" % (q(d.name), q(d.name))
            post.append("CREATE FUNCTION {s}.%s_before() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN %s END $$"
                        % (t, body))
            post.append("CREATE TRIGGER %s_before BEFORE INSERT OR UPDATE ON {s}.%s FOR EACH ROW "
                        "EXECUTE FUNCTION {s}.%s_before()" % (t, on, t))

    def publication(self, post):
        r, t = self.r, self.t
        if r.random() >= 0.35:
            return
        pubtable = self.target
        tables = [self.target] + (self.parts if self.structure == "part_root" else [])
        ri = r.choice(["DEFAULT", "FULL", "NOTHING", "INDEX", None])
        haspk = self.arbiter == "pk"
        if ri == "INDEX" and not (haspk or all(c.notnull for c in self.keys)) or \
                ri == "INDEX" and self.arbiter == "unique_nnd" and not all(c.notnull for c in self.keys):
            ri = "FULL"
        if ri == "INDEX":
            idx = self.index_name(self.target)
            if self.structure == "part_root":
                ri = "FULL"
            else:
                post.append("ALTER TABLE {s}.%s REPLICA IDENTITY USING INDEX %s" % (self.target, idx))
        if ri and ri != "INDEX":
            for tb in tables:
                post.append("ALTER TABLE {s}.%s REPLICA IDENTITY %s" % (tb, ri))
        publish = r.choice(["insert", "insert, update", "update", None])
        opts = []
        if publish:
            opts.append("publish = '%s'" % publish)
        filt = ""
        # row filters: on a delta (not in the replica identity) or on a key;
        # no user-defined types (domains) in them
        choices = ["%s > 0" % q(c.name) for c in self.deltas if not c.domain] + \
            ["%s IS NOT NULL" % q(c.name) for c in self.keys if not c.domain]
        if r.random() < 0.5 and choices:
            filt = " WHERE (%s)" % r.choice(choices)
        collist = ""
        if r.random() < 0.15:
            cols = [c for c in self.keys + self.deltas]
            collist = " (%s)" % ", ".join(q(c.name) for c in cols)
        if self.structure == "part_root" and (filt or collist):
            opts.append("publish_via_partition_root = true")
        post.append("CREATE PUBLICATION {s}_%s_pub FOR TABLE {s}.%s%s%s%s" % (
            t, pubtable, collist, filt, " WITH (%s)" % ", ".join(opts) if opts else ""))
        self.pubs.append("{s}_%s_pub" % t)
        self.features.append("publication publish=%s ri=%s%s%s" % (publish or "all", ri, filt, collist))
        for x in ["FULL", "NOTHING", "DEFAULT"]:
            self.events.append((1, ["ALTER TABLE {s}.%s REPLICA IDENTITY %s" % (tb, x) for tb in tables]))

    def index_name(self, table):
        if self.arbiter == "uindex":
            return "%s_uidx" % table
        if self.arbiter == "pk":
            return "%s_pkey" % table
        return "%s_%s_key" % (table, "_".join(c.name for c in self.keys))

    def security(self, post):
        r, t = self.r, self.t
        tables = [t] + (self.parts if self.structure.startswith("part") else []) + \
            (["%s_c" % t] if self.structure.startswith("inh") else [])
        target = self.target
        if r.random() < 0.25:
            self.owner = "ucd_owner"
            for tb in tables:
                post.append("ALTER TABLE {s}.%s OWNER TO ucd_owner" % tb)
            post.append("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO ucd_owner")
            self.features.append("owner ucd_owner")
        if r.random() < self.dense(0.15):
            self.features.append("RLS")
            post.append("ALTER TABLE {s}.%s ENABLE ROW LEVEL SECURITY" % target)
            if self.owner or r.random() < 0.5:
                post.append("ALTER TABLE {s}.%s FORCE ROW LEVEL SECURITY" % target)
                self.features.append("FORCE RLS")
            d = self.deltas[0]
            k = self.keys[0]
            pols = [
                "CREATE POLICY %s_sel ON {s}.%s FOR SELECT USING (true)" % (t, target),
                "CREATE POLICY %s_ins ON {s}.%s FOR INSERT WITH CHECK (%s IS NULL OR %s < 40)"
                % (t, target, q(d.name), q(d.name)),
                "CREATE POLICY %s_upd ON {s}.%s FOR UPDATE USING (%s IS DISTINCT FROM %s) "
                "WITH CHECK (%s IS NULL OR %s < 30)" % (t, target, q(k.name), self.literal(k, k.values["good"][1]),
                                                      q(d.name), q(d.name)),
            ]
            for p in pols:
                if r.random() < 0.8:
                    post.append(p)
        if r.random() < 0.6:
            self.grants = True
            post.append("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO ucd_user" if r.random() < 0.85
                        else "SELECT 1")
            if r.random() < 0.4:
                post.append("GRANT SELECT, INSERT, UPDATE ON {s}.%s TO ucd_user" % target)
                self.features.append("table privileges")
            else:
                named = [c for c in self.cols if not c.generated and c.name not in ("id", "ts")]
                ins = [c.name for c in named if r.random() < 0.93]
                upd = [c.name for c in named if c.role in ("delta", "assign", "fk") and r.random() < 0.9]
                sel = [c.name for c in named if c.role in ("key", "delta") and r.random() < 0.93]
                for priv, cols in [("INSERT", ins), ("UPDATE", upd), ("SELECT", sel)]:
                    if cols:
                        post.append("GRANT %s (%s) ON {s}.%s TO ucd_user" % (
                            priv, ", ".join(q(c) for c in cols), target))
                self.features.append("column privileges")
                upd_cols = [c for c in self.deltas + self.assigns]
                c = r.choice(upd_cols)
                self.events.append((1, ["REVOKE UPDATE (%s) ON {s}.%s FROM ucd_user" % (q(c.name), target)]))
                self.events.append((1, ["GRANT UPDATE (%s) ON {s}.%s TO ucd_user" % (q(c.name), target)]))

    # -- calls ------------------------------------------------------------
    def key_domain(self, c):
        """the key values calls and seed rows use: a small domain, so that
        calls hit existing rows"""
        good = c.values["good"]
        return good[:2] if c is not self.keys[0] else good[:4]

    def value(self, c, role, dirty):
        """a value for column c in a role; a dirty call may also get values
        its type, domain, checks or partitions refuse, and NULL keys and deltas"""
        r = self.r
        vals = c.values
        x = r.random() if dirty else 1.0
        if role == "key":
            if x < 0.05:
                return NULL
            if x < 0.1 and vals["bad"]:
                return r.choice(vals["bad"])
            if x < 0.14 and self.structure == "part_root":
                return vals["good"][-1]  # maybe outside every partition
            return r.choice(self.key_domain(c))
        if role == "delta":
            if x < 0.02:
                return NULL
            if x < 0.1 and vals.get("big"):
                return r.choice(vals["big"])
            if x < 0.15 and vals.get("bad"):
                return r.choice(vals["bad"])
            return r.choice(vals["good"])
        good = vals.get("good") or [num(1)]
        if x < 0.1 and vals.get("bad"):
            return r.choice(vals["bad"])
        if r.random() < 0.1:
            return NULL
        return r.choice(good)

    def new_shape(self):
        """the columns of a call, by role"""
        r = self.r
        shape = dict(key=[c.name for c in self.keys], delta=[], assign=[], on_insert=[])
        if r.random() >= 0.08:      # else get-or-create, or assign only
            for c in self.deltas:
                if r.random() < 0.65:
                    shape["delta"].append(c.name)
            if not shape["delta"]:
                shape["delta"].append(r.choice(self.deltas).name)
        for c in self.assigns:
            if r.random() < 0.35:
                shape["assign"].append(c.name)
        for c in self.others:
            if c.role == "fk" and r.random() < 0.12:
                shape["assign"].append(c.name)
        used = set(sum(shape.values(), []))
        for c in self.cols:
            if c.name in used or c.generated or not c.on_insert_ok:
                continue
            if r.random() < (0.85 if c.name == "nn" else 0.2):
                shape["on_insert"].append(c.name)
        for role in shape:
            shape[role] = jsonb_order(shape[role])
        return shape

    def call(self, j):
        r = self.r
        # an application calls a table with a few shapes, over and over (the
        # extension caches per shape); now and then with another one
        if not hasattr(self, "shapes"):
            self.shapes = [self.new_shape() for _ in range(r.choice([1, 2, 3]))]
        shape = r.choice(self.shapes) if r.random() < 0.85 else self.new_shape()
        nrows = r.choices([1, 2, 3, 4], [55, 20, 15, 10])[0]
        rows = []
        dirty = r.random() < 0.35
        for _ in range(nrows):
            row = {}
            for role, names in shape.items():
                for n in names:
                    row[n] = self.value(self.col(n), role, dirty)
            rows.append(row)
        setting = dict(
            iso=r.choices(["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"], [70, 15, 15])[0],
            readonly=r.choices([None, "begin", "default"], [86, 7, 7])[0],
            role=None,
            search_path=r.choices([None, "schema", "empty"], [60, 25, 15])[0],
            commit_form=r.choice(["calls", "agg"]),
            explicit_nulls=r.random() < 0.2,
        )
        x = r.random()
        if self.grants and x < 0.3:
            setting["role"] = "ucd_user"
        elif self.owner and x < 0.6:
            setting["role"] = "ucd_owner"
        event = None
        if self.events and r.random() < 0.2:
            event = r.choices([e[1] for e in self.events], [e[0] for e in self.events])[0]
        return Call(j, shape, rows, setting, event)

    def role_columns(self, call):
        return [(n, role) for role in ("key", "delta", "assign", "on_insert") for n in call.shape[role]]

    def describe(self):
        return "table %d (%s): %s" % (self.i, self.structure, ", ".join(self.features))


class Call:
    def __init__(self, j, shape, rows, setting, event):
        self.j, self.shape, self.rows, self.setting, self.event = j, shape, rows, setting, event

    def obj(self, row, role):
        names = self.shape[role]
        return "{" + ", ".join("%s: %s" % (json.dumps(n), row[n].js) for n in names) + "}"

    def describe(self):
        s = self.setting
        parts = [s["iso"]]
        if s["readonly"]:
            parts.append("read only (%s)" % ("BEGIN READ ONLY" if s["readonly"] == "begin"
                                              else "default_transaction_read_only"))
        if s["role"]:
            parts.append("role " + s["role"])
        if s["search_path"]:
            parts.append("search_path " + s["search_path"])
        rows = []
        for row in self.rows:
            args = [self.obj(row, "key"), self.obj(row, "delta")]
            if self.shape["assign"] or self.shape["on_insert"]:
                args.append(self.obj(row, "assign") if self.shape["assign"] else "NULL")
            if self.shape["on_insert"]:
                args.append(self.obj(row, "on_insert"))
            rows.append("(" + ", ".join(args) + ")")
        return "call %d [%s]: %s" % (self.j, ", ".join(parts), " ".join(rows))


class Outcome:
    def __init__(self, code=None, counts=None, stage=None):
        self.code = code          # None: success
        self.message = ""         # the error's message
        self.counts = counts      # (inserted, updated) or None if unknown
        self.stage = stage

    def __str__(self):
        if self.code:
            return "error %s" % self.code
        return "ok" + (" %s" % json.dumps({"inserted": self.counts[0], "updated": self.counts[1]})
                       if self.counts else "")


class Txn:
    """A cursor whose first statement carries BEGIN and the settings"""

    def __init__(self, cur, begin):
        self.cur, self.pending = cur, begin + "; "

    def execute(self, query, params=None):
        if self.pending:
            if params is not None:
                query = self.pending.replace("%", "%%") + query
            else:
                query = self.pending + query
            self.pending = None
        self.cur.execute(query, params)

    def fetchone(self):
        return self.cur.fetchone()

    def fetchall(self):
        return self.cur.fetchall()

    def mogrify(self, query, params):
        return self.cur.mogrify(query, params)


class Lost(Exception):
    pass


class Expected(Exception):
    def __init__(self, code):
        self.pgcode = code


class Runner:
    def __init__(self, args):
        self.args = args
        self.passed = 0
        self.failed = 0
        self.mismatches = 0
        self.stats = {}
        self.timing = {}
        self.direct = self.direct_tables = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(REFS + EXT_PATHS))
        self.admin = self.connect("ucd_admin")
        self.setup_cluster()
        self.conns = {p: self.connect("ucd_" + p) for p in REFS + self.paths}

    def parallel(self, jobs):
        """jobs: name -> (function, args...), each on its own connection;
        returns name -> result, raising the first exception"""
        futures = {name: self.pool.submit(job[0], *job[1:]) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}

    def reconnect(self):
        """After a crash: new connections and a new slot, once the server
        accepts connections again"""
        for conn in [self.admin, self.decoder] + list(self.conns.values()):
            try:
                conn.close()
            except psycopg2.Error:
                pass
        deadline = time.time() + 120
        while True:
            try:
                self.admin = self.connect("ucd_admin")
                break
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    return False
                time.sleep(0.5)
        self.open_slot()
        self.conns = {p: self.connect("ucd_" + p) for p in REFS + self.paths}
        return True

    def open_slot(self):
        # a temporary slot, on a connection of its own: a session drops its
        # temporary slots on any error
        self.decoder = self.connect("ucd_decoder")
        self.slot = "ucd_slot_%d" % os.getpid()
        self.sql(self.decoder, "SELECT pg_create_logical_replication_slot(%s, 'test_decoding', true)",
                 (self.slot,))

    def connect(self, name):
        conn = psycopg2.connect("", application_name=name)
        conn.autocommit = True
        return conn

    def sql(self, conn, query, params=None):
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    def setup_cluster(self):
        a = self.admin
        wal = self.sql(a, "SHOW wal_level")[0][0]
        if wal != "logical":
            sys.exit("differential: the server runs with wal_level = %s; logical decoding needs "
                     "wal_level = logical" % wal)
        self.sql(a, "CREATE EXTENSION IF NOT EXISTS upsert_counter")
        self.ext = self.sql(a, "SELECT quote_ident(extnamespace::regnamespace::text), extversion "
                               "FROM pg_extension WHERE extname = 'upsert_counter'")[0]
        self.ext, self.version = self.ext
        probe = self.connect("ucd_probe")
        self.sql(probe, "LOAD 'upsert_counter'")
        self.has_fast_guc = self.sql(probe, "SELECT current_setting('upsert_counter.fast_update', true)")[0][0] \
            is not None
        probe.close()
        self.has_rows = self.sql(a, "SELECT count(*) FROM pg_proc WHERE proname = 'upsert_increment_rows' "
                                    "AND pronamespace = %s::regnamespace", (self.ext,))[0][0] > 0
        self.paths = [p for p in EXT_PATHS if (p != "slow" or self.has_fast_guc) and (p != "rows" or self.has_rows)]
        for role in ROLES:
            self.sql(a, "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN "
                        "CREATE ROLE %s; END IF; END$$" % (role, role))
        for p in REFS + EXT_PATHS:
            self.sql(a, "DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA[p])
        self.drop_publications()
        self.open_slot()

    def drop_publications(self):
        for (name,) in self.sql(self.admin, "SELECT pubname FROM pg_publication WHERE pubname LIKE 'ucd\\_%'"):
            self.sql(self.admin, "DROP PUBLICATION %s" % q(name))

    # -- reporting ----------------------------------------------------------
    def replay(self, spec):
        return "/usr/bin/python3 tests/differential.py --seed %d --table %d --calls %d" % (
            self.args.seed, spec.i, self.args.calls)

    def mismatch(self, spec, what, lines, count=True):
        """print a mismatch (count: as a failed check)"""
        if count:
            self.failed += 1
        self.mismatches += 1
        if self.mismatches > self.args.max_report:
            return
        print("MISMATCH seed %d %s: %s" % (self.args.seed, "table %d" % spec.i, what))
        print("  replay: " + self.replay(spec))
        if spec.i not in self.printed:
            self.printed.add(spec.i)
            print("  " + spec.describe())
            for stmt in spec.ddl + spec.seeds + spec.post:
                print("    " + stmt.replace("{s}", "S") + ";")
        for ln in lines:
            print("  " + ln)
        sys.stdout.flush()

    def check(self, ok):
        if ok:
            self.passed += 1

    # -- one table ------------------------------------------------------------
    def run_table(self, i):
        r = random.Random("%d:%d" % (self.args.seed, i))
        spec = Spec(r, i)
        calls = [spec.call(j) for j in range(self.args.calls)]
        t0 = time.time()
        self.drop_publications()
        # set-up: the same on every schema, one round trip each; the seed
        # rows each in a subtransaction (one that fails fails everywhere)
        seeds = ""
        if spec.seeds:
            seeds = "BEGIN; DO $seed$ BEGIN %s END $seed$; COMMIT; " % " ".join(
                "BEGIN %s; EXCEPTION WHEN OTHERS THEN NULL; END;" % x for x in spec.seeds)
        def setup(p):
            s = SCHEMA[p]
            script = "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; GRANT USAGE ON SCHEMA %s TO ucd_user, ucd_owner" \
                % (s, s, s)
            if p in REFS or p in self.paths:
                script += "; BEGIN; %s; COMMIT; %sBEGIN; %s; COMMIT" % (
                    "; ".join(spec.ddl), seeds, "; ".join(spec.post) or "SELECT 1")
            conn = self.conns.get(p, self.admin)
            try:
                self.sql(conn, script.replace("{s}", s))
                return None
            except psycopg2.Error as e:
                self.sql(conn, "ROLLBACK")
                return e

        # each schema on its own connection, all at once (the admin connection
        # does those of paths not run)
        done = self.parallel({p: (setup, p) for p in REFS + self.paths})
        for p in REFS + EXT_PATHS:
            if p not in self.paths and p not in REFS:
                setup(p)
        errors = [e for e in done.values() if e is not None]
        if errors:
            e = errors[0]
            self.failed += 1
            print("SET-UP FAILED (a bug of this test) seed %d table %d: %s %s" % (
                self.args.seed, i, e.pgcode, e.pgerror))
            print("  " + spec.describe())
            for stmt in spec.ddl + spec.seeds + spec.post:
                print("    " + stmt + ";")
            return
        def prepare(p):
            if p in REFS:
                self.conv_table(p, spec)
            self.prepare_state(p, spec)
        self.parallel({p: (prepare, p) for p in REFS + self.paths})

        t1 = time.time()
        self.timing["set-up"] = self.timing.get("set-up", 0) + t1 - t0
        diverged = set()
        for call in calls:
            if call.event:
                # DDL between calls, the same on every schema (an error too)
                for p in REFS + self.paths:
                    for x in call.event:
                        try:
                            self.sql(self.admin, x.replace("{s}", SCHEMA[p]))
                        except psycopg2.Error:
                            pass
            # every path and reference at once, each on its own connection
            # and schema; compared when all are done
            jobs = {"rseq": (self.run_ref, spec, call, False), "rmrg": (self.run_ref, spec, call, True)}
            jobs.update({p: (self.run_path, p, spec, call) for p in self.paths})
            try:
                results = self.parallel(jobs)
            except psycopg2.OperationalError as e:
                # no SQLSTATE: a connection is gone (a crash?); nothing after it counts
                self.mismatch(spec, "call %d: lost a connection: %s" % (
                    call.j, str(e).strip().splitlines()[0]), [call.describe()])
                raise Lost()
            refs = {ref: results[ref] for ref in REFS}
            if self.args.trace:
                print("TRACE %s%s" % (call.describe(), "; before it: " + "; ".join(
                    x.replace("{s}", "S") for x in call.event) if call.event else ""))
                for ref in REFS:
                    print("TRACE   %-6s %s %s (stage %s) %s" % (ref, refs[ref], refs[ref].message,
                                                          getattr(refs[ref], "stage", None),
                                                          self.snapshot(ref, spec)["sequences"]))
            for p in self.paths:
                got = results[p]
                if self.args.trace:
                    print("TRACE   %-6s %s %s %s" % (p, got, got.message, self.snapshot(p, spec)["sequences"]))
                want = refs[REF_OF[p]]
                exp_code = want.code
                if p == "commit":
                    exp_code = want.commit_code
                self.stats[(p, got.code or "ok")] = self.stats.get((p, got.code or "ok"), 0) + 1
                ok = got.code == exp_code
                if ok and p != "commit" and got.code is None and want.counts is not None and \
                        got.counts is not None and got.counts != want.counts:
                    ok = False
                # the state after the call: reported at the first call after
                # which it differs (the final comparison shows the rows)
                if p not in diverged and got.state != want.state:
                    # counted once per path and table
                    diverged.add(p)
                    what = [w for w, a, b in zip(["sequences", "rows", "trigger log"], got.state, want.state)
                            if a != b]
                    self.mismatch(spec, "after call %d the %s of path %s differ from the plain statement's" % (
                        call.j, " and ".join(what), p), [call.describe()] + (
                        ["sequences: path %s, plain %s" % (got.state[0], want.state[0])]
                        if got.state[0] != want.state[0] else []))
                self.check(ok)
                if not ok:
                    self.mismatch(spec, "call %d path %s: %s, the plain statement: %s" % (
                        call.j, p, got, want if p != "commit" else
                        (("error %s" % exp_code) if exp_code else "ok")),
                        [call.describe()] + (["DDL just before the call: " + "; ".join(
                            x.replace("{s}", "S") for x in call.event)] if call.event else []))
        t2 = time.time()
        self.timing["calls"] = self.timing.get("calls", 0) + t2 - t1
        # how often the single path updated directly (1.2's upsert_counter_cache()
        # shows form fast_update; later versions have no such form)
        try:
            n = self.sql(self.conns["single"], "SELECT coalesce(sum(calls), 0) FROM %s.upsert_counter_cache() "
                         "WHERE form = 'fast_update' AND target::text LIKE %%s" % self.ext,
                         ("%%.%s%%" % spec.t,))[0][0]
        except psycopg2.Error:
            n = 0
        self.direct += n
        self.direct_tables += 1 if n else 0
        self.compare_final(spec)
        self.timing["final"] = self.timing.get("final", 0) + time.time() - t2

    def conv_table(self, ref, spec):
        """Per column a temporary table of one column of its type, without
        constraints: an INSERT into it converts a value as an assignment
        does (the type's input with its typmod, a domain's checks)."""
        conn = self.conns[ref]
        s = SCHEMA[ref]
        stmts = []
        for c in spec.cols:
            if c.generated:
                continue
            typ = c.sql.replace("{s}", s).replace(" GENERATED BY DEFAULT AS IDENTITY", "").replace("bigserial", "bigint")
            stmts.append("DROP TABLE IF EXISTS pg_temp.ucd_conv_%s; CREATE TEMP TABLE ucd_conv_%s (v %s); "
                         "GRANT ALL ON pg_temp.ucd_conv_%s TO PUBLIC" % (c.name, c.name, typ, c.name))
        self.sql(conn, "; ".join(stmts))

    # -- running a call -----------------------------------------------------------
    def begin(self, p, spec, call):
        st = call.setting
        b = "BEGIN ISOLATION LEVEL %s%s" % (st["iso"], " READ ONLY" if st["readonly"] == "begin" else "")
        sets = []
        if p == "slow":
            sets.append("SET LOCAL upsert_counter.fast_update = off")
        if p == "commit":
            sets.append("SET LOCAL upsert_counter.flush = commit")
        if st["role"]:
            sets.append("SET LOCAL ROLE " + st["role"])
        if st["search_path"] == "schema":
            sets.append("SET LOCAL search_path = %s, public" % SCHEMA[p])
        elif st["search_path"] == "empty":
            sets.append("SET LOCAL search_path = ''")
        return "; ".join([b] + sets)

    def target(self, p, spec, call):
        if call.setting["search_path"] == "schema":
            return spec.target
        return "%s.%s" % (SCHEMA[p], spec.target)

    def finish(self, conn, call):
        if call.setting["readonly"] == "default":
            self.sql(conn, "RESET default_transaction_read_only")

    def prepare_state(self, p, spec):
        """The state of a schema after a call, read in the same round trip
        as the call's COMMIT or ROLLBACK (EXECUTE ucd_state): the sequences,
        and digests of the rows and of the trigger log"""
        s = SCHEMA[p]
        rows = "(to_jsonb(x) - %s)::text" % ("ARRAY[%s]" % ", ".join("'%s'" % m for m in sorted(MASKED)))
        self.sql(self.conns[p], "DEALLOCATE ALL; PREPARE ucd_state AS SELECT "
                 "(SELECT json_agg(json_build_array(relname, pg_sequence_last_value(c.oid)) ORDER BY relname) "
                 "FROM pg_class c WHERE relnamespace = '%s'::regnamespace AND relkind = 'S'), "
                 "(SELECT md5(string_agg(c.relname || ' ' || %s, ',' ORDER BY c.relname || ' ' || %s)) "
                 "FROM %s.%s x JOIN pg_class c ON c.oid = x.tableoid), %s" % (
                     s, rows, rows, s, spec.t,
                     "(SELECT md5(string_agg(r::text, ',' ORDER BY seq)) FROM %s.%s_log)" % (s, spec.t)
                     if spec.has_log else "NULL"))

    def run_txn(self, conn, begin, body, call, state_sql="EXECUTE ucd_state"):
        """begin, then body(tx, out) -> counts, then COMMIT; an error is the
        outcome.  BEGIN and the settings go with the body's first statement,
        the state query with COMMIT or ROLLBACK (no round trips of their own)."""
        out = Outcome()
        cur = conn.cursor()
        if call.setting["readonly"] == "default":
            # a statement of its own: it applies from the next transaction on
            cur.execute("SET default_transaction_read_only = on")
        tx = Txn(cur, begin)
        try:
            out.counts = body(tx, out)
            tx.execute("COMMIT; " + state_sql)
        except (psycopg2.Error, Expected) as e:
            code = e.pgcode
            if code is None:
                raise
            out.code = code
            out.counts = None
            out.message = ((getattr(e, "pgerror", None) or "").strip().splitlines() or [""])[0]
            if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                cur.execute("ROLLBACK; " + state_sql)
            else:
                cur.execute(state_sql)
        out.state = cur.fetchone()
        cur.close()
        self.finish(conn, call)
        return out

    def run_path(self, p, spec, call):
        conn = self.conns[p]
        tgt = self.target(p, spec, call)
        shape = call.shape
        nargs = 3
        if shape["assign"] or call.setting["explicit_nulls"]:
            nargs = 4
        if shape["on_insert"] or call.setting["explicit_nulls"]:
            nargs = 5
        roles = ["key", "delta", "assign", "on_insert"][:nargs - 1]

        def objs(row):
            return [call.obj(row, role) if (role in ("key", "delta") or shape[role]) else None for role in roles]

        def single(cur, out):
            ins = upd = 0
            for row in call.rows:
                cur.execute("SELECT %s.upsert_increment(%%s::regclass, %s)" % (
                    self.ext, ", ".join(["%s::jsonb"] * len(roles))), [tgt] + objs(row))
                res = cur.fetchone()[0]
                ins += res.get("inserted") or 0
                upd += res.get("updated") or 0
            return (ins, upd)

        def agg(cur, out):
            vals = []
            params = [tgt]
            for row in call.rows:
                vals.append("(" + ", ".join(["%s"] * len(roles)) + ")")
                params += objs(row)
            cur.execute("SELECT %s.upsert_increment(%%s::regclass, %s) FROM (VALUES %s) AS v(%s)" % (
                self.ext, ", ".join("v.%s::jsonb" % x for x in ["k", "d", "a", "o"][:len(roles)]),
                ", ".join(vals), ", ".join(["k", "d", "a", "o"][:len(roles)])), params)
            res = cur.fetchone()[0]
            return (res.get("inserted") or 0, res.get("updated") or 0)

        def rows(cur, out):
            names = [n for role in ("key", "delta", "assign", "on_insert") for n in shape[role]]
            vals = []
            params = [tgt, shape["delta"], shape["assign"], shape["on_insert"]]
            for row in call.rows:
                vals.append("(" + ", ".join(["%s"] * len(names)) + ")")
                params += [row[n].lit for n in names]
            cur.execute("SELECT %s.upsert_increment_rows(%%s::regclass, v, %%s::text[], %%s::text[], %%s::text[]) "
                        "FROM (VALUES %s) AS v(%s)" % (self.ext, ", ".join(vals), ", ".join(q(n) for n in names)),
                        params)
            res = cur.fetchone()[0]
            return (res.get("inserted") or 0, res.get("updated") or 0)

        if p in ("single", "slow"):
            body = single
        elif p == "agg":
            body = agg
        elif p == "rows":
            body = rows
        else:
            body = single if call.setting["commit_form"] == "calls" else agg
        out = self.run_txn(conn, self.begin(p, spec, call), body, call)
        if p == "commit" or spec.partitioned_target or call.setting["role"]:
            out.counts = None
        return out

    def converted(self, spec, call, row, tbl_cols):
        """The columns of one input row the extension converts before it
        refuses a NULL key (under a NULLS DISTINCT arbiter) or a NULL delta
        with 22004, and whether it does"""
        names = []
        for n, role in tbl_cols:
            v = row[n]
            if v.lit is None and (role == "delta" or (role == "key" and not spec.nulls_not_distinct)):
                return names, True
            names.append(n)
        return names, False

    def run_ref(self, spec, call, merged):
        """the reference for a call: the plain statement, per row (merged
        False) or for the merged rows"""
        ref = "rmrg" if merged else "rseq"
        conn = self.conns[ref]
        s = SCHEMA[ref]
        tgt = self.target(ref, spec, call)
        tbl = tgt if "." not in tgt else "%s.%s" % (s, spec.target)
        shape = call.shape
        cols = spec.role_columns(call)
        do_nothing = not shape["delta"] and not shape["assign"]
        counting = not spec.partitioned_target and not call.setting["role"]
        keycols = [spec.col(n) for n in shape["key"]]

        def statement(rows):
            """rows: list of dicts name -> SQL expression text"""
            sql = "INSERT INTO %s AS t (%s) VALUES %s ON CONFLICT (%s) " % (
                tbl, ", ".join(q(n) for n, _ in cols),
                ", ".join("(" + ", ".join(row[n] for n, _ in cols) + ")" for row in rows),
                ", ".join(q(c.name) for c in spec.keys))
            if do_nothing:
                sql += "DO NOTHING"
            else:
                sql += "DO UPDATE SET " + ", ".join(
                    ("%s = COALESCE(t.%s, 0) + EXCLUDED.%s" % (q(n), q(n), q(n))) if role == "delta"
                    else "%s = EXCLUDED.%s" % (q(n), q(n))
                    for n, role in cols if role in ("delta", "assign"))
            if counting:
                sql += " RETURNING (t.xmax = '0'::xid)"
            return sql

        def lit(cur, v):
            return "NULL" if v.lit is None else cur.mogrify("%s", (v.lit,)).decode()

        def convert(cur, row):
            """The statements converting one input row, one per value in the
            call's order; and whether the extension refuses a NULL after them"""
            names, null_error = self.converted(spec, call, row, cols)
            return ["INSERT INTO pg_temp.ucd_conv_%s VALUES (%s)" % (n, lit(cur, row[n])) for n in names], null_error

        def run_script(cur, stmts):
            if stmts:
                cur.execute("; ".join(stmts))

        def count(cur, n_rows):
            if not counting:
                return None
            res = [x[0] for x in cur.fetchall()]
            ins = sum(1 for x in res if x)
            if do_nothing:
                return (ins, n_rows - ins)
            return (ins, len(res) - ins)

        def seq_body(cur, out):
            ins = upd = 0
            for row in call.rows:
                stmts, null_error = convert(cur, row)
                if null_error:
                    run_script(cur, stmts)
                    raise Expected("22004")
                run_script(cur, stmts + [statement([{n: lit(cur, row[n]) for n, _ in cols}])])
                c = count(cur, 1)
                if c is None:
                    ins = None
                elif ins is not None:
                    ins += c[0]
                    upd += c[1]
            return None if ins is None else (ins, upd)

        def keyof(row):
            k = []
            for c in keycols:
                v = row[c.name]
                if v.lit is None:
                    k.append((1, 0))
                else:
                    k.append((0, c.sortkey(v.lit)))
            return tuple(k)

        def mrg_body(cur, out):
            out.stage = "convert"
            # commit mode checks the call's privileges before it buffers
            t = cur.mogrify("%s", (tbl,)).decode()
            checks = ["has_any_column_privilege(%s::regclass, 'INSERT')" % t]
            for n, role in cols:
                # what the statement needs: ON CONFLICT reads the keys, SET
                # reads t.n and EXCLUDED.n, EXCLUDED.a
                privs = ["INSERT"] + (["UPDATE", "SELECT"] if role in ("delta", "assign") else
                                      ["SELECT"] if role == "key" else [])
                for pr in privs:
                    checks.append("has_column_privilege(%s::regclass, %s, '%s')" % (
                        t, cur.mogrify("%s", (n,)).decode(), pr))
            cur.execute("SELECT " + " AND ".join(checks))
            out.precheck = cur.fetchone()[0]
            merged_rows = {}
            order = []
            script = []
            for row in call.rows:
                stmts, null_error = convert(cur, row)
                script += stmts
                if null_error:
                    run_script(cur, script)
                    raise Expected("22004")
                try:
                    key = keyof(row)
                except ValueError:
                    # a key the type refuses: the conversion fails
                    run_script(cur, script)
                    raise RuntimeError("key %r converted" % row)
                if key in merged_rows:
                    # merged at once: deltas summed in the column's type
                    m = merged_rows[key]
                    for n, role in cols:
                        if role == "delta":
                            m[n].append(row[n])
                        elif role == "assign":
                            m[n] = row[n]
                    sums = [sum_expr(cur, spec.col(n), m[n]) for n, role in cols if role == "delta"]
                    if sums:
                        script.append("SELECT " + ", ".join(sums))
                else:
                    m = {}
                    for n, role in cols:
                        m[n] = [row[n]] if role == "delta" else row[n]
                    merged_rows[key] = m
                    order.append(key)
            keys = sorted(order)
            exprs = []
            domchecks = []
            dom = [n for n, role in cols if role == "delta" and spec.col(n).domain]
            for key in keys:
                m = merged_rows[key]
                e = {}
                # a merged delta of a domain type is checked before the write
                domchecks.append(["INSERT INTO pg_temp.ucd_conv_%s VALUES (%s)" % (
                    n, sum_expr(cur, spec.col(n), m[n])) for n in dom if len(m[n]) > 1])
                for n, role in cols:
                    if role == "delta":
                        # a merged sum is computed at run time, row by row, as
                        # the batch's parameters are: not folded at plan time
                        e[n] = lit(cur, m[n][0]) if len(m[n]) == 1 else \
                            "(SELECT %s)" % sum_expr(cur, spec.col(n), m[n])
                    else:
                        e[n] = lit(cur, m[n])
                exprs.append(e)
            # The batch statement takes an array of each column's type; with a
            # column whose type has none (an array type), the extension writes
            # the merged rows one statement each, in key order, each row's
            # domain checks just before its statement
            batchable = not any(spec.col(n).kind == "intarr" for n, _ in cols)
            if batchable:
                writes = [(sum(domchecks, []), exprs)]
            else:
                writes = [(d, [e]) for d, e in zip(domchecks, exprs)]
            ins = upd = 0
            for checks, rows in writes:
                script += checks
                if out.precheck:
                    out.stage = "write"     # only commit mode's expectation needs the stage
                    run_script(cur, script + [statement(rows)])
                else:
                    run_script(cur, script)
                    out.stage = "write"
                    cur.execute(statement(rows))
                script = []
                c = count(cur, len(rows))
                if c is None:
                    ins = None
                elif ins is not None:
                    ins += c[0]
                    upd += c[1]
            return None if ins is None else (ins, upd)

        def sum_expr(cur, c, vals):
            return "(" + " + ".join("CAST(%s AS %s)" % (lit(cur, v), c.sql.replace("{s}", s)) for v in vals) + ")"

        out = self.run_txn(conn, self.begin(ref, spec, call), mrg_body if merged else seq_body, call)
        if merged:
            # commit mode: read-only and privileges are refused at the call
            out.commit_code = out.code
            if call.setting["readonly"]:
                out.commit_code = "25006"
            elif out.code and out.stage == "convert" and getattr(out, "precheck", True) is False:
                out.commit_code = "42501"
        return out

    # -- final state ----------------------------------------------------------
    def snapshot(self, p, spec):
        s = SCHEMA[p]
        res = self.sql(self.conns[p], """SELECT
            (SELECT json_agg(json_build_array(c.relname, to_jsonb(x) - %%s::text[]))
               FROM %s.%s AS x JOIN pg_class c ON c.oid = x.tableoid),
            %s,
            (SELECT json_agg(json_build_array(sequencename, last_value) ORDER BY sequencename)
               FROM pg_sequences WHERE schemaname = %%s)""" % (
            s, spec.t, "(SELECT json_agg(json_build_array(op, tbl, r) ORDER BY seq) FROM %s.%s_log)" % (s, spec.t)
            if spec.has_log else "NULL"), (sorted(MASKED), s))[0]
        return dict(rows=sorted(json.dumps(x, sort_keys=True) for x in res[0] or []),
                    log=[json.dumps(x, sort_keys=True) for x in res[1] or []],
                    sequences=[json.dumps(x) for x in res[2] or []])

    def decoded(self):
        """The slot's changes since the last call, per schema: a list of
        transactions, each a tuple of normalized change lines."""
        out = {}
        cur_tx = []
        for (data,) in self.sql(self.decoder, "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, "
                                            "'include-xids', '0', 'skip-empty-xacts', '1')", (self.slot,)):
            if data.startswith("BEGIN"):
                cur_tx = []
            elif data.startswith("COMMIT"):
                per = {}
                for schema, line in cur_tx:
                    per.setdefault(schema, []).append(line)
                for schema, lines in per.items():
                    out.setdefault(schema, []).append(tuple(lines))
            else:
                m = re.match(r"table (ucd_[a-z]+)\.", data)
                if not m:
                    continue
                line = re.sub(r"\bucd_[a-z]+\.", "S.", data)
                for col in MASKED:
                    line = re.sub(r"\b%s\[[^\]]*\]:('(?:[^']|'')*'|\S+)" % col, col + "[masked]", line)
                cur_tx.append((m.group(1), line))
        return out

    def compare_final(self, spec):
        snaps = self.parallel({p: (self.snapshot, p, spec) for p in REFS + self.paths})
        dec = self.decoded()
        for p in self.paths:
            ref = REF_OF[p]
            for what in ("rows", "log", "sequences"):
                a, b = snaps[p][what], snaps[ref][what]
                self.check(a == b)
                if a != b:
                    self.mismatch(spec, "final %s of path %s differ from the plain statement's" % (what, p),
                                  diff(b, a))
            a, b = dec.get(SCHEMA[p], []), dec.get(SCHEMA[ref], [])
            self.check(a == b)
            if a != b:
                self.mismatch(spec, "logical decoding of path %s differs from the plain statement's" % p,
                              diff(["%d: %s" % (n, " | ".join(tx)) for n, tx in enumerate(b)],
                                   ["%d: %s" % (n, " | ".join(tx)) for n, tx in enumerate(a)]))

    def close(self):
        try:
            self.sql(self.decoder, "SELECT pg_drop_replication_slot(%s)", (self.slot,))
        except psycopg2.Error:
            pass
        if not self.args.keep:
            self.drop_publications()
            for p in REFS + EXT_PATHS:
                self.sql(self.admin, "DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA[p])


def diff(want, got, limit=8):
    """The first lines where got differs from want"""
    lines = []
    ws, gs = set(want), set(got)
    for x in want:
        if x not in gs:
            lines.append("- plain: " + x)
    for x in got:
        if x not in ws:
            lines.append("+ path:  " + x)
    if not lines:
        lines.append("(same lines, another order or multiplicity)")
        for n, (a, b) in enumerate(zip(want, got)):
            if a != b:
                lines += ["- plain: " + a, "+ path:  " + b]
                break
    return lines[:limit] + (["... %d more" % (len(lines) - limit)] if len(lines) > limit else [])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=None, help="default 1, or random with --long")
    p.add_argument("--tables", type=int, default=60, help="tables to generate (default 60)")
    p.add_argument("--table", type=int, default=None, help="run only this table of the seed (replay)")
    p.add_argument("--calls", type=int, default=20, help="calls per table (default 20)")
    p.add_argument("--long", action="store_true", help="generate tables for --duration seconds (make stress)")
    p.add_argument("--duration", type=float, default=None,
                   help="generate tables for this many seconds (default: --tables; 150 with --long)")
    p.add_argument("--max-report", type=int, default=60, help="mismatches printed in full")
    p.add_argument("--keep", action="store_true", help="keep the schemas of the last table")
    p.add_argument("--trace", action="store_true", help="print every call's outcomes and sequences")
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2 ** 31) if a.long else DEFAULT_SEED
    if a.long and a.duration is None:
        a.duration = 150.0
    start = time.time()
    run = Runner(a)
    run.printed = set()
    print("differential: seed %d, upsert_counter %s in schema %s; paths: %s (references: plain statement "
          "per row for single, slow; merged for agg, rows, commit)%s" % (
              a.seed, run.version, run.ext, ", ".join(run.paths),
              "" if run.has_fast_guc else "; no upsert_counter.fast_update setting: no slow path"))
    if a.table is not None:
        tables = [a.table]
        print("replay: /usr/bin/python3 tests/differential.py --seed %d --table %d --calls %d" % (
            a.seed, a.table, a.calls))
    elif a.duration:
        tables = None
        print("replay: /usr/bin/python3 tests/differential.py --seed %d --calls %d --tables N "
              "(N printed at the end), or --table I for one table" % (a.seed, a.calls))
    else:
        tables = list(range(a.tables))
        print("replay: /usr/bin/python3 tests/differential.py --seed %d --tables %d --calls %d "
              "(or --table I for one table)" % (a.seed, a.tables, a.calls))
    sys.stdout.flush()
    done = 0
    try:
        i = 0
        while True:
            if tables is not None:
                if i >= len(tables):
                    break
                t = tables[i]
            else:
                if time.time() - start >= a.duration:
                    break
                t = i
            try:
                run.run_table(t)
            except (Lost, psycopg2.OperationalError) as e:
                if not isinstance(e, Lost):
                    run.failed += 1
                    print("FAILED seed %d table %d: lost a connection: %s" % (
                        a.seed, t, str(e).strip().splitlines()[0] if str(e).strip() else e))
                print("the server closed a connection (check the server log for a crash); reconnecting")
                sys.stdout.flush()
                if not run.reconnect():
                    print("the server did not come back: stopping")
                    break
            done += 1
            i += 1
    finally:
        try:
            run.close()
        except psycopg2.Error:
            pass
    outcomes = {}
    for (path, code), n in sorted(run.stats.items()):
        outcomes.setdefault(path, []).append("%s %d" % (code, n))
    print("differential: seed %d, %d tables x %d calls in %.1f s; outcomes: %s" % (
        a.seed, done, a.calls, time.time() - start,
        "; ".join("%s: %s" % (pth, ", ".join(v)) for pth, v in outcomes.items())))
    print("differential: time spent: %s; direct updates (1.2's fast_update form of upsert_counter_cache()): "
          "%d, on %d tables" % (", ".join("%s %.1f s" % kv for kv in run.timing.items()), run.direct,
                                run.direct_tables))
    if tables is None:
        print("replay: /usr/bin/python3 tests/differential.py --seed %d --tables %d --calls %d" % (
            a.seed, done, a.calls))
    if run.mismatches > a.max_report:
        print("(%d mismatches not printed)" % (run.mismatches - a.max_report))
    print("result: %d checks passed, %d checks failed" % (run.passed, run.failed))
    sys.exit(1 if run.failed else 0)


if __name__ == "__main__":
    main()
