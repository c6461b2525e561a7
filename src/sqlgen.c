/*-------------------------------------------------------------------------
 *
 * sqlgen.c
 *	  The text of the statements we prepare for a shape.
 *
 * This file owns every word of SQL the extension runs.  For a table
 * s.t(k1, k2, n, a, o) with keys k1, k2, delta n, assign a and on_insert o,
 * the forms are:
 *
 *	single		INSERT INTO "s"."t" AS t ("k1", "k2", "n", "a", "o")
 *				VALUES (x.upsert_counter_note_row($1), $2, $3, $4, $5)
 *				ON CONFLICT <arbiter>
 *				DO UPDATE SET "n" = x.upsert_counter_note_update(
 *								COALESCE(t."n", 0) OPERATOR(pg_catalog.+) EXCLUDED."n"),
 *							  "a" = EXCLUDED."a"
 *				RETURNING (NOT x.upsert_counter_take_update())
 *
 *				(x is the extension's schema)
 *
 *	batch		the same with
 *				SELECT pg_catalog.unnest($1), ..., pg_catalog.unnest($5)
 *				instead of VALUES: one array per column, zipped in the
 *				target list (ROWS FROM would expand composite-typed columns)
 *				and kept in array order, which is the arbiter's key order
 *
 *	returning	the single form with
 *				RETURNING (NOT x.upsert_counter_take_update()), t.*
 *				(execute.c builds the jsonb from t.*: to_jsonb() is not
 *				immutable, and Citus refuses such functions in RETURNING)
 *
 *	lookup		SELECT t.* FROM ONLY "s"."t" AS t
 *				WHERE (t."k1" COLLATE c OPERATOR(s.=) $1) AND ...
 *				with the arbiter's own equality operators and collations,
 *				for get-or-create calls that found the key
 *
 * <arbiter> names exactly the index we chose: ON CONSTRAINT "name" when a
 * constraint stands behind it, else the inference list with each column's
 * collation and operator class, ("k1" COLLATE "pg_catalog"."C"
 * "pg_catalog"."text_ops", ...), which core matches only to indexes with
 * those (shape.c refuses the cases where another index would still match).
 * With no delta and no assign the action is DO NOTHING, and RETURNING is
 * not needed: every row returned is an insert.
 *
 * Counting: the first value of each proposed row passes through
 * upsert_counter_note_row(), which clears a flag; the first SET expression
 * through upsert_counter_note_update(), which sets it; RETURNING reads it
 * with upsert_counter_take_update() (execute.c).  Rows a BEFORE trigger
 * skipped are not returned at all.  Nothing else is read, so the statement
 * needs exactly the privileges of the plain one (a system column in
 * RETURNING would need table-wide SELECT).  On Citus tables, which refuse
 * functions that are not immutable in SET and RETURNING, plain tables
 * count with RETURNING (t.xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid):
 * true for a row the statement inserted, false for one it updated (the
 * update path locks the row first, and the new version keeps our lock in
 * its xmax).
 *
 * Names come only from the catalogs, quoted and schema-qualified; operators
 * and functions are qualified by pg_catalog or by their own schema, so the
 * text means the same whatever the caller's search_path.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_opclass.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "sqlgen.h"

static void
append_column_list(StringInfo buf, const UcShape *s, int from, int n)
{
	for (int i = from; i < from + n; i++)
	{
		if (i > from)
			appendStringInfoString(buf, ", ");
		appendStringInfoString(buf, quote_identifier(s->cols[i].name));
	}
}

/*
 * prefix and the schema-qualified, quoted name of a collation (COLLOID) or
 * an operator class (CLAOID)
 */
static void
append_qualified_name(StringInfo buf, const char *prefix, int cacheid, Oid oid)
{
	HeapTuple	tup = SearchSysCache1(cacheid, ObjectIdGetDatum(oid));
	Oid			nsp;
	const char *name;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for object %u of syscache %d", oid, cacheid);
	if (cacheid == COLLOID)
	{
		nsp = ((Form_pg_collation) GETSTRUCT(tup))->collnamespace;
		name = NameStr(((Form_pg_collation) GETSTRUCT(tup))->collname);
	}
	else
	{
		nsp = ((Form_pg_opclass) GETSTRUCT(tup))->opcnamespace;
		name = NameStr(((Form_pg_opclass) GETSTRUCT(tup))->opcname);
	}
	appendStringInfo(buf, "%s%s", prefix,
					 quote_qualified_identifier(get_namespace_name(nsp), name));
	ReleaseSysCache(tup);
}

