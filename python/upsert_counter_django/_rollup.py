"""Server-side rollups: a QuerySet's groups added into a counter table in
one statement (``upsert_rollup``).

The source QuerySet is grouped by the key expressions and aggregated by
the delta expressions (Django compiles that part); the helper wraps it in
the extension's ``upsert_increment_rows()`` (extension mode: merged, key
order, cached plan) or in ``INSERT ... SELECT ... ORDER BY key ON CONFLICT
DO UPDATE`` (SQL mode).  No row travels to Python.
"""

import json
from typing import Any, Dict, Mapping, Optional, Type

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, models
from django.db.models import F, Value
from django.db.models.functions import Coalesce

from . import _sql
from ._connection import extension_failed, open_model, partitioned
from ._encode import Codec, Encoder


def _expr(value):
    return F(value) if isinstance(value, str) else value


def rollup(target: Type[models.Model], queryset: models.QuerySet, keys: Mapping[str, Any],
           deltas: Mapping[str, Any], assign: Optional[Mapping[str, Any]] = None, *,
           using: Optional[str] = None) -> Dict[str, Optional[int]]:
    """upsert_rollup(); the package documents it."""
    if not keys:
        raise ValueError("keys must name the target's key fields")
    for attempt in (1, 2):
        db, connection, state, spec = open_model(target, using)
        # the columns and the values Model.save() would add, as for any call
        codec = Codec(spec, (tuple(keys), tuple(deltas or {}), tuple(assign or {}), ()))
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
        always, inserts = codec.per_call(Encoder(spec))
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
                try:
                    cursor.execute(_sql.rollup_call(state.schema, fields, inner),
                                   [spec.table] + [[c.column for c in role] for role in cols[1:]]
                                   + implicit_params + list(inner_params))
                except DatabaseError as e:
                    if attempt == 2 or not extension_failed(connection, e):
                        raise
                    continue        # the extension is gone: again, in SQL mode
                result = json.loads(cursor.fetchone()[0])
                if result.get("inserted") is None:
                    return {"inserted": None, "updated": None, "deferred": result.get("deferred")}
                return result
            is_partitioned = partitioned(state, spec)
            source = "SELECT %s FROM (%s) AS s ORDER BY %s" % (
                ", ".join(select), inner, ", ".join(str(i + 1) for i in range(len(key_cols))))
            cursor.execute(_sql.counted(_sql.upsert_sql(spec, cols, 0, is_partitioned, source=source)),
                           implicit_params + list(inner_params))
            inserted, updated, unknown = cursor.fetchone()
        if unknown:     # a partitioned target: xmax is not available
            return {"inserted": None, "updated": None}
        return {"inserted": inserted, "updated": updated}
    raise AssertionError("unreachable")
