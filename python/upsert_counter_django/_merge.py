"""Merging a batch: rows with equal keys become one row before anything is
encoded or sent.  The rules are the extension's: deltas are summed,
``assign`` keeps the later row's value, ``on_insert`` the earlier row's.

Two stages:

1. ``merge_window`` reads up to ``window`` input rows and merges them on
   the caller's raw Python values (keys equal as Python dict keys are
   equal: 1, 1.0 and True are one value).  Only the first row of each
   distinct raw key has its key prepared (a foreign key as an instance and
   as an id, attnames, names in another order: the database's equality),
   and only what survives is encoded: a batch of 100,000 increments over
   5,000 keys prepares and encodes 5,000 rows.
2. ``encode_slots`` sorts the merged rows by their prepared keys and
   encodes them.
"""

from itertools import islice
from operator import itemgetter
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from ._encode import Encoder, Row, hashable
from ._spec import ModelSpec, sort_key, unwrap_adapter

ROW_KEYS = frozenset({"keys", "deltas", "assign", "on_insert"})

# A merged input row: [keys, deltas, assign, on_insert, merged, key, sum]:
# the first row's keys, copies of its deltas (checked), assign and
# on_insert that collect the later rows' (merged: a later row came), the
# key's prepared identity, and the sum of later pairs' one int delta named
# as the window's first row's one delta (None when this key's first row
# has no such delta), added to deltas at the end.
Slot = List[Any]


class _Other:
    """Marks the identity of a row whose key names differ from the window's
    first row's (or whose values are not hashable)."""
    __slots__ = ()


_OTHER = _Other()


def _add_deltas(spec: ModelSpec, into: Dict[str, Any], deltas: Optional[Mapping[str, Any]]) -> None:
    if not deltas:
        return
    for name, value in deltas.items():
        if type(value) is not int:
            # checked and prepared one by one, as a lone row is: 0.5 + 0.5
            # for an integer field is refused, not summed to 1
            value = spec.column(name).prepare_delta(value, name)
        if name in into:
            into[name] = into[name] + value
        else:
            into[name] = value