/* ON CONFLICT naming exactly our arbiter */
static void
append_arbiter(StringInfo buf, const UcShape *s)
{
	appendStringInfoString(buf, " ON CONFLICT ");
	if (s->constraintname != NULL)
	{
		appendStringInfo(buf, "ON CONSTRAINT %s", quote_identifier(s->constraintname));
		return;
	}
	appendStringInfoChar(buf, '(');
	for (int k = 0; k < s->nkeys; k++)
	{
		if (k > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfoString(buf, quote_identifier(s->cols[s->keyorder[k]].name));
		if (OidIsValid(s->keycollation[k]))
			append_qualified_name(buf, " COLLATE ", COLLOID, s->keycollation[k]);
		append_qualified_name(buf, " ", CLAOID, s->keyopclass[k]);
	}
	appendStringInfoChar(buf, ')');
}

/*
 * The schema upsert_counter is installed in (InvalidOid if it is not, with
 * missing_ok); get_extension_schema() is static before PostgreSQL 16
 */
Oid
uc_extension_schema(bool missing_ok)
{
	Oid			extoid = get_extension_oid("upsert_counter", missing_ok);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp;

	if (!OidIsValid(extoid))
		return InvalidOid;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for extension %u", extoid);
	nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

/* The extension's schema, quoted, for our own functions */
static const char *
ext_schema(void)
{
	return quote_identifier(get_namespace_name(uc_extension_schema(false)));
}

static void
append_action(StringInfo buf, const UcShape *s)
{
	if (s->nrole[UC_DELTA] + s->nrole[UC_ASSIGN] == 0)
	{
		appendStringInfoString(buf, " DO NOTHING");
		return;
	}
	appendStringInfoString(buf, " DO UPDATE SET ");
	for (int i = s->rolestart[UC_DELTA]; i < s->rolestart[UC_ON_INSERT]; i++)
	{
		const char *col = quote_identifier(s->cols[i].name);
		bool		note = (i == s->rolestart[UC_DELTA] && s->counting != UC_COUNT_XMAX);

		appendStringInfo(buf, "%s%s = ", i > s->rolestart[UC_DELTA] ? ", " : "", col);
		if (note)
			appendStringInfo(buf, "%s.%s(", ext_schema(),
							 s->counting == UC_COUNT_FLAG ? "upsert_counter_note_update" :
							 "upsert_counter_citus_note_update");
		if (s->cols[i].role == UC_DELTA)
			appendStringInfo(buf,
							 "COALESCE(t.%s, 0) OPERATOR(pg_catalog.+) EXCLUDED.%s",
							 col, col);
		else
			appendStringInfo(buf, "EXCLUDED.%s", col);
		if (note)
			appendStringInfoChar(buf, ')');
	}
}

/*
 * The SELECT that finds an existing row by its key, with the arbiter's own
 * equality operators and collations, so that it finds the row the arbiter
 * conflicted with.
 */
static void
append_lookup(StringInfo buf, const UcShape *s, Oid *argtypes)
{
	Relation	irel = index_open(s->arbiter, AccessShareLock);

	appendStringInfo(buf, "SELECT t.* FROM %s%s AS t WHERE ",
					 get_rel_relkind(s->relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					 quote_qualified_identifier(s->nspname, s->relname));
	for (int k = 0; k < s->nkeys; k++)
	{
		int			i = s->keyorder[k];
		const UcColumn *col = &s->cols[i];
		Oid			opcintype = irel->rd_opcintype[k];
		Oid			eqop = get_opfamily_member(irel->rd_opfamily[k], opcintype,
											   opcintype, BTEqualStrategyNumber);
		StringInfoData left;
		char		right[16];
		Oid			optype;

		if (!OidIsValid(eqop))
			elog(ERROR, "missing equality operator for opfamily %u",
				 irel->rd_opfamily[k]);
		/* no cast to a polymorphic operator input such as anyenum */
		optype = get_typtype(opcintype) == TYPTYPE_PSEUDO ? opcintype : col->typid;
		initStringInfo(&left);
		appendStringInfo(&left, "t.%s", quote_identifier(col->name));
		if (OidIsValid(s->keycollation[k]))
			append_qualified_name(&left, " COLLATE ", COLLOID, s->keycollation[k]);
		snprintf(right, sizeof(right), "$%d", i + 1);
		if (k > 0)
			appendStringInfoString(buf, " AND ");
		appendStringInfoChar(buf, '(');
		generate_operator_clause(buf, left.data, optype, eqop, right, optype);
		if (s->nulls_not_distinct)
			appendStringInfo(buf, " OR (t.%s IS NULL AND %s IS NULL)",
							 quote_identifier(col->name), right);
		appendStringInfoChar(buf, ')');
		argtypes[i] = col->typid;
	}
	index_close(irel, AccessShareLock);
}

/* ON CONFLICT ..., its action, and RETURNING <inserted> [, t.*] */
static void
append_conflict_and_returning(StringInfo buf, const UcShape *s, bool whole_row)
{
	bool		do_nothing = (s->nrole[UC_DELTA] + s->nrole[UC_ASSIGN] == 0);

	append_arbiter(buf, s);
	append_action(buf, s);

	if (!do_nothing || whole_row)
	{
		appendStringInfoString(buf, " RETURNING ");
		if (do_nothing)
			appendStringInfoString(buf, "true");	/* every row returned is an insert */
		else if (s->counting == UC_COUNT_XMAX)
			appendStringInfoString(buf, "(t.xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid)");
		else if (s->counting == UC_COUNT_CITUS_FLAG)
			appendStringInfo(buf, "(NOT %s.upsert_counter_citus_take_update(t.%s))",
							 ext_schema(), quote_identifier(s->cols[s->keyorder[0]].name));
		else
			appendStringInfo(buf, "(NOT %s.upsert_counter_take_update())", ext_schema());
		if (whole_row)
			appendStringInfoString(buf, ", t.*");
	}
}

/*
 * A batch statement for a Citus table: nrows rows as VALUES, one
 * parameter per value, row by row.  Citus routes a multi-row INSERT ...
 * VALUES whose rows are all in one shard to its worker as it is, where
 * the unnest() form is an INSERT ... SELECT that it runs through the
 * coordinator.  Sets argtypes[] (room for ncols * nrows).
 */
char *
uc_sql_build_rows(const UcShape *s, int nrows, Oid *argtypes)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "INSERT INTO %s AS t (",
					 quote_qualified_identifier(s->nspname, s->relname));
	append_column_list(&buf, s, 0, s->ncols);
	appendStringInfoString(&buf, ") VALUES ");
	for (int r = 0; r < nrows; r++)
	{
		appendStringInfoString(&buf, r > 0 ? ", (" : "(");
		for (int i = 0; i < s->ncols; i++)
		{
			appendStringInfo(&buf, i > 0 ? ", $%d" : "$%d", r * s->ncols + i + 1);
			argtypes[r * s->ncols + i] = s->cols[i].typid;
		}
		appendStringInfoChar(&buf, ')');
	}
	append_conflict_and_returning(&buf, s, false);
	return buf.data;
}

/*
 * The text of one form.  Sets argtypes[] (room for ncols) and *nargs.
 */
char *
uc_sql_build(const UcShape *s, UcForm form, Oid *argtypes, int *nargs)
{
	StringInfoData buf;
	bool		do_nothing = (s->nrole[UC_DELTA] + s->nrole[UC_ASSIGN] == 0);

	initStringInfo(&buf);

	if (form == UC_FORM_LOOKUP)
	{
		*nargs = s->nkeys;
		append_lookup(&buf, s, argtypes);
		return buf.data;
	}

	*nargs = s->ncols;
	appendStringInfo(&buf, "INSERT INTO %s AS t (",
					 quote_qualified_identifier(s->nspname, s->relname));
	append_column_list(&buf, s, 0, s->ncols);
	appendStringInfoString(&buf, form == UC_FORM_BATCH ? ") SELECT " : ") VALUES (");
	for (int i = 0; i < s->ncols; i++)
	{
		bool		note = (i == 0 && s->counting == UC_COUNT_FLAG && !do_nothing);

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (note)
			appendStringInfo(&buf, "%s.upsert_counter_note_row(", ext_schema());
		if (form == UC_FORM_BATCH)
			appendStringInfo(&buf, "pg_catalog.unnest($%d)", i + 1);
		else
			appendStringInfo(&buf, "$%d", i + 1);
		if (note)
			appendStringInfoChar(&buf, ')');
		argtypes[i] = form == UC_FORM_BATCH ? s->cols[i].arraytypid : s->cols[i].typid;
	}
	if (form != UC_FORM_BATCH)
		appendStringInfoChar(&buf, ')');

	append_conflict_and_returning(&buf, s, form == UC_FORM_RETURNING);
	return buf.data;
}
