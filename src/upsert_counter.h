/*-------------------------------------------------------------------------
 *
 * upsert_counter.h
 *	  Declarations shared by the upsert_counter source files.
 *
 * The extension turns a call such as
 *
 *		upsert_increment('ab_hourly', '{"id":7,"hour":13}', '{"n":1}')
 *
 * into an execution of a cached INSERT ... ON CONFLICT DO UPDATE plan.  The
 * pieces are:
 *
 *	args.c		reads the four jsonb arguments into a UcArgs (column names
 *				per role, in jsonb order, and their values)
 *	shape.c		resolves names against the catalogs into a UcShape:
 *				attributes, types, input functions and the arbiter index
 *				(the rules of core's infer_arbiter_indexes())
 *	values.c	converts JSON values to Datums of the column types
 *	plan_cache.c	the per-backend cache of shapes and their SPI plans,
 *				SQL generation, invalidation and eviction
 *	execute.c	running the plans, one row or sorted chunks of a batch
 *	batch.c		the aggregate's state: merging rows with equal keys and
 *				writing them sorted, in chunks
 *	flush.c		commit mode: the per-transaction buffer, savepoints, and
 *				the write just before commit
 *	upsert_counter.c	module init, GUCs and the SQL-callable functions
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UPSERT_COUNTER_H
#define UPSERT_COUNTER_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "utils/jsonb.h"
#include "utils/sortsupport.h"

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
 * The statement forms we prepare for one shape.  Each is a separate SPI
 * plan in the cache entry.
 */
typedef enum UcForm
{
	UC_FORM_SINGLE = 0,			/* one row, VALUES ($1, ...) */
	UC_FORM_BATCH,				/* many rows, unnest($1::t[], ...) */
	UC_FORM_RETURNING,			/* one row, RETURNING the whole row */
	UC_FORM_LOOKUP,				/* SELECT the row by key (get-or-create) */
	UC_NFORMS
} UcForm;

extern const char *const uc_form_names[UC_NFORMS];

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
	char	  **names;			/* not NUL-terminated: see namelens */
	int		   *namelens;
	JsonbValue *values;
	uint64		nameshash;		/* hash over roles and names */
} UcArgs;

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
} UcColumn;

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
	SortSupportData *keysort;	/* per arbiter key column, index order */
	bool		batchable;		/* every column has an array type */
} UcShape;

/* A cache entry: a shape and the plans prepared for it */
typedef struct UcCacheEntry
{
	/* hash key: must be first */
	struct UcCacheKey
	{
		Oid			relid;
		uint32		pad;
		uint64		nameshash;
	}			key;
	MemoryContext cxt;			/* holds shape; child of the cache context */
	UcShape    *shape;
	bool		valid;			/* false once an invalidation hit it */
	int			pins;			/* executions under way */
	SPIPlanPtr	plans[UC_NFORMS];
	uint64		calls[UC_NFORMS];
	dlist_node	lru;
} UcCacheEntry;

typedef struct UcCacheKey UcCacheKey;

/* GUCs */
typedef enum UcFlushMode
{
	UC_FLUSH_STATEMENT,
	UC_FLUSH_COMMIT
} UcFlushMode;

extern int	uc_cache_size;
extern int	uc_batch_size;
extern int	uc_flush_mode;
extern int	uc_flush_limit;

/* args.c */
extern void uc_args_read(UcArgs *args, Oid relid, Jsonb *const *objs);
extern bool uc_args_match_shape(const UcArgs *args, const UcShape *shape);

/* shape.c */
extern UcShape *uc_shape_build(const UcArgs *args, MemoryContext cxt);

/* values.c */
#define UC_MEMO_LEN 64
typedef struct UcValueMemo		/* the last string converted for a column */
{
	bool		valid;
	int			len;
	Datum		value;			/* by-value types only */
	char		str[UC_MEMO_LEN];
} UcValueMemo;

extern const char *uc_json_type_name(const JsonbValue *v);
extern Datum uc_value_to_datum(const UcShape *shape, int col,
							   const JsonbValue *v, bool *isnull,
							   UcValueMemo *memo);

/* plan_cache.c */
extern void uc_cache_init(void);
extern UcCacheEntry *uc_cache_lookup(const UcArgs *args);
extern SPIPlanPtr uc_cache_plan(UcCacheEntry *entry, UcForm form);
extern void uc_cache_pin(UcCacheEntry *entry);
extern void uc_cache_unpin(UcCacheEntry *entry);
extern void uc_cache_reset(void);
extern Datum uc_cache_report(FunctionCallInfo fcinfo);
extern void uc_lock_target(Oid relid);

/* execute.c */
typedef void (*UcRowIter) (void *arg, const Datum **values, const bool **isnull);
extern void uc_note_update(void);
extern bool uc_upsert_one(const UcArgs *args, UcForm form, Datum *row);
extern void uc_execute_rows(UcCacheEntry *entry, const UcShape *shape, int64 n,
							UcRowIter next_row, void *iterarg,
							int64 *inserted, int64 *updated);

/* batch.c */
typedef struct UcBatchState UcBatchState;
extern UcBatchState *uc_batch_create(MemoryContext cxt, bool can_hold);
extern int64 uc_batch_nkeys(const UcBatchState *state);
extern void uc_batch_merge(UcBatchState *dst, UcBatchState *src);
extern void uc_batch_add_jsonb(UcBatchState *state, Oid relid, Jsonb *const *objs);
extern void uc_batch_flush(UcBatchState *state, int64 *inserted,
						   int64 *updated);

/* flush.c */
extern void uc_flush_init(void);
extern void uc_defer_row(Oid relid, Jsonb *const *objs);
extern bool uc_flush_pending(int64 *inserted, int64 *updated);

#endif							/* UPSERT_COUNTER_H */
