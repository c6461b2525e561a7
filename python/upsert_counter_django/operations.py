"""A migration operation that creates the extension where the role may.

    from django.db import migrations
    from upsert_counter_django.operations import CreateUpsertCounterExtension

    class Migration(migrations.Migration):
        operations = [CreateUpsertCounterExtension(), ...]

``CREATE EXTENSION upsert_counter`` needs a superuser (C code; the
extension is not marked trusted).  Where the migrating role may create it,
the operation does; where it already exists, it does nothing; where the
role may not, or the server does not have the extension installed, it
skips with an ``UpsertCounterWarning`` that says why and how to get the
extension mode, and the helper uses SQL mode on that database.  Either way
it resets the helper's cached mode on the connection, so calls after
``migrate`` on the same connection use what the database now has.
"""

import warnings
from typing import Optional

from django.db import DatabaseError, router, transaction
from django.db.migrations.operations.base import Operation

from ._connection import _sqlstate, installed_extension, reset_mode


class UpsertCounterWarning(RuntimeWarning):
    """A migration left the extension as it was (the role may not create or
    drop it, or the server does not have it); the helper uses SQL mode
    where the extension is absent."""


class CreateUpsertCounterExtension(Operation):
    """Create the upsert_counter extension when the role may; skip with a
    warning otherwise.  ``schema`` names the schema to create it in (the
    default: the first of the search path, as CREATE EXTENSION chooses).
    Reversed, it drops the extension when the role may (as Django's
    ``CreateExtension`` does), else warns."""

    reversible = True

    def __init__(self, schema: Optional[str] = None) -> None:
        self.schema = schema

    def state_forwards(self, app_label, state):
        pass

    def _applies(self, schema_editor, app_label) -> bool:
        connection = schema_editor.connection
        return connection.vendor == "postgresql" and \
            router.allow_migrate(connection.alias, app_label)

    def _create_sql(self, connection) -> str:
        sql = "CREATE EXTENSION IF NOT EXISTS upsert_counter"
        if self.schema:
            sql += " SCHEMA " + connection.ops.quote_name(self.schema)
        return sql

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not self._applies(schema_editor, app_label):
            return
        connection = schema_editor.connection
        if schema_editor.collect_sql:       # sqlmigrate: the statement as it would run
            schema_editor.execute(self._create_sql(connection))
            return
        try:
            if installed_extension(connection) is not None:
                return
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extensions"
                    "               WHERE name = 'upsert_counter'),"
                    " (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)"
                    " OR COALESCE((SELECT v.trusted FROM pg_catalog.pg_available_extension_versions v"
                    "              JOIN pg_catalog.pg_available_extensions a ON a.name = v.name"
                    "              AND a.default_version = v.version"
                    "              WHERE v.name = 'upsert_counter'), false)"
                    " AND pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),"
                    " current_user")
                available, may, role = cursor.fetchone()
            if not available:
                self._skip(connection, "the database server has no upsert_counter extension "
                           "installed (no upsert_counter.control in its extension directory): "
                           "build and install it on the server (make install), then run "
                           "migrate again or CREATE EXTENSION upsert_counter")
                return
            if not may:
                self._skip(connection, "role %r may not create it (CREATE EXTENSION upsert_counter "
                           "needs a superuser): a superuser runs CREATE EXTENSION upsert_counter "
                           "in database %r once" % (role, connection.settings_dict["NAME"]))
                return
            try:
                with transaction.atomic(using=connection.alias):     # a savepoint
                    schema_editor.execute(self._create_sql(connection))
            except DatabaseError as e:
                if _sqlstate(e) != "42501":
                    raise
                self._skip(connection, "%s (a superuser runs CREATE EXTENSION upsert_counter in "
                           "database %r once)" % (str(e).strip().splitlines()[0],
                                                 connection.settings_dict["NAME"]))
        finally:
            reset_mode(connection)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not self._applies(schema_editor, app_label):
            return
        connection = schema_editor.connection
        if schema_editor.collect_sql:
            schema_editor.execute("DROP EXTENSION IF EXISTS upsert_counter")
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_catalog.pg_has_role(current_user, e.extowner, 'USAGE')"
                    " FROM pg_catalog.pg_extension e WHERE e.extname = 'upsert_counter'")
                found = cursor.fetchone()
            if found is None:
                return
            if not found[0]:
                warnings.warn("upsert_counter: the extension was left in database %r: the role "
                              "does not own it, so it may not drop it"
                              % connection.settings_dict["NAME"], UpsertCounterWarning, stacklevel=2)
                return
            schema_editor.execute("DROP EXTENSION IF EXISTS upsert_counter")
        finally:
            reset_mode(connection)

    def _skip(self, connection, why):
        warnings.warn("upsert_counter: the extension was not created in database %r: %s.  Until "
                      "then the helper uses SQL mode there (same API, same results)."
                      % (connection.settings_dict["NAME"], why), UpsertCounterWarning, stacklevel=3)

    def describe(self):
        return "Create the upsert_counter extension where the role may"

    @property
    def migration_name_fragment(self):
        return "create_extension_upsert_counter"
