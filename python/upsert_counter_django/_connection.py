"""Per-connection state: which mode a database connection uses, where the
extension lives, the catalog facts the helper looks up once per connection,
and how the mode heals itself.

The mode is found once per physical connection (``connection_state``) and
found again when:

* the ``UPSERT_COUNTER_MODE`` setting changes;
* a new physical connection is made (Django reconnects);
* ``reset_mode(connection)`` is called: by ``CreateUpsertCounterExtension``
  and by the ``post_migrate`` signal (the app's ``ready()``), so that after
  ``migrate`` on the same connection a newly created extension is used;
* a statement of the extension mode fails because the extension's function
  is missing (SQLSTATE 42883, the extension was dropped): outside a
  transaction block the call is run again in the mode found then (SQL mode
  while the extension is absent); inside one the transaction is aborted, so
  the call raises an error that says so and what to do.
"""

from typing import Any, Dict, Optional, Tuple, Type

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DatabaseError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from ._spec import ModelSpec

MODES = ("extension", "sql")


class ConnectionState:
    """What the helper found on one physical connection."""

    def __init__(self, raw: Any, wanted: str, mode: str, schema: Optional[str],
                 version: Optional[str]) -> None:
        self.raw = raw
        self.wanted = wanted            # the setting: "auto", "extension" or "sql"
        self.mode = mode                # what runs: "extension" or "sql"
        self.schema = schema            # the extension's schema, quoted, for qualified calls
        self.version = version
        self.relkinds: Dict[str, str] = {}
        self.column_types: Dict[str, Dict[str, str]] = {}
        self.cursors: Dict[bool, Any] = {}
        self.nulls_not_distinct: Dict[Tuple[str, Tuple[str, ...]], bool] = {}
        self.specs: Dict[Type[Model], ModelSpec] = {}
        self.single_sql = None
        if mode == "extension":
            # 1.2's plain function for one row (no aggregate node); the
            # aggregate before that
            function = "upsert_increment_call" if self.version_at_least((1, 2)) \
                else "upsert_increment"
            self.single_sql = (
                "SELECT %s.%s(%%s::pg_catalog.regclass, %%s::pg_catalog.jsonb, "
                "%%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb)"
                "::pg_catalog.text" % (schema, function))

    def version_at_least(self, wanted: Tuple[int, int]) -> bool:
        return self.version is not None and \
            tuple(int(p) for p in self.version.split(".")[:2]) >= wanted

    @property
    def has_rows_aggregate(self) -> bool:
        """The typed batch aggregate upsert_increment_rows() (1.2+)."""
        return self.version_at_least((1, 2))


# -- the setting ------------------------------------------------------------

_mode_setting = []     # the setting, read once; emptied when settings change


def _setting_changed(setting, **kwargs):
    if setting == "UPSERT_COUNTER_MODE":
        _mode_setting.clear()


setting_changed.connect(_setting_changed)


def configured_mode(alias: str) -> str:
    """``UPSERT_COUNTER_MODE`` for database ``alias``: "auto", "extension"
    or "sql"."""
    if not _mode_setting:
        _mode_setting.append(getattr(settings, "UPSERT_COUNTER_MODE", "auto"))
    setting = _mode_setting[0]
    if isinstance(setting, dict):
        setting = setting.get(alias, "auto")
    if setting not in ("auto",) + MODES:
        raise ValueError("UPSERT_COUNTER_MODE must be \"auto\", \"extension\" or \"sql\"; got %r"
                         % (setting,))
    return setting


# -- detection --------------------------------------------------------------

def installed_extension(connection: BaseDatabaseWrapper) -> Optional[Tuple[str, str]]:
    """(schema, version) of the upsert_counter extension in the connection's
    database, or None.  On the driver's own cursor, as Django's
    init_connection_state(): a catalog look-up, not one of the app's
    queries."""
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(
            "SELECT n.nspname, e.extversion FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'upsert_counter'")
        found = cursor.fetchone()
    finally:
        cursor.close()
    return (found[0], found[1]) if found else None


def connection_state(connection: BaseDatabaseWrapper) -> ConnectionState:
    """The state of the connection's current physical connection, found on
    first use."""
    raw = connection.connection
    if raw is None:
        connection.ensure_connection()
        raw = connection.connection
    wanted = configured_mode(connection.alias)
    state = getattr(connection, "_upsert_counter_state", None)
    if state is not None and state.raw is raw and state.wanted == wanted:
        return state
    schema = version = None
    if wanted != "sql":
        found = installed_extension(connection)
        if found:
            schema, version = connection.ops.quote_name(found[0]), found[1]
        elif wanted == "extension":
            raise ImproperlyConfigured(
                "UPSERT_COUNTER_MODE is \"extension\" but the upsert_counter extension is not "
                "installed in database %r: run CREATE EXTENSION upsert_counter there, or use "
                "\"auto\"" % connection.alias)
    mode = "extension" if schema is not None else "sql"
    state = ConnectionState(raw, wanted, mode, schema, version)
    connection._upsert_counter_state = state
    return state


def reset_mode(connection: BaseDatabaseWrapper) -> None:
    """Forget what was found on this connection: the next call detects the
    mode again (after CREATE or DROP EXTENSION on it)."""
    state = getattr(connection, "_upsert_counter_state", None)
    connection._upsert_counter_state = None
    if state is not None:
        for cursor in state.cursors.values():
            try:
                cursor.close()
            except Exception:       # the connection may be gone already
                pass
        state.cursors.clear()


