/*-------------------------------------------------------------------------
 *
 * args.h
 *	  The call and its arguments: column names per role and their JSON
 *	  values, and the exact key a call's shape is cached by (args.c).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_ARGS_H
#define UC_ARGS_H

#include "compat.h"

#include "utils/jsonb.h"

/* The role a column plays in a call; also the order of the jsonb arguments */
typedef enum UcRole
{
	UC_KEY = 0,
	UC_DELTA,
	UC_ASSIGN,
	UC_ON_INSERT,
	UC_NROLES
} UcRole;

extern const char *const uc_role_arg_names[UC_NROLES];

/*
 * The arguments of one call, as read from the jsonb objects.  Names and
 * values are in jsonb's own key order, role by role.  Everything points into
 * the jsonb arguments or the current memory context.
 */
typedef struct UcArgs
{
	Oid			relid;
	int			nrole[UC_NROLES];
	int			ncols;
	int			maxcols;
	const char **names;			/* not NUL-terminated: see namelens */
	int		   *namelens;
	JsonbValue *values;
	/* the cache key: the role and name of every column, exactly */
	char	   *namekey;
	int			namekeylen;
	uint32		hash;			/* over relid and namekey */
} UcArgs;

extern void uc_args_read(UcArgs *args, Oid relid, Jsonb *const *objs);
extern void uc_args_set_key(UcArgs *args, Oid relid);

#endif							/* UC_ARGS_H */
