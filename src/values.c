/*-------------------------------------------------------------------------
 *
 * values.c
 *	  Converting the JSON values of a call to Datums of the column types.
 *
 * This file owns the rules by which a JSON value becomes a column value:
 *
 *	- JSON null is SQL NULL; refused for a delta (it would null the counter)
 *	  and for a key under a NULLS DISTINCT arbiter (it would never conflict,
 *	  so every call would insert a new row);
 *	- a string goes through the column type's input function, with the
 *	  column's typmod, so dates, timestamps, uuids, enums and domains work and
 *	  a bad value raises the type's own error;
 *	- a number goes into a numeric column as it is, an integral number into
 *	  an integer column directly, and anything else through the input
 *	  function of its text, so 1.5 into an integer column is the integer
 *	  type's own "invalid input syntax" error, never a silent rounding;
 *	- true and false go through the input function as "true" and "false";
 *	- into a json or jsonb column, any value goes in as JSON, as given;
 *	  nested objects and arrays go into other types as their JSON text.
 *
 * A delta must be a JSON number.
 *
 * A JSON null into a domain column goes through the domain's input function
 * too, so that its NOT NULL and CHECK constraints apply as in an INSERT.
 *
 * Within one statement, a per-column memo remembers the last string
 * converted for a by-value base type whose input function is a plain
 * function of its text and of the date and time settings (dates and hours
 * repeat across a batch).  A memo is used only in the statement that made
 * it and under the same DateStyle, IntervalStyle and TimeZone: a volatile
 * function in the input may change them mid-statement.  Domains are never
 * memoized, so their checks run for every value.
 *
 * Results are allocated in the current memory context.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "shape.h"

/* The JSON type of a value, for error details */
const char *
uc_json_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		default:
			return "object or array";
	}
}

/* The JSON text of a value, for json and jsonb columns and nested values */
static char *
json_text(const JsonbValue *v)
{
	StringInfoData buf;

	if (v->type == jbvBinary)
	{
		initStringInfo(&buf);
		return JsonbToCString(&buf, v->val.binary.data, v->val.binary.len);
	}
	return JsonbToCString(NULL, &JsonbValueToJsonb((JsonbValue *) v)->root, 0);
}

/*
 * An integer column from a JSON number, without the text round trip when
 * the number is integral (display scale 0).  Out of range is the same error
 * the type's input function gives.  Returns false to take the generic path.
 */
static bool
integer_from_numeric(const UcColumn *col, Numeric num, Datum *result)
{
	int64		v;
	bool		fits;

	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(num))) != 0)
		return false;			/* 1.5, or 1.0: let the input function decide */
	if (col->typid != INT8OID)
	{
		bool		err = false;

		/* outside int4: the column type's own out-of-range error below */
		v = numeric_int4_opt_error(num, &err);
		if (err)
			v = PG_INT64_MAX;
	}
	else
		v = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(num)));
	switch (col->typid)
	{
		case INT2OID:
			fits = (v >= PG_INT16_MIN && v <= PG_INT16_MAX);
			*result = Int16GetDatum((int16) v);
			break;
		case INT4OID:
			fits = (v >= PG_INT32_MIN && v <= PG_INT32_MAX);
			*result = Int32GetDatum((int32) v);
			break;
		default:
			fits = true;
			*result = Int64GetDatum(v);
			break;
	}
	if (!fits)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value \"%s\" is out of range for type %s",
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num))),
						format_type_be(col->typid))));
	return true;
}

/*
 * By-value base types whose input depends on the text and at most on the
 * date and time settings a memo records (not money: lc_monetary).
 */
static bool
memoizable(const UcColumn *col)
{
	switch (col->typid)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case OIDOID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return true;
		default:
			return false;
	}
}

static bool
memo_current(const UcValueMemo *memo)
{
	return memo->stmt == GetCurrentStatementStartTimestamp() &&
		memo->datestyle == DateStyle &&
		memo->dateorder == DateOrder &&
		memo->intervalstyle == IntervalStyle &&
		memo->timezone == session_timezone;
}

