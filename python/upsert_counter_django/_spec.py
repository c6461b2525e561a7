"""What the helper knows about one model on one connection: its fields by
name, attname and column, how each value is prepared for the database, the
values ``Model.save()`` would write for the fields a call leaves out, and
how a model instance is rebuilt from a returned row.

Built once per (model, database alias) and cached; nothing in it depends on
the values of a call.
"""

import datetime
import decimal
import enum
import json
import math
import uuid

from django.core.exceptions import FieldDoesNotExist
from django.utils import timezone

ROLES = ("keys", "deltas", "assign", "on_insert")

_INTEGER_FIELDS = frozenset({
    "IntegerField", "BigIntegerField", "SmallIntegerField", "PositiveIntegerField",
    "PositiveBigIntegerField", "PositiveSmallIntegerField", "AutoField",
    "BigAutoField", "SmallAutoField"})
_AUTO_FIELDS = frozenset({"AutoField", "BigAutoField", "SmallAutoField"})

# Python types a field of this kind takes exactly as Django would prepare
# them (the driver adapts them itself): skipping get_db_prep_value() for
# them is what makes batches fast.  Anything else takes Django's way.
_AS_IS = {
    "CharField": str, "TextField": str, "SlugField": str, "EmailField": str,
    "URLField": str, "BooleanField": bool, "DateField": datetime.date,
    "UUIDField": uuid.UUID,
}
for _kind in _INTEGER_FIELDS:
    _AS_IS[_kind] = int
_PLAIN_KINDS = frozenset(_AS_IS) | {"DateTimeField", "DecimalField", "FloatField",
                                    "TimeField", "DurationField", "BigIntegerField"}


class Column:
    """One concrete field: the name used to reach it, the field itself, the
    field whose type its values have (a foreign key's target), its quoted
    column name."""

    __slots__ = ("field", "target", "column", "quoted", "kind", "as_is", "is_json",
                 "is_integer", "plain", "json_name", "related", "spec")

    def __init__(self, spec, field):
        self.spec = spec
        self.field = field
        target = field
        while target.is_relation:
            target = target.target_field
        self.target = target
        self.column = field.column
        self.quoted = spec.connection.ops.quote_name(field.column)
        self.json_name = json.dumps(field.column) + ": "
        # a foreign key given as an instance: its model and the attribute
        # holding the referenced value
        self.related = (field.related_model, field.target_field.attname) \
            if field.is_relation else None
        self.kind = target.get_internal_type()
        self.as_is = _AS_IS.get(self.kind)
        self.is_json = self.kind == "JSONField"
        self.is_integer = self.kind in _INTEGER_FIELDS
        # prepared values are hashable plain Python values (not driver
        # adapters or lists): usable as they are to compare keys
        self.plain = self.kind in _PLAIN_KINDS

    def prepare(self, value):
        """Django's database value for this column (what the driver sends)."""
        as_is = self.as_is
        if as_is is not None and type(value) is as_is:
            return value
        field = self.field
        if self.related is not None:
            if isinstance(value, self.related[0]):
                value = getattr(value, self.related[1])
                if as_is is not None and type(value) is as_is:
                    return value
            field = self.target
        if self.is_json:
            return json.dumps(value, cls=field.encoder)
        prepared = unwrap_adapter(field.get_db_prep_value(value, self.spec.connection,
                                                          prepared=False))
        if isinstance(prepared, str) and self.kind == "DecimalField":
            # some Django versions format decimals as strings: keep them
            # numbers, and exact
            prepared = decimal.Decimal(prepared)
        return prepared

    def prepare_delta(self, value, name):
        """A delta: a number, whole for an integer column (Django's own
        preparation would truncate 1.5 to 1; a counter is never rounded
        silently), never None."""
        if value is None:
            raise ValueError("delta for %r is None: a delta must be a number" % (name,))
        if type(value) is int:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
            raise ValueError("delta for %r must be a number; got %r" % (name, value))
        if isinstance(value, float) and not math.isfinite(value) or \
                isinstance(value, decimal.Decimal) and not value.is_finite():
            raise ValueError("delta for %r must be a finite number; got %r" % (name, value))
        if self.is_integer:
            if value != int(value):
                raise ValueError("delta for integer field %r must be a whole number; got %r"
                                 % (name, value))
            return int(value)
        return self.prepare(value)


def unwrap_adapter(value):
    """Driver adapters Django prepares some values as: JSONField values
    (Django 4.2+), and IP addresses (psycopg2's ``Inet``, psycopg's
    ``ipaddress`` objects).  Their plain value, for JSON and for comparing
    keys; the other prepared values are plain Python values."""
    module = type(value).__module__
    if module.startswith(("psycopg", "django")):
        for attr in ("adapted", "obj", "addr"):
            if hasattr(value, attr):
                return unwrap_adapter(getattr(value, attr))
    if module == "ipaddress":
        return str(value)
    return value


