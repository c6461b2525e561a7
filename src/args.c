/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Reading the jsonb arguments of a call into a UcArgs.
 *
 * This file owns the first step of every call: it checks that keys,
 * deltas, assign and on_insert are JSON objects, and lists their member
 * names and values role by role, in jsonb's own key order (jsonb stores
 * object keys sorted, so the same set of names always comes out in the
 * same order).  It also builds the key the plan cache is looked up by: the
 * role and the exact name of every column, so that the hot path finds its
 * shape without touching the catalogs and two shapes can never share an
 * entry, whatever their hash.
 *
 * Names and values point into the jsonb arguments, which live as long as
 * the call; the key is allocated in the current memory context.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/jsonb.h"

#include "shape.h"

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
				args->names[args->ncols] = v.val.string.val;
				args->namelens[args->ncols] = v.val.string.len;
			}
			else if (tok == WJB_VALUE)
			{
				args->values[args->ncols++] = v;
				args->nrole[r]++;
			}
		}
	}

	uc_args_set_key(args, relid);
}

/*
 * The cache key of a call whose names and roles are set: for each column
 * its role (1 to 4), its name and a NUL.  Names cannot contain NUL
 * (neither jsonb strings nor identifiers can), so the key spells out the
 * roles and names unambiguously.
 */
void
uc_args_set_key(UcArgs *args, Oid relid)
{
	int			keylen = 0;
	char	   *p;

	args->relid = relid;
	for (int i = 0; i < args->ncols; i++)
		keylen += args->namelens[i] + 2;
	args->namekey = p = palloc(Max(keylen, 1));
	for (int r = 0, i = 0; r < UC_NROLES; r++)
	{
		for (int j = 0; j < args->nrole[r]; j++, i++)
		{
			*p++ = (char) (r + 1);
			memcpy(p, args->names[i], args->namelens[i]);
			p += args->namelens[i];
			*p++ = '\0';
		}
	}
	args->namekeylen = keylen;
	args->hash = hash_combine(hash_bytes_uint32(relid),
							  hash_bytes((const unsigned char *) args->namekey, keylen));
}
