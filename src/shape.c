/*-------------------------------------------------------------------------
 *
 * shape.c
 *	  Resolving a call's target and column names against the catalogs.
 *
 * This file owns every decision that depends on the catalogs rather than on
 * the values of a call: that the target is a table, that each name is a
 * writable user column of it, that no column plays two roles, that deltas
 * go to numeric columns, and above all which unique index arbitrates.
 *
 * The arbiter is chosen by the rules core applies to an inference
 * specification, infer_arbiter_indexes() in optimizer/util/plancat.c: a
 * unique index whose key columns are exactly the key set (in any order),
 * that is valid, that is not partial (we write no ON CONFLICT ... WHERE),
 * and that is immediate (ExecCheckIndexConstraints() refuses deferrable
 * arbiters at run time).  We further require plain-column keys, since a
 * call names columns, not expressions.  When an index matched the names but
 * was refused, the error says which one and why.
 *
 * The result, a UcShape, is built once per cache entry, in the entry's
 * memory context, and reused until an invalidation says the catalogs
 * changed.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "catalog/dependency.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "upsert_counter.h"

/* Is this (base) type one that a delta may be added to? */
static bool
is_delta_type(Oid basetypid)
{
	switch (basetypid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
			return true;
		default:
			return false;
	}
}

/* errhint for a name that is not a column: suggest a case-insensitive match */
static int
errhint_column_case(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped &&
			pg_strcasecmp(NameStr(att->attname), name) == 0)
			return errhint("Column names are matched exactly, including case: perhaps you meant \"%s\".",
						   NameStr(att->attname));
	}
	return errhint("Name columns as they appear in the catalog (see \\d %s).",
				   RelationGetRelationName(rel));
}

/* Resolve one name of the call into cols[i] */
static void
resolve_column(Relation rel, const UcArgs *args, int i, UcRole role,
			   UcColumn *col, MemoryContext cxt)
{
	int			len = args->namelens[i];
	char	   *name;
	HeapTuple	atttup;
	Form_pg_attribute att;
	Oid			infunc;

	name = MemoryContextAlloc(cxt, len + 1);
	memcpy(name, args->names[i], len);
	name[len] = '\0';

	/*
	 * A name of NAMEDATALEN bytes or more can name no column, but the syscache
	 * would compare only its first NAMEDATALEN - 1 bytes; refuse it here.
	 */
	atttup = (len < NAMEDATALEN) ? SearchSysCacheAttName(RelationGetRelid(rel), name) : NULL;
	if (!HeapTupleIsValid(atttup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errdetail("The name appears in argument \"%s\".", uc_role_arg_names[role]),
				 errhint_column_case(rel, name)));
	att = (Form_pg_attribute) GETSTRUCT(atttup);

	if (att->attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("cannot write to system column \"%s\"", name),
				 errdetail("The name appears in argument \"%s\".", uc_role_arg_names[role]),
				 errhint("Only user columns of \"%s\" can be keys, deltas or assigned values.",
						 RelationGetRelationName(rel))));

	if (att->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("cannot write to generated column \"%s\"", name),
				 errdetail("Column \"%s\" is a generated column; its value is computed from other columns.",
						   name),
				 errhint("Remove \"%s\" from argument \"%s\".", name, uc_role_arg_names[role])));

	if (att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS)
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("cannot write to identity column \"%s\"", name),
				 errdetail("Column \"%s\" is an identity column defined as GENERATED ALWAYS.",
						   name),
				 errhint("Remove \"%s\" from argument \"%s\", or use a unique key that does not include it.",
						 name, uc_role_arg_names[role])));

	col->name = name;
	col->attnum = att->attnum;
	col->role = role;
	col->typid = att->atttypid;
	col->typmod = att->atttypmod;
	ReleaseSysCache(atttup);

	col->basetypid = getBaseType(col->typid);
	col->arraytypid = get_array_type(col->typid);
	get_typlenbyvalalign(col->typid, &col->typlen, &col->typbyval, &col->typalign);
	getTypeInputInfo(col->typid, &infunc, &col->ioparam);
	fmgr_info_cxt(infunc, &col->inputfn, cxt);

	if (role == UC_DELTA && !is_delta_type(col->basetypid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cannot add a delta to column \"%s\" of type %s",
						name, format_type_be(col->typid)),
				 errdetail("Deltas apply only to columns of type smallint, integer, bigint, numeric, real or double precision."),
				 errhint("To set \"%s\", pass it in argument \"assign\" or \"on_insert\" instead.", name)));
}

/* Append "(a, lower(b))": the key columns of an index, as core prints them */
static void
append_index_columns(StringInfo buf, Oid indexoid)
{
	appendStringInfo(buf, "(%s)", pg_get_indexdef_columns(indexoid, true));
}

