"""System check (database tag: ``manage.py check --database default``, and
``migrate``): which mode the helper uses on each database, and how to get
the extension mode."""

from django.core import checks
from django.db import connections

from ._connection import connection_state, installed_extension


def check_mode(app_configs=None, databases=None, **kwargs):
    messages = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            messages.append(checks.Error(
                "upsert_counter_django needs PostgreSQL; database %r is %s"
                % (alias, connection.vendor), id="upsert_counter.E001"))
            continue
        try:
            state = connection_state(connection)
            installed = installed_extension(connection) if state.wanted == "sql" else None
        except Exception as e:          # ImproperlyConfigured, no server, ...
            messages.append(checks.Error(str(e), id="upsert_counter.E002"))
            continue
        if state.wanted == "sql":
            messages.append(checks.Info(
                "upsert_counter: database %r uses SQL mode because UPSERT_COUNTER_MODE says so "
                "(the upsert_counter extension %s)" % (
                    alias, "%s is installed there, unused" % installed[1] if installed
                    else "is not installed there"),
                hint="UPSERT_COUNTER_MODE = \"auto\" uses the extension where it is installed.",
                id="upsert_counter.I002"))
        elif state.mode == "sql":
            messages.append(checks.Info(
                "upsert_counter: database %r has no upsert_counter extension; the helper "
                "generates INSERT ... ON CONFLICT statements itself (SQL mode)" % alias,
                hint="For the extension mode (cached plans, server-side merging, commit-time "
                     "flush) a superuser runs CREATE EXTENSION upsert_counter in that database "
                     "once (or a migration has CreateUpsertCounterExtension() and a role that "
                     "may); see upsert_counter_django's README.",
                id="upsert_counter.I001"))
        else:
            messages.append(checks.Debug(
                "upsert_counter: database %r uses the upsert_counter extension %s (extension mode)"
                % (alias, state.version), id="upsert_counter.D001"))
    return messages
