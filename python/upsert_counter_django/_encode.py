"""One call's values, encoded: the Columns and prepared values of each role
(keys, deltas, assign, on_insert), with the values ``Model.save()`` would
write for the fields the call leaves out.

A ``Codec`` is built once per model, connection and shape (which field
names a call gives in each role, in which order) and cached on the model's
spec; an ``Encoder`` serves one call (one ``now`` for every ``auto_now``
value of the call).
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from django.utils import timezone

from ._spec import ROLES, Column, ModelSpec, json_object, unwrap_adapter

Values = Optional[Mapping[str, Any]]
Cols = Tuple[Tuple[Column, ...], Tuple[Column, ...], Tuple[Column, ...], Tuple[Column, ...]]
Vals = Tuple[tuple, tuple, tuple, tuple]


class Row:
    """One call's values, prepared: per role a tuple of Columns and a tuple
    of prepared values; ``update`` holds update-only values (Django's
    ``defaults`` beside ``create_defaults``)."""

    __slots__ = ("cols", "vals", "update_cols", "update_vals", "codec")

    def __init__(self, cols: Cols, vals: Vals, update_cols: Tuple[Column, ...] = (),
                 update_vals: tuple = (), codec: Optional["Codec"] = None) -> None:
        self.cols = cols
        self.vals = vals
        self.update_cols = update_cols
        self.update_vals = update_vals
        self.codec = codec

    def json_args(self) -> List[str]:
        """The four jsonb arguments of the extension's single-row calls."""
        codec = self.codec
        if codec is not None:
            return codec.json_args(self)
        return [json_object(cols, vals) for cols, vals in zip(self.cols, self.vals)]

    def key_identity(self) -> tuple:
        """The key as a hashable value: equal for equal keys."""
        codec = self.codec
        if codec is not None and codec.key_plain:
            if codec.key_perm is None:
                return (codec.key_columns, self.vals[0])
            vals = self.vals[0]
            return (codec.key_columns, tuple([vals[i] for i in codec.key_perm]))
        # by column name, whatever order the call named them in
        pairs = sorted(zip((c.column for c in self.cols[0]), self.vals[0]), key=lambda p: p[0])
        return (tuple(p[0] for p in pairs), tuple(hashable(unwrap_adapter(p[1])) for p in pairs))


def hashable(v: Any) -> Any:
    """A prepared value as a dict key (an array's list as a tuple)."""
    return tuple(hashable(x) for x in v) if isinstance(v, list) else v