/*
 * Choose the arbiter among the unique indexes of rel whose key columns are
 * keyset.  Ranking among usable matches: the primary key, then an index
 * backing a unique constraint, then any other; ties go to the lowest OID,
 * so the choice is stable.
 */
static void
resolve_arbiter(Relation rel, Bitmapset *keyset, UcShape *shape,
				MemoryContext cxt)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			best = InvalidOid;
	int			bestrank = -1;
	StringInfoData refused;
	StringInfoData usable;
	int			nusable = 0;

	initStringInfo(&refused);
	initStringInfo(&usable);

	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		Relation	irel = index_open(indexoid, RowExclusiveLock);
		Form_pg_index idx = irel->rd_index;
		Bitmapset  *cols = NULL;
		bool		has_expr = false;
		bool		partial;
		const char *why = NULL;

		if (!idx->indisunique || idx->indisexclusion)
		{
			index_close(irel, NoLock);
			continue;
		}

		for (int k = 0; k < idx->indnkeyatts; k++)
		{
			if (idx->indkey.values[k] == 0)
				has_expr = true;
			else
				cols = bms_add_member(cols, idx->indkey.values[k]);
		}
		if (has_expr)
		{
			Bitmapset  *exprcols = NULL;
			int			x = -1;

			/* pull_varattnos() offsets attnums by FirstLowInvalidHeapAttributeNumber */
			pull_varattnos((Node *) RelationGetIndexExpressions(irel), 1, &exprcols);
			while ((x = bms_next_member(exprcols, x)) >= 0)
				if (x + FirstLowInvalidHeapAttributeNumber > 0)
					cols = bms_add_member(cols, x + FirstLowInvalidHeapAttributeNumber);
		}
		partial = !heap_attisnull(irel->rd_indextuple, Anum_pg_index_indpred, NULL);

		if (!idx->indisvalid)
			why = "is not valid (an unfinished or failed CREATE INDEX CONCURRENTLY)";
		else if (has_expr)
			why = "has expressions among its keys";
		else if (partial)
			why = "is partial (it has a WHERE clause)";
		else if (!idx->indimmediate)
			why = "is deferrable, and ON CONFLICT cannot use a deferrable constraint as arbiter";

		if (why == NULL)
		{
			if (nusable++ > 0)
				appendStringInfoString(&usable, ", ");
			append_index_columns(&usable, indexoid);
		}

		if (bms_equal(cols, keyset))
		{
			if (why != NULL)
			{
				if (refused.len > 0)
					appendStringInfoChar(&refused, ' ');
				appendStringInfo(&refused, "Unique index \"%s\" on ",
								 RelationGetRelationName(irel));
				append_index_columns(&refused, indexoid);
				appendStringInfo(&refused, " matches the key columns but %s.", why);
			}
			else
			{
				int			rank;

				rank = idx->indisprimary ? 2 :
					OidIsValid(get_index_constraint(indexoid)) ? 1 : 0;
				if (rank > bestrank || (rank == bestrank && indexoid < best))
				{
					best = indexoid;
					bestrank = rank;
				}
			}
		}
		index_close(irel, NoLock);
	}
	list_free(indexes);

	if (!OidIsValid(best))
	{
		StringInfoData names;
		int			x = -1;

		initStringInfo(&names);
		while ((x = bms_next_member(keyset, x)) >= 0)
		{
			if (names.len > 0)
				appendStringInfoString(&names, ", ");
			appendStringInfoString(&names,
								   quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel),
																		  x - 1)->attname)));
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 bms_is_empty(keyset) ?
				 errmsg("argument \"keys\" names no columns") :
				 errmsg("there is no usable unique index on the key columns (%s) of relation \"%s\"",
						names.data, RelationGetRelationName(rel)),
				 refused.len > 0 ? errdetail_internal("%s", refused.data) : 0,
				 nusable > 0 ?
				 errhint("Argument \"keys\" must name exactly the columns of a unique index or constraint. The usable unique keys of \"%s\" are: %s.",
						 RelationGetRelationName(rel), usable.data) :
				 errhint("Relation \"%s\" has no usable unique index; create a unique constraint on the key columns.",
						 RelationGetRelationName(rel))));
	}

	/* Fill in the arbiter's details */
	{
		Relation	irel = index_open(best, RowExclusiveLock);
		Form_pg_index idx = irel->rd_index;
		int			nkeys = idx->indnkeyatts;
		MemoryContext oldcxt;

		shape->arbiter = best;
		shape->arbitername = MemoryContextStrdup(cxt, RelationGetRelationName(irel));
		shape->arbiter_constraint = get_index_constraint(best);
		shape->constraintname = OidIsValid(shape->arbiter_constraint) ?
			MemoryContextStrdup(cxt, get_constraint_name(shape->arbiter_constraint)) : NULL;
#if PG_VERSION_NUM >= 150000
		shape->nulls_not_distinct = idx->indnullsnotdistinct;
#else
		shape->nulls_not_distinct = false;
#endif
		shape->nkeys = nkeys;
		shape->keyorder = MemoryContextAlloc(cxt, nkeys * sizeof(int));
		shape->keysort = MemoryContextAllocZero(cxt, nkeys * sizeof(SortSupportData));
		for (int k = 0; k < nkeys; k++)
		{
			SortSupport ssup = &shape->keysort[k];
			int16		opt = irel->rd_indoption[k];

			shape->keyorder[k] = -1;
			for (int i = shape->rolestart[UC_KEY]; i < shape->rolestart[UC_KEY] + shape->nrole[UC_KEY]; i++)
				if (shape->cols[i].attnum == idx->indkey.values[k])
					shape->keyorder[k] = i;
			if (shape->keyorder[k] < 0)
				elog(ERROR, "arbiter index %u does not cover key column %d", best, k);

			/* Sort as the index does, so that batches lock in index order */
			ssup->ssup_cxt = cxt;
			ssup->ssup_collation = irel->rd_indcollation[k];
			ssup->ssup_nulls_first = (opt & INDOPTION_NULLS_FIRST) != 0;
			ssup->ssup_attno = k + 1;
			ssup->abbreviate = false;
			/* sort support functions palloc their state: do it in cxt */
			oldcxt = MemoryContextSwitchTo(cxt);
			PrepareSortSupportFromIndexRel(irel,
										   (opt & INDOPTION_DESC) ? BTGreaterStrategyNumber : BTLessStrategyNumber,
										   ssup);
			MemoryContextSwitchTo(oldcxt);
		}
		index_close(irel, NoLock);
	}
}

