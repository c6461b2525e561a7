"""Server-side rollups: a QuerySet's groups added into a counter table in
one statement (``upsert_rollup``).

The source QuerySet is grouped by the key expressions and aggregated by
the delta expressions (Django compiles that part); the helper wraps it in
the extension's ``upsert_increment_rows()`` (extension mode: merged, key
order, cached plan) or in ``INSERT ... SELECT ... ORDER BY key ON CONFLICT
DO UPDATE`` (SQL mode).  No row travels to Python.
"""

import json

from django.core.exceptions import EmptyResultSet

from django.db.models import F, Value
from django.db.models.functions import Coalesce

from ._core import _Codec, _Encoder, _open, _partitioned, _upsert_sql


def _expr(value):
    return F(value) if isinstance(value, str) else value


def upsert_rollup(target, queryset, keys, deltas, assign=None, *, using=None):
    if not keys:
        raise ValueError("keys must name the target's key fields")
    db, connection, state, spec = _open(target, using)
    # the columns and the values Model.save() would add, as for any call
    codec = _Codec(spec, (tuple(keys), tuple(deltas or {}), tuple(assign or {}), ()))
    key_cols, delta_cols = codec.cols[0], codec.cols[1]
    for c in delta_cols:
        if not (c.is_integer or c.kind in ("DecimalField", "FloatField")):
            raise ValueError("delta field %r is not a number field" % c.field.name)
    qs = queryset.order_by().values(**{"uc_k%d" % i: _expr(v) for i, v in enumerate(keys.values())})
    # a group whose aggregate is NULL (a SUM over NULLs) adds nothing, in both modes
    qs = qs.annotate(**{"uc_d%d" % i: Coalesce(_expr(v), Value(0))
                        for i, v in enumerate((deltas or {}).values())},
                     **{"uc_a%d" % i: _expr(v) for i, v in enumerate((assign or {}).values())})
    try:
        inner, inner_params = qs.query.get_compiler(using=db).as_sql()
    except EmptyResultSet:      # .none(), or a filter nothing can match
        return {"inserted": 0, "updated": 0}

    # one value per statement for defaults and auto_now, in codec.cols order
    always, inserts = codec.per_call(_Encoder(spec))
    implicit_params = list(always) + list(inserts) + [fn() for fn in codec.insert_row_fns]
    nassign = len(assign or {})
    select = ["s.uc_k%d" % i for i in range(len(key_cols))] + \
        ["s.uc_d%d" % i for i in range(len(delta_cols))] + \
        ["s.uc_a%d" % i for i in range(nassign)] + \
        ["%s"] * (len(codec.cols[2]) - nassign + len(codec.cols[3]))
    cols = codec.cols
    targets = [c for role in cols for c in role]

    with connection.cursor() as cursor:
        if state.mode == "extension":
            fields = ", ".join("%s AS %s" % (e, c.quoted) for e, c in zip(select, targets))
            cursor.execute(
                "SELECT %s.upsert_increment_rows(%%s::pg_catalog.regclass, r, %%s::pg_catalog.text[], "
                "%%s::pg_catalog.text[], %%s::pg_catalog.text[])::pg_catalog.text "
                "FROM (SELECT %s FROM (%s) AS s) AS r" % (state.schema, fields, inner),
                [spec.table] + [[c.column for c in role] for role in cols[1:]]
                + implicit_params + list(inner_params))
            result = json.loads(cursor.fetchone()[0])
            if result.get("inserted") is None:
                return {"inserted": None, "updated": None, "deferred": result.get("deferred")}
            return result
        partitioned = _partitioned(connection, state, spec)
        source = "SELECT %s FROM (%s) AS s ORDER BY %s" % (
            ", ".join(select), inner, ", ".join(str(i + 1) for i in range(len(key_cols))))
        sql = _upsert_sql(spec, cols, 0, partitioned, order_source=source)
        cursor.execute("WITH w(ins) AS (%s) SELECT pg_catalog.count(*) FILTER (WHERE w.ins), "
                       "pg_catalog.count(*) FILTER (WHERE NOT w.ins) FROM w" % sql,
                       implicit_params + list(inner_params))
        inserted, updated = cursor.fetchone()
    if partitioned:
        return {"inserted": None, "updated": None}
    return {"inserted": inserted, "updated": updated}
