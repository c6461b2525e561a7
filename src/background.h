/*-------------------------------------------------------------------------
 *
 * background.h
 *	  Background mode (upsert_counter.flush = 'background'): calls append
 *	  their rows to a log (deltalog.c), and a fold merges them per key and
 *	  writes them to their targets later (fold.c), in a background worker
 *	  or in upsert_counter_fold().
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_BACKGROUND_H
#define UC_BACKGROUND_H

#include "buffer.h"

/* Settings (fold.c; upsert_counter.c defines them as GUCs) */
extern bool uc_fold_worker_enabled; /* upsert_counter.fold_worker */
extern int	uc_fold_interval;		/* upsert_counter.fold_interval, ms */
extern int	uc_fold_batch_size;		/* upsert_counter.fold_batch_size */
extern int	uc_fold_idle_exit;		/* upsert_counter.fold_idle_exit, s */

/*
 * The log's columns, in the order of the table and of every query that
 * reads it (UC_LOG_COLUMNS)
 */
#define UC_LOG_ID			1
#define UC_LOG_TARGET		2
#define UC_LOG_CALLER		3
#define UC_LOG_CALLER_NAME	4
#define UC_LOG_NAMES		5
#define UC_LOG_NROLE		6
#define UC_LOG_TYPES		7
#define UC_LOG_VALS			8
#define UC_LOG_LOGGED_AT	9
#define UC_LOG_NATTS		9
#define UC_LOG_COLUMNS \
	"id, target, caller, caller_name, names, nrole, types, vals, logged_at"

/*
 * A row of the log, deformed (values in UC_LOG_* order, less one), and its
 * ctid where the query read it after UC_LOG_COLUMNS
 */
typedef struct UcLogTuple
{
	Datum		values[UC_LOG_NATTS + 1];
	ItemPointerData ctid;
} UcLogTuple;

/* A row of the log, decoded */
typedef struct UcLoggedRow
{
	int64		id;
	Oid			target;
	Oid			caller;			/* as logged: see fold_caller() */
	TimestampTz logged_at;
	UcArgs		args;			/* names per role, and the cache key */
	Oid		   *types;			/* per column: the value's type when logged */
	bytea	  **vals;			/* per column: its binary form, or NULL */
	Datum		rawnames;		/* the shape's arrays as logged, to tell */
	Datum		rawnrole;		/* whether the next row has the same */
	Datum		rawtypes;
} UcLoggedRow;

/* deltalog.c */
extern void uc_background_init(void);
extern void uc_background_xact_event(XactEvent event);
extern void uc_log_jsonb(Oid relid, Jsonb *const *objs);
extern int64 uc_log_batch(UcBatchState *state);
extern Oid	uc_log_relid(void);
extern Oid	uc_log_owner(void);
extern const char *uc_log_table(const char *name);
extern int	uc_log_query(const char *sql, int nargs, Oid *argtypes, Datum *params,
						 const char *nulls, bool read_only);
extern void uc_log_deform(HeapTuple tuple, TupleDesc desc, UcLogTuple *lt);
extern void uc_log_decode(const UcLogTuple *lt, UcLoggedRow *row,
						  const UcLoggedRow *prev, MemoryContext shapecxt);
extern int	uc_log_execute(SPIPlanPtr plan, Datum *params, const char *nulls,
						   bool read_only);
extern Datum uc_log_value(const UcShape *shape, int col, const UcLoggedRow *row,
						  bool *isnull);
extern Datum uc_log_read(Oid relid, Jsonb *keys, bool *isnull);
extern void uc_log_sql_drop(void);
extern void uc_run_restricted_as(Oid userid, void (*fn) (void *), void *arg);

/* fold.c */
extern void uc_fold_ensure_worker(void);
extern Jsonb *uc_fold_now(Oid target);
extern int64 uc_fold_discard(Oid target);
extern PGDLLEXPORT void upsert_counter_fold_main(Datum arg);

#endif							/* UC_BACKGROUND_H */