/*
 * Build the shape for a call.  The caller holds RowExclusiveLock on
 * args->relid.  Errors here are the user's: every one is an ereport.
 */
UcShape *
uc_shape_build(const UcArgs *args, MemoryContext cxt)
{
	UcShape    *shape;
	Relation	rel;
	Bitmapset  *keyset = NULL;
	Bitmapset  *seen = NULL;
	UcRole	   *seenrole;
	int			i = 0;

	rel = try_relation_open(args->relid, NoLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", args->relid),
				 errhint("Pass the target table by name, for example 'public.page_hits'.")));

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot upsert into relation \"%s\"", RelationGetRelationName(rel)),
#if PG_VERSION_NUM >= 150000
				 errdetail_relkind_not_supported(rel->rd_rel->relkind),
#endif
				 errhint("upsert_increment() writes to tables and partitioned tables only.")));

	shape = MemoryContextAllocZero(cxt, sizeof(UcShape));
	shape->relid = args->relid;
	shape->relname = MemoryContextStrdup(cxt, RelationGetRelationName(rel));
	shape->nspname = MemoryContextStrdup(cxt,
										 get_namespace_name(RelationGetNamespace(rel)));
	shape->nsphash = GetSysCacheHashValue1(NAMESPACEOID,
										   ObjectIdGetDatum(RelationGetNamespace(rel)));
	shape->ncols = args->ncols;
	shape->cols = MemoryContextAllocZero(cxt, Max(args->ncols, 1) * sizeof(UcColumn));
	shape->batchable = true;
	seenrole = palloc((RelationGetDescr(rel)->natts + 1) * sizeof(UcRole));

	for (int r = 0; r < UC_NROLES; r++)
	{
		shape->nrole[r] = args->nrole[r];
		shape->rolestart[r] = i;
		for (int j = 0; j < args->nrole[r]; j++, i++)
		{
			UcColumn   *col = &shape->cols[i];

			resolve_column(rel, args, i, (UcRole) r, col, cxt);
			if (bms_is_member(col->attnum, seen))
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column \"%s\" is named in both \"%s\" and \"%s\"",
								col->name, uc_role_arg_names[seenrole[col->attnum]],
								uc_role_arg_names[r]),
						 errdetail("Each column may play one role in a call: key, delta, assigned value or insert-only value."),
						 errhint("Remove \"%s\" from one of the arguments.", col->name)));
			seen = bms_add_member(seen, col->attnum);
			seenrole[col->attnum] = (UcRole) r;
			if (r == UC_KEY)
				keyset = bms_add_member(keyset, col->attnum);
			if (!OidIsValid(col->arraytypid))
				shape->batchable = false;
		}
	}

	resolve_arbiter(rel, keyset, shape, cxt);

	relation_close(rel, NoLock);
	return shape;
}
