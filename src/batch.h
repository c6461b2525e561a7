/*-------------------------------------------------------------------------
 *
 * batch.h
 *	  Accumulating rows: a batch state merges rows with equal keys and
 *	  writes them sorted (batch.c); rows arrive as jsonb arguments or as
 *	  typed records (rows.c).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_BATCH_H
#define UC_BATCH_H

#include "write.h"

#include "access/htup_details.h"
#include "utils/array.h"

typedef struct UcBatchState UcBatchState;
typedef struct UcRowMap UcRowMap;

/* Fills in one row's values for a shape (the typed path's conversion) */
typedef void (*UcConvertFn) (const UcShape *shape, void *arg, Datum *values,
							 bool *nulls);

extern UcBatchState *uc_batch_create(MemoryContext cxt, bool can_hold,
									 bool check_privileges);
extern int64 uc_batch_nkeys(const UcBatchState *state);
extern PGFunction uc_delta_add_fn(Oid basetypid);
extern void uc_batch_add_jsonb(UcBatchState *state, Oid relid, Jsonb *const *objs);
extern void uc_batch_add_with(UcBatchState *state, const UcArgs *args,
							  UcConvertFn convert, void *arg);
extern void uc_batch_merge(UcBatchState *dst, UcBatchState *src);
extern void uc_batch_write(UcBatchState *state, int64 *inserted, int64 *updated);

/* Takes the rows of one group of a state: n rows of entry's shape */
typedef void (*UcRowsSink) (const UcCacheEntry *entry, int64 n,
							UcRowIter next_row, void *iterarg, void *arg);
extern void uc_batch_drain(UcBatchState *state, UcRowsSink sink, void *arg);

/* rows.c */
extern void uc_rows_add(UcBatchState *state, Oid relid, HeapTupleHeader td,
						ArrayType *const *roles, UcRowMap **mapp,
						MemoryContext cxt);

#endif							/* UC_BATCH_H */
