/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Reading the jsonb arguments of a call into a UcArgs.
 *
 * This file owns the first step of every call: it checks that keys,
 * deltas, assign and on_insert are JSON objects, and lists their member
 * names and values role by role, in jsonb's own key order (jsonb stores
 * object keys sorted, so the same set of names always comes out in the
 * same order).  It also computes the hash of the roles and names that the
 * plan cache is keyed by, so that the hot path finds its shape without
 * touching the catalogs.
 *
 * Nothing here is copied: names and values point into the jsonb arguments,
 * which live as long as the call.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/jsonb.h"

#include "upsert_counter.h"

const char *const uc_role_arg_names[UC_NROLES] = {
	"keys", "deltas", "assign", "on_insert"
};

/* "array", "object", or the scalar's type, for error details */
static const char *
jsonb_kind_name(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &v))
		return uc_json_type_name(&v);
	return JB_ROOT_IS_ARRAY(jb) ? "array" : "object";
}

/*
 * Read the four role objects.  objs[r] may be NULL for a role the call does
 * not use (SQL NULL assign or on_insert); the caller has already refused a
 * NULL keys or deltas.
 */
void
uc_args_read(UcArgs *args, Oid relid, Jsonb *const *objs)
{
	uint64		hash = 0;

	args->relid = relid;
	args->ncols = 0;

	for (int r = 0; r < UC_NROLES; r++)
	{
		Jsonb	   *jb = objs[r];
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			n;

		args->nrole[r] = 0;
		if (jb == NULL)
			continue;

		if (!JB_ROOT_IS_OBJECT(jb))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("argument \"%s\" must be a JSON object",
							uc_role_arg_names[r]),
					 errdetail("The value given is a JSON %s.", jsonb_kind_name(jb)),
					 errhint("Pass an object that maps column names to values, such as '{\"hits\": 1}'.")));

		n = JB_ROOT_COUNT(jb);
		if (n == 0)
			continue;

		if (args->ncols + n > args->maxcols)
		{
			int			newmax = Max(args->maxcols * 2, args->ncols + n);

			if (args->maxcols == 0)
			{
				args->names = palloc(newmax * sizeof(char *));
				args->namelens = palloc(newmax * sizeof(int));
				args->values = palloc(newmax * sizeof(JsonbValue));
			}
			else
			{
				args->names = repalloc(args->names, newmax * sizeof(char *));
				args->namelens = repalloc(args->namelens, newmax * sizeof(int));
				args->values = repalloc(args->values, newmax * sizeof(JsonbValue));
			}
			args->maxcols = newmax;
		}

		it = JsonbIteratorInit(&jb->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				int			i = args->ncols;

				args->names[i] = v.val.string.val;
				args->namelens[i] = v.val.string.len;
				hash = hash_combine64(hash,
									  hash_bytes_extended((const unsigned char *) v.val.string.val,
														  v.val.string.len, r + 1));
			}
			else if (tok == WJB_VALUE)
			{
				args->values[args->ncols++] = v;
				args->nrole[r]++;
			}
		}
		hash = hash_combine64(hash, (uint64) args->nrole[r] << (8 * r));
	}
	args->nameshash = hash;
}

/*
 * Does this call name exactly the columns, in the same roles, that the shape
 * was built from?  A hash match is not proof; this is.
 */
bool
uc_args_match_shape(const UcArgs *args, const UcShape *shape)
{
	if (args->relid != shape->relid || args->ncols != shape->ncols)
		return false;
	for (int r = 0; r < UC_NROLES; r++)
		if (args->nrole[r] != shape->nrole[r])
			return false;
	for (int i = 0; i < args->ncols; i++)
	{
		const char *name = shape->cols[i].name;

		if (strncmp(name, args->names[i], args->namelens[i]) != 0 ||
			name[args->namelens[i]] != '\0')
			return false;
	}
	return true;
}