_JSON_FAST = {
    int: str,
    str: json.dumps,
    datetime.date: lambda v: '"' + v.isoformat() + '"',
    datetime.datetime: lambda v: '"' + v.isoformat() + '"',
}


def json_value(value):
    """The JSON text of one prepared value.  Decimals stay exact (JSON
    numbers with their own digits); dates and times are ISO strings that
    PostgreSQL's input functions read in any DateStyle; NaN and infinities
    are refused."""
    fast = _JSON_FAST.get(type(value))
    if fast is not None:
        return fast(value)
    value = unwrap_adapter(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError("cannot send %r: not a finite number" % (value,))
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("cannot send %r: not a finite number" % (value,))
        return repr(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return json.dumps(value.isoformat())
    if isinstance(value, datetime.timedelta):
        micros = (value.days * 86400 + value.seconds) * 1000000 + value.microseconds
        return json.dumps("%d microseconds" % micros)
    if isinstance(value, uuid.UUID):
        return json.dumps(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return json.dumps("\\x" + bytes(value).hex())
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError("cannot send a value of type %s" % type(value).__name__)


def json_object(columns, values):
    """A JSON object of Columns to prepared values (a JSONField's value is
    already JSON text)."""
    return "{" + ", ".join([c.json_name + (v if c.is_json and v is not None else json_value(v))
                            for c, v in zip(columns, values)]) + "}"


def _quote_element(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ELEMENT_TEXT = {
    int: str,
    str: _quote_element,
    bool: lambda v: "t" if v else "f",
    decimal.Decimal: lambda v: _quote_element(str(v)),
    float: repr,
    datetime.date: lambda v: v.isoformat(),
    datetime.datetime: lambda v: _quote_element(v.isoformat()),
    datetime.time: lambda v: v.isoformat(),
    uuid.UUID: str,
    datetime.timedelta: lambda v: _quote_element(
        "%d microseconds" % ((v.days * 86400 + v.seconds) * 1000000 + v.microseconds)),
    bytes: lambda v: _quote_element("\\x" + v.hex()),
}


def array_literal(values):
    """A text[] literal of prepared values, each as the column type's input
    function reads it (ISO dates in any DateStyle, exact decimals), or None
    when a value has no such form here (a list, a range): the caller then
    sends the values another way."""
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
            continue
        fn = _ELEMENT_TEXT.get(type(v))
        if fn is None:
            v = unwrap_adapter(v)
            if isinstance(v, str):
                fn = _quote_element
            elif isinstance(v, enum.Enum):
                v = v.value
                fn = _ELEMENT_TEXT.get(type(v))
            elif isinstance(v, bool):
                fn = _ELEMENT_TEXT[bool]
            elif isinstance(v, int):
                fn = str
            if fn is None:
                return None
        if type(v) is float and not math.isfinite(v):
            return None
        parts.append(fn(v))
    return "{" + ",".join(parts) + "}"


def sort_key(values):
    """A total order on key tuples (None first), the same in every process."""
    return tuple((v is not None, v) for v in values)


class ModelSpec:
    """The cached description of one model on one connection."""

    def __init__(self, model, connection):
        self.model = model
        self.connection = connection
        self.meta = model._meta
        self.table = connection.ops.quote_name(self.meta.db_table)
        self._columns = {}
        self.concrete = [self.column(f.name) for f in self.meta.concrete_fields
                         if getattr(f, "column", None) is not None]
        self.by_column = {c.column: c for c in self.concrete}
        self._implicit = {}
        self.codecs = {}

    # -- names --------------------------------------------------------------

    def column(self, name):
        """The Column a field name or attname names (cached)."""
        col = self._columns.get(name)
        if col is not None:
            return col
        meta = self.meta
        if name == "pk":
            pk = meta.pk
            if getattr(pk, "column", None) is None and hasattr(pk, "fields"):
                # Django 5.2's CompositePrimaryKey: no single column
                raise FieldDoesNotExist(
                    "%s has a composite primary key (%s): name its fields in keys, "
                    "not \"pk\"" % (meta.object_name,
                                    ", ".join(f.name for f in pk.fields)))
            name_ = pk.name
        else:
            name_ = name
        try:
            field = meta.get_field(name_)
        except FieldDoesNotExist:
            field = None
            for f in meta.concrete_fields:      # an attname (ab_test_id)
                if f.attname == name_:
                    field = f
                    break
            if field is None:
                raise FieldDoesNotExist(
                    "%s has no field named %r" % (meta.object_name, name)) from None
        if getattr(field, "column", None) is None and hasattr(field, "fields"):
            raise FieldDoesNotExist(
                "%s.%s is a composite primary key: name its fields (%s) instead"
                % (meta.object_name, name, ", ".join(f.name for f in field.fields)))
        if not getattr(field, "concrete", False) or getattr(field, "column", None) is None:
            raise FieldDoesNotExist(
                "%s.%s is not a concrete column (a reverse or many-to-many relation?)"
                % (meta.object_name, name))
        # one Column per field, whichever name reached it
        col = self._columns.get(field.name)
        if col is None:
            col = self._columns[field.name] = Column(self, field)
        self._columns[name] = col
        return col

    def columns(self, names, role):
        """Columns of one role's field names; two names for one column
        (``ab_test`` and ``ab_test_id``) are refused: one would be lost."""
        cols = []
        seen = {}
        for name in names:
            col = self.column(name)
            if col.column in seen:
                raise ValueError("%s names column %r twice: as %r and as %r"
                                 % (role, col.column, seen[col.column], name))
            seen[col.column] = name
            cols.append(col)
        return cols

    # -- fields a call leaves out -------------------------------------------

    def implicit(self, named):
        """For the set of columns a call names: (insert-only providers,
        every-call providers), each a list of (Column, how, what): ``how``
        is "const" (``what`` is the prepared value), "now" (``what`` is a
        function of the call's one ``now``) or "row" (a callable default,
        called per row as Model.save() would).  As Model.save() decides, in Django's order:
        generated fields and the auto primary key are the database's;
        ``auto_now`` (every save) and ``auto_now_add`` (insert) are
        Python's now; a ``default`` is Python's (also when the field has a
        ``db_default``: Django's create() stores ``default``); a field with
        only a ``db_default`` is left to the database."""
        key = frozenset(named)
        cached = self._implicit.get(key)
        if cached is not None:
            return cached
        on_insert, always = [], []
        for col in self.concrete:
            field = col.field
            if col.column in key:
                continue
            if getattr(field, "generated", False):
                continue
            if field.primary_key and field.get_internal_type() in _AUTO_FIELDS:
                continue
            auto_now = getattr(field, "auto_now", False)
            auto_now_add = getattr(field, "auto_now_add", False)
            if auto_now or auto_now_add:
                kind = field.get_internal_type()
                fn = _now_function(kind, col)
                (always if auto_now else on_insert).append((col, "now", fn))
            elif field.has_default():
                if callable(field.default):
                    on_insert.append((col, "row", _call_default(col)))
                else:
                    on_insert.append((col, "const", col.prepare(field.get_default())))
            # else: db_default, a column DEFAULT, or NULL: the database's
        cached = (on_insert, always)
        self._implicit[key] = cached
        return cached

    # -- returned rows ------------------------------------------------------

    def instance_from_json(self, row_json, db):
        """A model instance from the extension's new_row (jsonb as text)."""
        row = json.loads(row_json, parse_float=decimal.Decimal)
        names, values = [], []
        use_tz = _use_tz()
        for col in self.concrete:
            field = col.field
            names.append(field.attname)
            value = row.get(col.column)
            if value is not None and not col.is_json:
                target = col.target
                if getattr(target, "generated", False):
                    # a GeneratedField converts as its output_field
                    target = target.output_field
                value = target.to_python(value)
                if isinstance(value, datetime.datetime) and use_tz and timezone.is_naive(value):
                    value = timezone.make_aware(value, datetime.timezone.utc)
            elif value is not None and col.is_json and hasattr(field, "decoder") and field.decoder:
                value = json.loads(json.dumps(value), cls=field.decoder)
            values.append(value)
        return self.model.from_db(db, names, values)

    def instance_from_row(self, row, db):
        """A model instance from ``RETURNING`` of every concrete column, in
        self.concrete order, through the fields' database converters."""
        names, values = [], []
        connection = self.connection
        for col, value in zip(self.concrete, row):
            field = col.field
            names.append(field.attname)
            for converter in connection.ops.get_db_converters(field) + \
                    field.get_db_converters(connection):
                value = converter(value, field, connection)
            values.append(value)
        return self.model.from_db(db, names, values)

    def returning_list(self):
        return ", ".join("t." + c.quoted for c in self.concrete)


def _now_function(kind, col):
    """auto_now/auto_now_add from the call's one ``now`` (an aware datetime
    under USE_TZ), as the fields' pre_save() computes them."""
    if kind == "DateTimeField":
        return lambda now: col.prepare(now)
    if kind == "DateField":
        return lambda now: col.prepare(timezone.localdate(now) if timezone.is_aware(now)
                                       else now.date())
    return lambda now: col.prepare((timezone.localtime(now) if timezone.is_aware(now)
                                    else now).time())


def _call_default(col):
    return lambda: col.prepare(col.field.get_default())


def _use_tz():
    from django.conf import settings
    return getattr(settings, "USE_TZ", False)
