/*-------------------------------------------------------------------------
 *
 * write.h
 *	  Writing rows through a shape's statements and counting what they did
 *	  (execute.c): one row, or merged rows in key order, in chunks.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_WRITE_H
#define UC_WRITE_H

#include "cache.h"

#include "access/xact.h"

/* upsert_counter.batch_size: rows per statement */
extern int	uc_batch_size;

/* The source of the rows uc_write_rows() writes: one row per call */
typedef void (*UcRowIter) (void *arg, const Datum **values, const bool **isnull);

extern void uc_write_one(const UcArgs *args, UcForm form, Datum *row,
						 int64 *inserted, int64 *updated);
extern void uc_write_rows(const UcCacheEntry *held, int64 n,
						  UcRowIter next_row, void *iterarg,
						  int64 *inserted, int64 *updated);

extern Datum uc_row_to_jsonb(Oid relid, TupleDesc rowdesc, HeapTuple tuple);

/* the counting flag the generated statements keep (sqlgen.c) */
extern void uc_write_xact_event(XactEvent event);
extern void uc_write_subxact_event(SubXactEvent event);
extern void uc_note_row(void);
extern void uc_note_update(void);
extern bool uc_take_update(void);

#endif							/* UC_WRITE_H */
