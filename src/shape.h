/*-------------------------------------------------------------------------
 *
 * shape.h
 *	  A call's shape: its target and columns resolved against the
 *	  catalogs, with the arbiter index (shape.c), and the conversion of a
 *	  call's JSON values to the columns' types (values.c).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_SHAPE_H
#define UC_SHAPE_H

#include "args.h"

#include "fmgr.h"
#include "utils/sortsupport.h"
#include "utils/timestamp.h"

/* One column of a shape */
typedef struct UcColumn
{
	char	   *name;			/* catalog name, also the JSON name */
	AttrNumber	attnum;
	UcRole		role;
	Oid			typid;			/* column type, possibly a domain */
	int32		typmod;
	Oid			basetypid;		/* getBaseType(typid) */
	Oid			arraytypid;		/* InvalidOid if the type has none */
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Oid			ioparam;
	FmgrInfo	inputfn;
	FmgrInfo	typmodfn;		/* the type's length coercion to typmod, if
								 * the column has a typmod and the type one
								 * (fn_oid InvalidOid otherwise) */
	FmgrInfo	typmodoutfn;	/* an array of a type with a typmod: its
								 * output function, to apply the typmod to
								 * each element through the input function
								 * (fn_oid InvalidOid otherwise) */
	FmgrInfo	sendfn;			/* binary output and input, for background */
	FmgrInfo	recvfn;			/* mode's log (fn_oid InvalidOid if the type
								 * has none) */
	Oid			recvioparam;
} UcColumn;

/* How the statements tell inserted rows from updated ones (sqlgen.c) */
typedef enum UcCounting
{
	UC_COUNT_FLAG,				/* our flag functions: every plain target */
	UC_COUNT_XMAX,				/* RETURNING xmax = 0: a Citus table */
	UC_COUNT_CITUS_FLAG			/* immutable-declared flag functions with row
								 * arguments: a partitioned Citus table */
} UcCounting;

/*
 * A shape: one target table and one set of column names per role, resolved
 * against the catalogs.  Built by uc_shape_build() in the given context.
 */
typedef struct UcShape
{
	Oid			relid;
	char	   *nspname;
	uint32		nsphash;		/* its NAMESPACEOID syscache hash */
	char	   *relname;
	Oid			arbiter;		/* the arbiter index */
	char	   *arbitername;
	Oid			arbiter_constraint; /* its constraint, or InvalidOid */
	char	   *constraintname;
	bool		nulls_not_distinct;
	int			ncols;
	int			nrole[UC_NROLES];
	int			rolestart[UC_NROLES];	/* index of the role's first column */
	UcColumn   *cols;			/* role by role, in jsonb name order */
	int			nkeys;			/* = nrole[UC_KEY] */
	int		   *keyorder;		/* cols[] index of the arbiter's i'th key */
	Oid		   *keyopfamily;	/* per arbiter key column, index order */
	Oid		   *keycollation;
	Oid		   *keyopclass;
	SortSupportData *keysort;
	bool		batchable;		/* every column has an array type */
	UcCounting	counting;		/* how inserts are told from updates */
	bool		distributed;	/* a Citus table (citus.c): custom plans */
} UcShape;

extern UcShape *uc_shape_build(const UcArgs *args, MemoryContext cxt);
extern bool uc_shape_compatible(const UcShape *a, const UcShape *b);
extern void uc_shape_check_privileges(const UcShape *shape, Oid userid);

/* values.c */
#define UC_MEMO_LEN 64
typedef struct UcValueMemo		/* the last string converted for a column */
{
	bool		valid;
	int			len;
	Datum		value;			/* by-value types only */
	TimestampTz stmt;			/* the statement it was made in */
	int			datestyle;		/* the settings it was made under */
	int			dateorder;
	int			intervalstyle;
	const void *timezone;
	char		str[UC_MEMO_LEN];
} UcValueMemo;

extern const char *uc_json_type_name(const JsonbValue *v);
extern Datum uc_value_to_datum(const UcShape *shape, int col,
							   const JsonbValue *v, bool *isnull,
							   UcValueMemo *memo);
extern Datum uc_null_to_datum(const UcShape *shape, int col, bool *isnull);

#endif							/* UC_SHAPE_H */