def mode(using: str = "default") -> str:
    """The mode the helper uses on database alias ``using``:
    ``"extension"`` or ``"sql"``."""
    return connection_state(connections[using]).mode


# -- healing ----------------------------------------------------------------

def _sqlstate(error: BaseException) -> Optional[str]:
    cause = error.__cause__ if error.__cause__ is not None else error
    code = getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)
    if code is None:
        code = getattr(getattr(cause, "diag", None), "sqlstate", None)
    return code


def extension_failed(connection: BaseDatabaseWrapper, error: DatabaseError) -> bool:
    """For an error of a statement of the extension mode: True when the
    extension's function was missing (42883; 3F000 when its schema is gone)
    on a connection outside a transaction block and the mode found again
    is SQL mode: the caller runs the statement again in it.  Inside a
    transaction block, raises an error that says what happened and what to
    do.  False otherwise: the caller re-raises ``error``."""
    code = _sqlstate(error)
    if not (code == "3F000" or code == "42883" and "upsert_increment" in str(error)):
        return False
    reset_mode(connection)
    if connection.in_atomic_block or not connection.get_autocommit():
        from django.db.utils import ProgrammingError
        raise ProgrammingError(
            "upsert_counter: the extension's function is missing in database %r (%s): the "
            "upsert_counter extension (or its schema) was dropped after this connection found "
            "it.  This transaction is aborted: roll it back and run it again; the helper's "
            "next call detects the mode again and uses SQL mode while the extension is absent "
            "(CREATE EXTENSION upsert_counter brings the extension mode back)."
            % (connection.alias, str(error).strip().splitlines()[0])
        ) from (error.__cause__ or error)
    # the function is not the extension's if the extension is still there
    return connection_state(connection).mode == "sql"


# -- per connection look-ups ------------------------------------------------

def single_cursor(connection: BaseDatabaseWrapper, state: ConnectionState) -> Any:
    """The cursor of single-row calls, kept per physical connection: making
    a Django cursor costs about as much Python as the rest of the call.
    Its execute() is Django's as ever (execute wrappers, error translation,
    the broken-transaction check); one is kept for each value of
    ``queries_logged``, since Django decides at creation whether a cursor
    logs its queries."""
    logged = connection.queries_logged
    cursor = state.cursors.get(logged)
    if cursor is None:
        cursor = state.cursors[logged] = connection.cursor()
    return cursor


def open_model(model: Type[Model], using: Optional[str]
               ) -> Tuple[str, BaseDatabaseWrapper, ConnectionState, ModelSpec]:
    """The alias (``using``, else the routers' write database), its
    connection, the connection's state and the model's spec."""
    db = using or router.db_for_write(model)
    connection = connections[db]
    state = connection_state(connection)
    spec = state.specs.get(model)
    if spec is None:
        spec = state.specs[model] = ModelSpec(model, connection)
    return db, connection, state, spec


def _catalog(state: ConnectionState, sql: str, params: list) -> list:
    cursor = state.raw.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def partitioned(state: ConnectionState, spec: ModelSpec) -> bool:
    """Whether the table is partitioned: SQL mode cannot read xmax through a
    partitioned parent, so such targets report created as None.  Once per
    table and connection."""
    kind = state.relkinds.get(spec.table)
    if kind is None:
        kind = state.relkinds[spec.table] = _catalog(
            state, "SELECT c.relkind FROM pg_catalog.pg_class c"
                   " WHERE c.oid = %s::pg_catalog.regclass", [spec.table])[0][0]
    return kind == "p"


def column_types(state: ConnectionState, spec: ModelSpec) -> Dict[str, str]:
    """The table's column types without typmods, by column name: casts for
    text arrays (the column's typmod then applies as an INSERT applies it,
    an over-long varchar is an error, not cut).  Once per table and
    connection."""
    types = state.column_types.get(spec.table)
    if types is None:
        types = state.column_types[spec.table] = dict(_catalog(
            state, "SELECT a.attname, pg_catalog.format_type(a.atttypid, NULL)"
                   " FROM pg_catalog.pg_attribute a"
                   " WHERE a.attrelid = %s::pg_catalog.regclass AND a.attnum > 0"
                   " AND NOT a.attisdropped", [spec.table]))
    return types


def nulls_not_distinct(state: ConnectionState, spec: ModelSpec, columns: Tuple[str, ...]) -> bool:
    """Whether the table has a NULLS NOT DISTINCT unique index on exactly
    these columns (asked of the catalog, not the model: the model may say
    more than the database has).  Once per table, columns and connection."""
    key = (spec.table, columns)
    allowed = state.nulls_not_distinct.get(key)
    if allowed is None:
        allowed = False
        if spec.connection.pg_version >= 150000:
            allowed = _catalog(
                state,
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i"
                " WHERE i.indrelid = %s::pg_catalog.regclass AND i.indisunique"
                " AND i.indnullsnotdistinct AND i.indpred IS NULL AND i.indexprs IS NULL"
                " AND i.indnkeyatts = %s AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text"
                " ORDER BY a.attname) FROM pg_catalog.pg_attribute a"
                " WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))"
                " OPERATOR(pg_catalog.=) %s::pg_catalog.text[])",
                [spec.table, len(columns), list(columns)])[0][0]
        state.nulls_not_distinct[key] = allowed
    return allowed
