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
 *				per role, in jsonb order, their values, and the exact key
 *				the cache is looked up by)
 *	shape.c		resolves names against the catalogs into a UcShape:
 *				attributes, types, input functions and the arbiter index
 *				(the rules of core's infer_arbiter_indexes())
 *	values.c	converts JSON values to Datums of the column types
 *	cache.c		the per-backend cache of shapes and their SPI plans: the
 *				one acquire/release pair, invalidation, eviction
 *	sqlgen.c	the text of the generated statements
 *	fastpath.c	the planner hook that runs a FROM-less call of the
 *				aggregate as a plain function call
 *	execute.c	running the plans, one row or sorted chunks of a batch,
 *				and counting what they did
 *	rows.c		the typed input path: rows as records whose field names
 *				are column names (upsert_increment_rows)
 *	batch.c		the aggregate's state: merging rows with equal keys and
 *				writing them sorted, in chunks
 *	flush.c		commit mode: the per-transaction buffer, its owners
 *				(user, security context, subtransaction), and the write
 *				just before commit; the only transaction callbacks
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
#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/sortsupport.h"
#include "utils/timestamp.h"

#if PG_VERSION_NUM >= 160000
#define uc_proc_aclcheck(proc, user, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (user), (mode))
#else
#define uc_proc_aclcheck(proc, user, mode) pg_proc_aclcheck((proc), (user), (mode))
#endif

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
	const char **names;			/* not NUL-terminated: see namelens */
	int		   *namelens;
	JsonbValue *values;
	/* the cache key: the role and name of every column, exactly */
	char	   *namekey;
	int			namekeylen;
	uint32		hash;			/* over relid and namekey */
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
	FmgrInfo	typmodfn;		/* the type's length coercion to typmod, if
								 * the column has a typmod and the type one
								 * (fn_oid InvalidOid otherwise) */
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
	Oid		   *keyopfamily;	/* per arbiter key column, index order */
	Oid		   *keycollation;
	Oid		   *keyopclass;
	RegProcedure *keyeqproc;	/* the arbiter's equality, per key column */
	SortSupportData *keysort;
	bool		batchable;		/* every column has an array type */
	bool		count_by_xmax;	/* RETURNING xmax = 0 tells inserts apart */
	bool		distributed;	/* a Citus table (shape.c): custom plans */
} UcShape;

/*
 * A cache entry: a shape and the plans prepared for it.  Allocated in its
 * own memory context, with everything it owns but the kept plans.  See
 * cache.c for its life: an entry is used only between uc_cache_acquire()
 * and uc_cache_release(), and is never freed while pinned.
 */
typedef struct UcCacheEntry
{
	Oid			relid;
	char	   *namekey;		/* as UcArgs.namekey */
	int			namekeylen;
	uint32		hash;
	MemoryContext cxt;
	UcShape    *shape;
	bool		valid;			/* false once an invalidation hit it */
	bool		detached;		/* out of the cache; freed at its last release */
	int			pins;			/* holders: uc_cache_acquire() calls not released */
	int			running;		/* executions of its plans under way */
	SPIPlanPtr	plans[UC_NFORMS];
	uint64		calls[UC_NFORMS];
	dlist_node	node;			/* LRU list, or the list of entries to free */
} UcCacheEntry;

/*
 * A holder's claim on an entry: taken by uc_cache_acquire(), given back by
 * uc_cache_release() exactly once (a second release is a no-op).
 */
typedef struct UcPin
{
	UcCacheEntry *entry;
} UcPin;

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
extern void uc_args_set_key(UcArgs *args, Oid relid);
extern void uc_args_from_entry(UcArgs *args, const UcCacheEntry *entry);
extern bool uc_args_same_key(const UcArgs *args, const UcCacheEntry *entry);

/* shape.c */
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

/* cache.c */
extern void uc_cache_init(void);
extern UcCacheEntry *uc_cache_acquire(const UcArgs *args, UcPin *pin);
extern void uc_cache_release(UcPin *pin);
extern void uc_cache_share(const UcPin *held, UcPin *pin);
extern SPIPlanPtr uc_cache_plan(UcCacheEntry *entry, UcForm form);
extern void uc_cache_reset(void);
extern Datum uc_cache_report(FunctionCallInfo fcinfo);

/* sqlgen.c */
extern Oid	uc_extension_schema(bool missing_ok);
extern char *uc_sql_build(const UcShape *shape, UcForm form, Oid *argtypes,
						  int *nargs);

/* execute.c */
typedef void (*UcRowIter) (void *arg, const Datum **values, const bool **isnull);
extern void uc_note_row(void);
extern void uc_note_update(void);
extern bool uc_take_update(void);
extern void uc_upsert_one(const UcArgs *args, UcForm form, Datum *row,
						  int64 *inserted, int64 *updated);
/* citus.c */
typedef struct UcShardMap
{
	int			col;			/* the distribution column: index into cols */
	FmgrInfo	hashfn;			/* its type's default hash function */
	Oid			collation;
	int			nshards;
	int32	   *ranges;			/* nshards (min, max) pairs, sorted */
} UcShardMap;

extern bool uc_citus_table(Oid relid);
extern UcShardMap *uc_citus_shard_map(const UcShape *shape);
extern int	uc_citus_shard_of(const UcShardMap *map, Datum value, bool isnull);

extern void uc_execute_rows(const UcCacheEntry *held, int64 n,
							UcRowIter next_row, void *iterarg,
							int64 *inserted, int64 *updated);

/* batch.c */
typedef struct UcBatchState UcBatchState;
extern UcBatchState *uc_batch_create(MemoryContext cxt, bool can_hold,
									 bool check_privileges);
extern int64 uc_batch_nkeys(const UcBatchState *state);
extern void uc_batch_merge(UcBatchState *dst, UcBatchState *src);
extern void uc_batch_add_jsonb(UcBatchState *state, Oid relid, Jsonb *const *objs);
typedef void (*UcConvertFn) (const UcShape *shape, void *arg, Datum *values,
							 bool *nulls);
extern void uc_batch_add_with(UcBatchState *state, const UcArgs *args,
							  UcConvertFn convert, void *arg);

/* rows.c */
typedef struct UcRowMap UcRowMap;
extern void uc_rows_add(UcBatchState *state, Oid relid, HeapTupleHeader td,
						ArrayType *const *roles, UcRowMap **mapp,
						MemoryContext cxt);
extern void uc_batch_flush(UcBatchState *state, int64 *inserted,
						   int64 *updated);

/* fastpath.c */
extern void uc_fastpath_init(void);
extern void uc_fastpath_check_call(Oid called_as);

/* flush.c */
extern void uc_flush_init(void);
extern void uc_defer_row(Oid relid, Jsonb *const *objs);
extern void uc_defer_record(Oid relid, HeapTupleHeader td, ArrayType *const *roles,
							UcRowMap **mapp, MemoryContext cxt);
extern bool uc_flush_pending(int64 *inserted, int64 *updated);

#endif							/* UPSERT_COUNTER_H */
