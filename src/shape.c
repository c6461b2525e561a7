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
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "citus.h"

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
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot assign to system column \"%s\"", name),
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
	/* binary I/O, if the type has it (background mode's log) */
	col->sendfn.fn_oid = col->recvfn.fn_oid = InvalidOid;
	{
		HeapTuple	typtup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(col->typid));
		Form_pg_type typ;

		if (!HeapTupleIsValid(typtup))
			elog(ERROR, "cache lookup failed for type %u", col->typid);
		typ = (Form_pg_type) GETSTRUCT(typtup);
		if (OidIsValid(typ->typsend) && OidIsValid(typ->typreceive))
		{
			fmgr_info_cxt(typ->typsend, &col->sendfn, cxt);
			fmgr_info_cxt(typ->typreceive, &col->recvfn, cxt);
			col->recvioparam = getTypeIOParam(typtup);
		}
		ReleaseSysCache(typtup);
	}
	col->typmodfn.fn_oid = InvalidOid;
	col->typmodoutfn.fn_oid = InvalidOid;
	if (col->typmod >= 0)
	{
		Oid			funcid;

		switch (find_typmod_coercion_function(col->typid, &funcid))
		{
			case COERCION_PATH_FUNC:
				fmgr_info_cxt(funcid, &col->typmodfn, cxt);
				break;
			case COERCION_PATH_ARRAYCOERCE:
				{
					/* varchar(3)[]: array_in() applies the typmod per element */
					Oid			outfn;
					bool		isvarlena;

					getTypeOutputInfo(col->typid, &outfn, &isvarlena);
					fmgr_info_cxt(outfn, &col->typmodoutfn, cxt);
					break;
				}
			default:
				break;
		}
	}

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

static void refuse_ambiguous_inference(Relation rel, Bitmapset *keyset,
									   const UcShape *shape);

/* The operator class of an index's k'th column */
static Oid
index_opclass(Relation irel, int k)
{
	bool		isnull;
	Datum		d = SysCacheGetAttr(INDEXRELID, irel->rd_indextuple,
									Anum_pg_index_indclass, &isnull);

	Assert(!isnull);
	return ((oidvector *) DatumGetPointer(d))->values[k];
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
		shape->nulls_not_distinct = idx->indnullsnotdistinct;
		shape->nkeys = nkeys;
		shape->keyorder = MemoryContextAlloc(cxt, nkeys * sizeof(int));
		shape->keysort = MemoryContextAllocZero(cxt, nkeys * sizeof(SortSupportData));
		shape->keyopfamily = MemoryContextAlloc(cxt, nkeys * sizeof(Oid));
		shape->keycollation = MemoryContextAlloc(cxt, nkeys * sizeof(Oid));
		shape->keyopclass = MemoryContextAlloc(cxt, nkeys * sizeof(Oid));
		for (int k = 0; k < nkeys; k++)
		{
			SortSupport ssup = &shape->keysort[k];
			int16		opt = irel->rd_indoption[k];

			shape->keyopfamily[k] = irel->rd_opfamily[k];
			shape->keycollation[k] = irel->rd_indcollation[k];
			shape->keyopclass[k] = index_opclass(irel, k);
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
			uc_sortsupport_from_index(irel, (opt & INDOPTION_DESC) != 0, ssup);
			MemoryContextSwitchTo(oldcxt);
		}
		index_close(irel, NoLock);
	}

	if (shape->constraintname == NULL)
		refuse_ambiguous_inference(rel, keyset, shape);
}

/*
 * Without a constraint behind our index, the statement names it by its
 * columns, collations and operator classes, and core then takes every
 * unique index that matches those as an arbiter.  Another immediate one is
 * harmless (it enforces the same uniqueness), but a deferrable one would
 * make every call fail (ON CONFLICT refuses deferrable arbiters), and we
 * cannot leave it out: refuse the case with a way out.
 */
static void
refuse_ambiguous_inference(Relation rel, Bitmapset *keyset, const UcShape *shape)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		Relation	irel;
		Form_pg_index idx;
		Bitmapset  *cols = NULL;
		bool		same = true;

		if (indexoid == shape->arbiter)
			continue;
		irel = index_open(indexoid, RowExclusiveLock);
		idx = irel->rd_index;
		if (!idx->indisunique || !idx->indisvalid || idx->indimmediate ||
			idx->indnkeyatts != shape->nkeys ||
			!heap_attisnull(irel->rd_indextuple, Anum_pg_index_indpred, NULL))
		{
			index_close(irel, NoLock);
			continue;
		}
		for (int k = 0; k < idx->indnkeyatts && same; k++)
		{
			AttrNumber	attno = idx->indkey.values[k];
			bool		found = false;

			if (attno == 0)
				same = false;
			cols = bms_add_member(cols, attno);
			for (int j = 0; j < shape->nkeys && !found; j++)
				found = shape->cols[shape->keyorder[j]].attnum == attno &&
					shape->keycollation[j] == irel->rd_indcollation[k] &&
					shape->keyopclass[j] == index_opclass(irel, k);
			same = same && found;
		}
		if (same && bms_equal(cols, keyset))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("unique index \"%s\" cannot be the only arbiter for the key columns of relation \"%s\"",
							shape->arbitername, RelationGetRelationName(rel)),
					 errdetail("Deferrable unique index \"%s\" has the same columns, collations and operator classes, so ON CONFLICT would use it as an arbiter too, and ON CONFLICT cannot use a deferrable arbiter.",
							   RelationGetRelationName(irel)),
					 errhint("Make index \"%s\" back a constraint (ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX), which ON CONFLICT can name alone, or make the other one NOT DEFERRABLE.",
							 shape->arbitername)));
		index_close(irel, NoLock);
	}
	list_free(indexes);
}

