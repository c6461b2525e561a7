/*-------------------------------------------------------------------------
 *
 * rows.c
 *	  The typed input path: rows given as records whose field names are
 *	  column names.
 *
 *		SELECT upsert_increment_rows('ab_hourly', e, '{participants}')
 *		FROM (SELECT ab_test_id, version, date, hour, 1 AS participants
 *			  FROM events) e;
 *
 * A batch built with jsonb_build_object() pays for two jsonb objects per
 * input row, more than everything the extension does with the row.  This
 * file owns the path that needs no JSON: the aggregate
 * upsert_increment_rows(target, row, deltas text[] [, assign text[]
 * [, on_insert text[]]]) takes each input row as a record.  Its fields are
 * the columns; those named in deltas, assign or on_insert play that role,
 * every other field is a key.
 *
 * For one row type and one set of role arrays (the common case: the same
 * for every row of a call), the mapping from the record's fields to the
 * roles, and the cache key of the call's shape, are worked out once per
 * aggregate call and kept in its state.  Names within a role are ordered
 * as jsonb orders object keys, so a typed call shares its cache entry
 * with the equivalent jsonb call.  Rows are then merged and written by
 * batch.c exactly as jsonb rows are.
 *
 * A field whose type is the column's type goes in as it is, coerced to the
 * column's typmod as an INSERT coerces it; integers
 * widen or narrow with a range check; anything else goes through its type's
 * output and the column type's input function (so a domain's checks run,
 * and a value the column type cannot take raises that type's own error).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "batch.h"

/* The mapping of one row type and one set of role arrays */
struct UcRowMap
{
	Oid			typid;
	int32		typmod;
	ArrayType  *rolearrays[UC_NROLES];	/* copies, [UC_KEY] unused */
	TupleDesc	tupdesc;		/* a copy */
	UcArgs		args;			/* names per role, the cache key */
	int		   *attno;			/* args column i <- tuple attribute attno[i] */
	FmgrInfo   *outfn;			/* per tuple attribute, set when first needed */
	Oid		   *outfnoid;
};

/* The row being added, for convert_row() */
typedef struct UcRowValues
{
	const UcRowMap *map;
	Datum	   *values;			/* deformed, per tuple attribute */
	bool	   *isnull;
} UcRowValues;

static bool
same_array(ArrayType *a, ArrayType *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

/* jsonb's order of object keys: shorter first, then bytewise */
static int
jsonb_key_order(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* The names of a role array, checked against the row's fields */
static void
role_names(ArrayType *arr, UcRole role, TupleDesc desc, int *roleof)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (arr == NULL)
		return;
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("argument \"%s\" must be a one-dimensional array of column names",
						uc_role_arg_names[role])));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;
		int			a;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument \"%s\" contains a null column name",
							uc_role_arg_names[role])));
		name = TextDatumGetCString(elems[i]);
		for (a = 0; a < desc->natts; a++)
			if (!TupleDescAttr(desc, a)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, a)->attname), name) == 0)
				break;
		if (a == desc->natts)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("\"%s\" in argument \"%s\" is not a field of the input row",
							name, uc_role_arg_names[role]),
					 errhint("Name the columns of the input row (SELECT ... AS \"%s\") as the target's columns.",
							 name)));
		if (roleof[a] != UC_KEY)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" is named in both \"%s\" and \"%s\"",
							name, uc_role_arg_names[roleof[a]], uc_role_arg_names[role]),
					 errdetail("Each column may play one role in a call: key, delta, assigned value or insert-only value.")));
		roleof[a] = role;
	}
}

/* Work out the mapping for a row type and role arrays, in cxt */
static UcRowMap *
build_map(MemoryContext cxt, Oid relid, HeapTupleHeader td, ArrayType *const *roles)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	UcRowMap   *map = palloc0(sizeof(UcRowMap));
	TupleDesc	desc;
	int		   *roleof;
	int			n = 0;

	map->typid = HeapTupleHeaderGetTypeId(td);
	map->typmod = HeapTupleHeaderGetTypMod(td);
	desc = lookup_rowtype_tupdesc(map->typid, map->typmod);
	map->tupdesc = CreateTupleDescCopy(desc);
	ReleaseTupleDesc(desc);
	desc = map->tupdesc;
	for (int r = UC_DELTA; r < UC_NROLES; r++)
		map->rolearrays[r] = roles[r] ? (ArrayType *) pg_detoast_datum_copy((struct varlena *) roles[r]) : NULL;

	roleof = palloc(Max(desc->natts, 1) * sizeof(int));
	for (int a = 0; a < desc->natts; a++)
		roleof[a] = UC_KEY;
	for (int r = UC_DELTA; r < UC_NROLES; r++)
		role_names(map->rolearrays[r], (UcRole) r, desc, roleof);

	map->attno = palloc(Max(desc->natts, 1) * sizeof(int));
	map->args.names = palloc(Max(desc->natts, 1) * sizeof(char *));
	map->args.namelens = palloc(Max(desc->natts, 1) * sizeof(int));
	for (int r = 0; r < UC_NROLES; r++)
	{
		int			first = n;

		for (int a = 0; a < desc->natts; a++)
		{
			const char *name = NameStr(TupleDescAttr(desc, a)->attname);
			int			len = strlen(name);
			int			j;

			if (TupleDescAttr(desc, a)->attisdropped || roleof[a] != r)
				continue;
			/* insertion sort into jsonb's order */
			for (j = n; j > first &&
				 jsonb_key_order(map->args.names[j - 1], map->args.namelens[j - 1],
								 name, len) > 0; j--)
			{
				map->args.names[j] = map->args.names[j - 1];
				map->args.namelens[j] = map->args.namelens[j - 1];
				map->attno[j] = map->attno[j - 1];
			}
			map->args.names[j] = name;
			map->args.namelens[j] = len;
			map->attno[j] = a;
			n++;
		}
		map->args.nrole[r] = n - first;
	}
	map->args.ncols = map->args.maxcols = n;
	uc_args_set_key(&map->args, relid);
	map->outfn = palloc0(Max(desc->natts, 1) * sizeof(FmgrInfo));
	map->outfnoid = palloc0(Max(desc->natts, 1) * sizeof(Oid));
	MemoryContextSwitchTo(oldcxt);
	return map;
}

