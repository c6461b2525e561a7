"""The statements' text.  Every identifier in it is a quoted catalog or
model name (a table, a column, the extension's schema) or a fixed word;
every value is a parameter.

SQL mode: ``INSERT ... ON CONFLICT (key columns) DO UPDATE SET n =
COALESCE(t.n, 0) + EXCLUDED.n``, from a VALUES list, from one text[] per
column, or from a rollup's SELECT.  Extension mode: calls of the
extension's functions, schema-qualified.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ._encode import Cols, Row, flat
from ._spec import Column, ModelSpec, array_literal

XMAX_INSERTED = "(t.xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid)"


def upsert_sql(spec: ModelSpec, cols: Cols, nrows: int, partitioned: bool,
               update_cols: Sequence[Column] = (), returning_rows: bool = False,
               source: Optional[str] = None) -> str:
    """INSERT ... ON CONFLICT for rows of one shape: VALUES placeholders for
    ``nrows`` rows, or ``source`` (a SELECT text) instead.  Returns, per
    row, whether it was inserted (NULL through a partitioned parent), after
    every column when ``returning_rows``."""
    key_cols, delta_cols, assign_cols, insert_cols = cols
    targets = key_cols + delta_cols + assign_cols + insert_cols
    sql = ["INSERT INTO ", spec.table, " AS t (", ", ".join(c.quoted for c in targets), ") "]
    if source is not None:
        sql.append(source)
    else:
        one = "(" + ", ".join(["%s"] * len(targets)) + ")"
        sql.append("VALUES " + ", ".join([one] * nrows))
    sets = ["%s = COALESCE(t.%s, 0) OPERATOR(pg_catalog.+) EXCLUDED.%s" % (c.quoted, c.quoted, c.quoted)
            for c in delta_cols]
    sets += ["%s = EXCLUDED.%s" % (c.quoted, c.quoted) for c in assign_cols]
    sets += ["%s = %%s" % c.quoted for c in update_cols]
    sql.append(" ON CONFLICT (" + ", ".join(c.quoted for c in key_cols) + ") ")
    sql.append("DO UPDATE SET " + ", ".join(sets) if sets else "DO NOTHING")
    inserted = "NULL::pg_catalog.bool" if partitioned else XMAX_INSERTED
    if returning_rows:
        sql.append(" RETURNING " + spec.returning_list() + ", " + inserted)
    else:
        sql.append(" RETURNING " + inserted)
    return "".join(sql)


def counted(upsert: str) -> str:
    """An upsert returning one ``inserted`` flag per row, counted: one row
    of (inserted, updated, unknown), unknown being the rows whose flag is
    NULL (a partitioned target)."""
    return ("WITH w(ins) AS (%s) SELECT pg_catalog.count(*) FILTER (WHERE w.ins), "
            "pg_catalog.count(*) FILTER (WHERE NOT w.ins), "
            "pg_catalog.count(*) FILTER (WHERE w.ins IS NULL) FROM w" % upsert)


def generated_batch(spec: ModelSpec, group: List[Row], partitioned: bool, results: bool,
                    types: Callable[[], Dict[str, str]]) -> Tuple[str, list]:
    """The statement for merged rows of one shape, sorted by key: from one
    text[] per column when every value has a text form (one parameter per
    column, no literal per value to parse; ``types()`` gives the casts),
    else a VALUES list."""
    cols = group[0].cols
    targets = cols[0] + cols[1] + cols[2] + cols[3]
    rows = [flat(row) for row in group]
    arrays = [array_literal(column) for column in zip(*rows)]
    if None not in arrays:
        casts = types()
        source = "SELECT %s FROM ROWS FROM (%s) AS u(%s)" % (
            ", ".join("u.%s::%s" % (c.quoted, casts[c.column]) for c in targets),
            ", ".join(["pg_catalog.unnest(%s::pg_catalog.text[])"] * len(targets)),
            ", ".join(c.quoted for c in targets))
        return upsert_sql(spec, cols, 0, partitioned, returning_rows=results, source=source), arrays
    return (upsert_sql(spec, cols, len(group), partitioned, returning_rows=results),
            [v for values in rows for v in values])


def select_row(spec: ModelSpec, key_cols: Sequence[Column], key_vals: Sequence) -> Tuple[str, list]:
    """SELECT of every column of the row with this key (a None key value as
    IS NULL, for a NULLS NOT DISTINCT index)."""
    where = " AND ".join("t.%s IS NULL" % c.quoted if v is None else "t.%s = %%s" % c.quoted
                         for c, v in zip(key_cols, key_vals))
    return ("SELECT %s FROM %s AS t WHERE %s" % (spec.returning_list(), spec.table, where),
            [v for v in key_vals if v is not None])


# -- extension mode -----------------------------------------------------------

def returning_call(schema: str) -> str:
    return ("SELECT inserted, new_row::pg_catalog.text FROM %s.upsert_increment_returning("
            "%%s::pg_catalog.regclass, %%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb, "
            "%%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb)" % schema)


def rows_aggregate_call(schema: str, cols: Sequence[Column], ordered: bool) -> str:
    """upsert_increment_rows() over one text[] per column, each value read by
    its column type's input function (parameters: the table, the delta,
    assign and on_insert column names, then one array per column).  With
    ``ordered`` the rows are aggregated in the caller's order (assign:
    the later row wins, on_insert: the earlier)."""
    names = ", ".join(c.quoted for c in cols)
    unnest = ", ".join(["pg_catalog.unnest(%s::pg_catalog.text[])"] * len(cols))
    if ordered:
        return ("SELECT %s.upsert_increment_rows(%%s::pg_catalog.regclass, r, "
                "%%s::pg_catalog.text[], %%s::pg_catalog.text[], %%s::pg_catalog.text[] "
                "ORDER BY u.\"upsert_counter ord\")::pg_catalog.text "
                "FROM ROWS FROM (%s) WITH ORDINALITY AS u(%s, \"upsert_counter ord\"), "
                "LATERAL (SELECT %s) AS r"
                % (schema, unnest, names, ", ".join("u." + c.quoted for c in cols)))
    return ("SELECT %s.upsert_increment_rows(%%s::pg_catalog.regclass, r, "
            "%%s::pg_catalog.text[], %%s::pg_catalog.text[], %%s::pg_catalog.text[])"
            "::pg_catalog.text FROM ROWS FROM (%s) AS r(%s)" % (schema, unnest, names))


def jsonb_aggregate_call(schema: str) -> str:
    """The upsert_increment() aggregate over four jsonb[] (keys, deltas,
    assign, on_insert), in the caller's order."""
    return ("SELECT %s.upsert_increment(%%s::pg_catalog.regclass, k, d, a, o ORDER BY ord)"
            "::pg_catalog.text"
            " FROM ROWS FROM (pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]),"
            " pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]),"
            " pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]),"
            " pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]))"
            " WITH ORDINALITY AS r(k, d, a, o, ord)" % schema)


def rollup_call(schema: str, fields: str, inner: str) -> str:
    """upsert_increment_rows() over a rollup's grouped SELECT."""
    return ("SELECT %s.upsert_increment_rows(%%s::pg_catalog.regclass, r, %%s::pg_catalog.text[], "
            "%%s::pg_catalog.text[], %%s::pg_catalog.text[])::pg_catalog.text "
            "FROM (SELECT %s FROM (%s) AS s) AS r" % (schema, fields, inner))