/*
 * A NULL for column i: refused for a delta, and for a key under a NULLS
 * DISTINCT arbiter; into a domain it goes through the domain's input, so
 * its NOT NULL and CHECK constraints see it.
 */
Datum
uc_null_to_datum(const UcShape *shape, int i, bool *isnull)
{
	const UcColumn *col = &shape->cols[i];

	if (col->role == UC_DELTA)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("delta for column \"%s\" is null", col->name),
				 errhint("Pass a number such as 1 or -2.5.")));
	if (col->role == UC_KEY && !shape->nulls_not_distinct)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key column \"%s\" is null", col->name),
				 errdetail("Unique index \"%s\" treats NULL values as distinct, so a row with a NULL key never conflicts and every call would insert a new row.",
						   shape->arbitername),
				 errhint("Pass a non-null key value, or declare the unique index NULLS NOT DISTINCT.")));
	*isnull = true;
	if (col->typid != col->basetypid)
		return InputFunctionCall((FmgrInfo *) &col->inputfn, NULL,
								 col->ioparam, col->typmod);
	return (Datum) 0;
}

Datum
uc_value_to_datum(const UcShape *shape, int i, const JsonbValue *v,
				  bool *isnull, UcValueMemo *memo)
{
	const UcColumn *col = &shape->cols[i];
	char	   *str;
	Datum		result;

	*isnull = false;

	if (col->role == UC_DELTA && v->type != jbvNumeric)
		ereport(ERROR,
				(v->type == jbvNull ?
				 errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED) :
				 errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delta for column \"%s\" must be a JSON number", col->name),
				 errdetail("The value given is a JSON %s.", uc_json_type_name(v)),
				 errhint("Pass a number such as 1 or -2.5; use {} as deltas to only make sure the row exists.")));

	if (v->type == jbvNull)
		return uc_null_to_datum(shape, i, isnull);

	if (col->basetypid == JSONBOID || col->basetypid == JSONOID)
		str = json_text(v);
	else
	{
		switch (v->type)
		{
			case jbvString:
				/* text needs no parsing: build it directly */
				if (col->typid == TEXTOID)
					return PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
																	v->val.string.len));

				/* the same string as the last one, under the same settings */
				if (memo != NULL && memo->valid &&
					memo->len == v->val.string.len &&
					memcmp(memo->str, v->val.string.val, memo->len) == 0 &&
					memo_current(memo))
					return memo->value;
				str = pnstrdup(v->val.string.val, v->val.string.len);
				break;
			case jbvNumeric:
				if (col->typid == NUMERICOID && col->typmod < 0)
					return NumericGetDatum(v->val.numeric);
				if ((col->typid == INT2OID || col->typid == INT4OID || col->typid == INT8OID) &&
					integer_from_numeric(col, v->val.numeric, &result))
					return result;
				str = DatumGetCString(DirectFunctionCall1(numeric_out,
														  NumericGetDatum(v->val.numeric)));
				break;
			case jbvBool:
				str = v->val.boolean ? "true" : "false";
				break;
			default:
				str = json_text(v);
				break;
		}
	}

	result = InputFunctionCall((FmgrInfo *) &col->inputfn, str, col->ioparam,
							   col->typmod);

	if (memo != NULL && v->type == jbvString && memoizable(col) &&
		v->val.string.len <= UC_MEMO_LEN)
	{
		memcpy(memo->str, v->val.string.val, v->val.string.len);
		memo->len = v->val.string.len;
		memo->value = result;
		memo->stmt = GetCurrentStatementStartTimestamp();
		memo->datestyle = DateStyle;
		memo->dateorder = DateOrder;
		memo->intervalstyle = IntervalStyle;
		memo->timezone = session_timezone;
		memo->valid = true;
	}
	return result;
}