static bool
is_integer_type(Oid t)
{
	return t == INT2OID || t == INT4OID || t == INT8OID;
}

/* One field's value as a value of column i */
static Datum
field_to_column(UcRowMap *map, int a, Datum value, const UcColumn *col)
{
	Oid			atttype = TupleDescAttr(map->tupdesc, a)->atttypid;
	char	   *str;

	if (atttype == col->typid)
	{
		/*
		 * The column's typmod, as an INSERT applies it (an assignment, not
		 * an explicit cast), before rows are merged: numeric(6, 2) rounds
		 * each value, varchar(n) refuses a longer one.
		 */
		if (OidIsValid(col->typmodfn.fn_oid))
			return FunctionCall3((FmgrInfo *) &col->typmodfn, value,
								 Int32GetDatum(col->typmod), BoolGetDatum(false));
		if (OidIsValid(col->typmodoutfn.fn_oid))
			return InputFunctionCall((FmgrInfo *) &col->inputfn,
									 OutputFunctionCall((FmgrInfo *) &col->typmodoutfn, value),
									 col->ioparam, col->typmod);
		return value;
	}
	if (is_integer_type(atttype) && is_integer_type(col->typid))
	{
		int64		v = atttype == INT2OID ? DatumGetInt16(value) :
			atttype == INT4OID ? DatumGetInt32(value) : DatumGetInt64(value);

		if ((col->typid == INT2OID && (v < PG_INT16_MIN || v > PG_INT16_MAX)) ||
			(col->typid == INT4OID && (v < PG_INT32_MIN || v > PG_INT32_MAX)))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value \"" INT64_FORMAT "\" is out of range for type %s",
							v, format_type_be(col->typid))));
		return col->typid == INT2OID ? Int16GetDatum((int16) v) :
			col->typid == INT4OID ? Int32GetDatum((int32) v) : Int64GetDatum(v);
	}
	if (map->outfnoid[a] == InvalidOid)
	{
		bool		isvarlena;

		getTypeOutputInfo(atttype, &map->outfnoid[a], &isvarlena);
		fmgr_info_cxt(map->outfnoid[a], &map->outfn[a], GetMemoryChunkContext(map));
	}
	str = OutputFunctionCall(&map->outfn[a], value);
	return InputFunctionCall((FmgrInfo *) &col->inputfn, str, col->ioparam, col->typmod);
}

/* batch.c's conversion callback: the row's fields as the shape's columns */
static void
convert_row(const UcShape *shape, void *arg, Datum *values, bool *nulls)
{
	UcRowValues *rv = (UcRowValues *) arg;
	UcRowMap   *map = (UcRowMap *) rv->map;

	for (int i = 0; i < shape->ncols; i++)
	{
		int			a = map->attno[i];

		if (rv->isnull[a])
			values[i] = uc_null_to_datum(shape, i, &nulls[i]);
		else
		{
			values[i] = field_to_column(map, a, rv->values[a], &shape->cols[i]);
			nulls[i] = false;
		}
	}
}

/*
 * Add one input row of upsert_increment_rows() to a batch state.  *mapp
 * caches the mapping across rows, in cxt.
 */
void
uc_rows_add(UcBatchState *state, Oid relid, HeapTupleHeader td,
			ArrayType *const *roles, UcRowMap **mapp, MemoryContext cxt)
{
	UcRowMap   *map = *mapp;
	HeapTupleData tuple;
	UcRowValues rv;

	if (map == NULL || map->typid != HeapTupleHeaderGetTypeId(td) ||
		map->typmod != HeapTupleHeaderGetTypMod(td) || map->args.relid != relid ||
		!same_array(map->rolearrays[UC_DELTA], roles[UC_DELTA]) ||
		!same_array(map->rolearrays[UC_ASSIGN], roles[UC_ASSIGN]) ||
		!same_array(map->rolearrays[UC_ON_INSERT], roles[UC_ON_INSERT]))
		*mapp = map = build_map(cxt, relid, td, roles);

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;
	rv.map = map;
	rv.values = palloc(Max(map->tupdesc->natts, 1) * sizeof(Datum));
	rv.isnull = palloc(Max(map->tupdesc->natts, 1) * sizeof(bool));
	heap_deform_tuple(&tuple, map->tupdesc, rv.values, rv.isnull);

	uc_batch_add_with(state, &map->args, convert_row, &rv);
}