class Codec:
    """How rows naming the same field names in the same order are encoded;
    built once per model, connection and such shape (the values Model.save()
    would add depend on which fields a call names)."""

    def __init__(self, spec: ModelSpec, names: Tuple[tuple, tuple, tuple, tuple]) -> None:
        # a column in two roles is the database's error (42701), in both modes
        cols = []
        named = set()
        for role, role_names in zip(ROLES, names):
            role_cols = spec.columns(role_names, role)
            named.update(c.column for c in role_cols)
            cols.append(role_cols)
        self.key_cols = tuple(cols[0])
        # the key's identity lists the columns by name (key_identity())
        order = sorted(range(len(cols[0])), key=lambda i: cols[0][i].column)
        self.key_columns = tuple(cols[0][i].column for i in order)
        self.key_perm = None if order == list(range(len(order))) else order
        self.key_plain = all(c.plain for c in cols[0])
        on_insert_implicit, always_implicit = spec.implicit(named)
        # implicit values, in this order: constants, "now" values (one per
        # call), callable defaults (per row)
        order = {"const": 0, "now": 1, "row": 2}
        on_insert_implicit = sorted(on_insert_implicit, key=lambda t: order[t[1]])
        self.assign_cols = tuple(cols[2]) + tuple(c for c, _, _ in always_implicit)
        self.insert_cols = tuple(cols[3]) + tuple(c for c, _, _ in on_insert_implicit)
        self.cols = (self.key_cols, tuple(cols[1]), self.assign_cols, self.insert_cols)
        self.always_fns = tuple(fn for _, _, fn in always_implicit)
        self.insert_consts = tuple(v for _, how, v in on_insert_implicit if how == "const")
        self.insert_now_fns = tuple(fn for _, how, fn in on_insert_implicit if how == "now")
        self.insert_row_fns = tuple(fn for _, how, fn in on_insert_implicit if how == "row")
        self.key_pairs = [(c.prepare, n) for c, n in zip(cols[0], names[0])]
        self.delta_pairs = [(c.prepare_delta, n) for c, n in zip(cols[1], names[1])]
        self.assign_pairs = [(c.prepare, n) for c, n in zip(cols[2], names[2])]
        self.insert_pairs = [(c.prepare, n) for c, n in zip(cols[3], names[3])]
        # the caller's order matters to the merge only for values it names
        self.ordered = bool(names[2] or names[3])
        # JSON arguments that are the same in every call of this shape
        self.assign_json = None if self.assign_pairs or self.always_fns else "{}"
        self.insert_json = None if self.insert_pairs or self.insert_now_fns or \
            self.insert_row_fns else json_object(self.insert_cols, self.insert_consts)

    def json_args(self, row: Row) -> List[str]:
        cols, vals = self.cols, row.vals
        return [json_object(cols[0], vals[0]), json_object(cols[1], vals[1]),
                self.assign_json or json_object(cols[2], vals[2]),
                self.insert_json or json_object(cols[3], vals[3])]

    def per_call(self, encoder: "Encoder") -> Tuple[tuple, tuple]:
        """(every-call implicit values, insert-only ones) for one call."""
        if not self.always_fns and not self.insert_now_fns:
            return (), self.insert_consts
        now = encoder.now()
        return (tuple([fn(now) for fn in self.always_fns]),
                self.insert_consts + tuple([fn(now) for fn in self.insert_now_fns]))

    def encode(self, keys: Mapping[str, Any], deltas: Mapping[str, Any], assign: Mapping[str, Any],
               on_insert: Mapping[str, Any], implicit: Tuple[tuple, tuple]) -> Row:
        always, inserts = implicit
        kv = tuple([prep(keys[n]) for prep, n in self.key_pairs])
        dv = tuple([prep(deltas[n], n) for prep, n in self.delta_pairs])
        av = tuple([prep(assign[n]) for prep, n in self.assign_pairs]) + always \
            if self.assign_pairs else always
        ov = tuple([prep(on_insert[n]) for prep, n in self.insert_pairs]) + inserts \
            if self.insert_pairs else inserts
        if self.insert_row_fns:
            ov = ov + tuple([fn() for fn in self.insert_row_fns])
        return Row(self.cols, (kv, dv, av, ov), codec=self)


class Encoder:
    """One call's encoding: one "now" for every auto_now/auto_now_add value
    of the call, codecs from the model's spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._now = None
        self.implicit: Dict[Codec, Tuple[tuple, tuple]] = {}

    def now(self) -> Any:
        if self._now is None:
            self._now = timezone.now()
        return self._now

    def row(self, keys: Values, deltas: Values = None, assign: Values = None,
            on_insert: Values = None) -> Row:
        keys = keys or {}
        deltas = deltas or {}
        assign = assign or {}
        on_insert = on_insert or {}
        shape = (tuple(keys), tuple(deltas), tuple(assign), tuple(on_insert))
        codecs = self.spec.codecs
        codec = codecs.get(shape)
        if codec is None:
            codec = Codec(self.spec, shape)
            if len(codecs) < 256:       # bounded: shapes come from code, not data
                codecs[shape] = codec
        implicit = self.implicit.get(codec)
        if implicit is None:
            implicit = self.implicit[codec] = codec.per_call(self)
        return codec.encode(keys, deltas, assign, on_insert, implicit)


def flat(row: Row) -> tuple:
    """A row's values in column order: keys, deltas, assign, on_insert."""
    return row.vals[0] + row.vals[1] + row.vals[2] + row.vals[3]