class _PreparedKeys:
    """The prepared identity of a key (as the database compares keys: a
    foreign key as an instance or as its id, names in any order or as
    attnames), computed once per distinct raw key."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.shapes: Dict[Tuple[str, ...], Tuple[Tuple[str, ...], list]] = {}

    def __call__(self, keys: Mapping[str, Any]) -> tuple:
        names = tuple(keys)
        shape = self.shapes.get(names)
        if shape is None:
            cols = self.spec.columns(names, "keys")
            order = sorted(range(len(cols)), key=lambda i: cols[i].column)
            shape = self.shapes[names] = (tuple(cols[i].column for i in order),
                                          [(names[i], cols[i]) for i in order])
        columns, preparers = shape
        values = []
        for name, column in preparers:
            value = keys[name]
            if type(value) is not column.as_is:
                value = hashable(unwrap_adapter(column.prepare(value)))
            values.append(value)
        return (columns, tuple(values))


def merge_window(spec: ModelSpec, source: Iterator[Any], window: Optional[int]
                 ) -> Tuple[List[Slot], int]:
    """Up to ``window`` rows of ``source`` (all of them for None), merged by
    key: (the merged rows in the order their keys first came, the number
    of input rows read).  A row is a (keys, deltas) pair or a dict with
    keys, deltas, assign and on_insert.

    A row's raw identity is its key values (in the order the window's first
    row names them), equal as Python dict keys are equal.  The first row
    of each raw identity also has its key prepared as the database will
    compare it: a raw identity whose prepared key is already in the window
    (``ab_test=instance`` beside ``ab_test_id=7``) joins that merged row,
    so every merged row holds its key's rows in input order."""
    slots: Dict[Any, Slot] = {}         # by raw identity (several may share a slot)
    by_key: Dict[tuple, Slot] = {}      # by prepared identity
    out: List[Slot] = []
    prepared = _PreparedKeys(spec)
    get = slots.get
    getter: Any = None
    width = -1
    counted: Any = _OTHER       # the one delta of the first row, summed in slot[6]
    read = 0
    for row in (iter(source) if window is None else islice(source, window)):
        read += 1
        if type(row) is tuple:
            keys, deltas = row
            if len(keys) == width:
                # the common case first: a (keys, deltas) pair of a key seen before
                try:
                    slot = get(getter(keys))
                except (KeyError, TypeError):
                    slot = None
                if slot is not None:
                    slot[4] = True
                    try:
                        # and its one delta, an int, named as the window's first row's
                        value = deltas[counted]
                        if type(value) is int and len(deltas) == 1:
                            slot[6] += value    # TypeError: the key's first row had no such delta
                            continue
                    except (KeyError, TypeError):
                        pass
                    if deltas:
                        into = slot[1]
                        for name, value in deltas.items():
                            if type(value) is not int:
                                value = spec.column(name).prepare_delta(value, name)
                            try:
                                into[name] += value
                            except KeyError:
                                into[name] = value
                    continue
            assign = on_insert = None
        elif isinstance(row, dict):
            if not row.keys() <= ROW_KEYS or "keys" not in row:
                raise ValueError("a row dict takes keys, deltas, assign and on_insert; got %s"
                                 % sorted(row))
            keys = row["keys"]
            deltas = row.get("deltas")
            assign = row.get("assign")
            on_insert = row.get("on_insert")
        else:
            keys, deltas = row
            assign = on_insert = None
        try:
            ident = getter(keys) if len(keys) == width else (_OTHER, tuple(keys.items()))
            slot = get(ident)
        except KeyError:                # the same number of other names
            ident = (_OTHER, tuple(keys.items()))
            try:
                slot = get(ident)
            except TypeError:
                ident = slot = None
        except (TypeError, AttributeError):     # unhashable values; keys not a dict
            ident = slot = None
        if slot is None:
            key = prepared(keys if keys is not None else {})
            slot = by_key.get(key)
            if slot is None:
                into = {}
                _add_deltas(spec, into, deltas)
                if getter is None and keys:
                    # the raw identity: the key values in this row's order of names
                    names = tuple(keys)
                    width = len(names)
                    getter = itemgetter(*names) if width > 1 else \
                        lambda d, name=names[0]: (d[name],)
                    if deltas and len(deltas) == 1:
                        counted = next(iter(deltas))
                slot = by_key[key] = [keys, into, dict(assign) if assign else {},
                                      dict(on_insert) if on_insert else {}, False, key,
                                      0 if counted in into else None]
                out.append(slot)
                if ident is not None:
                    slots[ident] = slot
                continue
            if ident is not None:
                slots[ident] = slot     # another spelling of a key seen before
        slot[4] = True
        if deltas:
            into = slot[1]
            for name, value in deltas.items():
                if type(value) is not int:
                    # checked and prepared one by one, as a lone row is
                    value = spec.column(name).prepare_delta(value, name)
                try:
                    into[name] += value
                except KeyError:
                    into[name] = value
        if assign:
            slot[2].update(assign)
        if on_insert:
            kept = slot[3]
            for name, value in on_insert.items():
                if name not in kept:
                    kept[name] = value
    for slot in out:
        if slot[6]:
            slot[1][counted] += slot[6]
    return out, read


def encode_slots(spec: ModelSpec, encoder: Encoder, slots: List[Slot]
                 ) -> Tuple[List[Row], List[tuple]]:
    """The merged input rows, sorted by key and encoded: (the rows, their
    keys' prepared identities).  Where rows of one key named a field in
    different roles, a field one row adds to or assigns is not also written
    by another's insert-only value (an unnamed field's default is one)."""
    try:
        slots = sorted(slots, key=_slot_key)
    except TypeError:       # None beside values, or values of two types
        slots = sorted(slots, key=lambda slot: (slot[5][0], sort_key(slot[5][1])))
    out = []
    row = encoder.row
    for keys, deltas, assign, on_insert, merged, _, _ in slots:
        if merged and on_insert and (deltas or assign):
            written = {spec.column(n).column for n in deltas}
            written.update(spec.column(n).column for n in assign)
            on_insert = {n: v for n, v in on_insert.items() if spec.column(n).column not in written}
        out.append(row(keys, deltas, assign, on_insert))
    return out, [slot[5] for slot in slots]


_slot_key = itemgetter(5)