/*
 * Can rows converted and merged under shape a be written through shape b
 * (a newer entry for the same call)?  Their columns must have the same
 * types, and their arbiters the same notion of equal keys.
 */
bool
uc_shape_compatible(const UcShape *a, const UcShape *b)
{
	if (a == b)
		return true;
	if (a->ncols != b->ncols || a->nkeys != b->nkeys ||
		a->nulls_not_distinct != b->nulls_not_distinct)
		return false;
	for (int i = 0; i < a->ncols; i++)
		if (a->cols[i].typid != b->cols[i].typid)
			return false;
	for (int k = 0; k < a->nkeys; k++)
		if (a->keyorder[k] != b->keyorder[k] ||
			a->keyopfamily[k] != b->keyopfamily[k] ||
			a->keycollation[k] != b->keycollation[k])
			return false;
	return true;
}

/*
 * The privileges an INSERT ... ON CONFLICT DO UPDATE of this shape needs,
 * checked now, for commit mode, whose write comes later: INSERT on every
 * column, UPDATE on deltas and assigned columns, SELECT on them too (the
 * SET clause reads t.n and EXCLUDED.n, and reading EXCLUDED.label needs
 * SELECT on label) and on keys (ON CONFLICT reads the arbiter's columns,
 * whatever its action).  The executor checks again when the row is written,
 * as the user who buffered it.
 */
void
uc_shape_check_privileges(const UcShape *shape, Oid userid)
{
	AclMode		onrel = pg_class_aclmask(shape->relid, userid,
										 ACL_INSERT | ACL_UPDATE | ACL_SELECT,
										 ACLMASK_ALL);

	for (int i = 0; i < shape->ncols; i++)
	{
		const UcColumn *col = &shape->cols[i];
		AclMode		need = ACL_INSERT;

		/* ON CONFLICT reads the arbiter's columns, whatever its action */
		if (col->role == UC_KEY)
			need |= ACL_SELECT;
		else if (col->role == UC_DELTA || col->role == UC_ASSIGN)
			need |= ACL_UPDATE | ACL_SELECT;
		need &= ~onrel;
		for (AclMode bit = ACL_INSERT; need != 0; bit <<= 1)
		{
			if ((need & bit) == 0)
				continue;
			need &= ~bit;
			if (pg_attribute_aclcheck(shape->relid, col->attnum, userid, bit) != ACLCHECK_OK)
				aclcheck_error_col(ACLCHECK_NO_PRIV, OBJECT_TABLE, shape->relname,
								   col->name);
		}
	}
}

/*
 * A partitioned Citus table counts with a flag that the SET clause sets
 * and RETURNING reads and clears, without a function around each proposed
 * row to clear it first (its argument would be a constant, which a
 * function declared immutable may be folded on).  A BEFORE UPDATE row
 * trigger that skips a row would leave the flag set for the next row:
 * refuse such a table rather than count wrong.
 */
static void
refuse_skipping_triggers(Relation rel)
{
	List	   *parts = find_all_inheritors(RelationGetRelid(rel), NoLock, NULL);
	ListCell   *lc;

	foreach(lc, parts)
	{
		Relation	part = relation_open(lfirst_oid(lc), NoLock);
		bool		before = part->trigdesc != NULL && part->trigdesc->trig_update_before_row;
		char	   *name = pstrdup(RelationGetRelationName(part));

		relation_close(part, NoLock);
		if (before)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("upsert_increment() cannot count the rows it writes to partitioned Citus table \"%s\"",
							RelationGetRelationName(rel)),
					 errdetail("Partition \"%s\" has a BEFORE UPDATE row trigger, which may skip a row.",
							   name),
					 errhint("Drop the trigger, or write to the table with INSERT ... ON CONFLICT yourself.")));
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
				 errdetail_relkind_not_supported(rel->rd_rel->relkind),
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

	/*
	 * How the statements tell inserted rows from updated ones (sqlgen.c): a
	 * flag set by the SET clause, except on Citus tables, which refuse our
	 * functions (they are volatile) in the statement: there RETURNING xmax
	 * = 0 on a plain table, and on a partitioned one (no system columns in
	 * RETURNING) a flag kept by functions declared immutable.
	 */
	shape->distributed = uc_citus_table(RelationGetRelid(rel));
	shape->counting = !shape->distributed ? UC_COUNT_FLAG :
		rel->rd_rel->relkind == RELKIND_RELATION ? UC_COUNT_XMAX :
		UC_COUNT_CITUS_FLAG;
	if (shape->counting == UC_COUNT_CITUS_FLAG &&
		shape->nrole[UC_DELTA] + shape->nrole[UC_ASSIGN] > 0)
		refuse_skipping_triggers(rel);

	relation_close(rel, NoLock);
	return shape;
}
