/*-------------------------------------------------------------------------
 *
 * buffer.h
 *	  Commit mode (upsert_counter.flush = 'commit'): the per-transaction
 *	  buffer of rows, written just before commit (buffer.c).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_BUFFER_H
#define UC_BUFFER_H

#include "batch.h"

/* upsert_counter.flush: when a call writes */
typedef enum UcFlushMode
{
	UC_FLUSH_STATEMENT,			/* in the calling statement */
	UC_FLUSH_COMMIT,			/* buffered, written just before commit */
	UC_FLUSH_BACKGROUND			/* logged, folded in later (background.h) */
} UcFlushMode;

extern int	uc_flush_mode;

/* upsert_counter.flush_limit: distinct keys buffered before an early write */
extern int	uc_buffer_limit;

extern void uc_buffer_xact_event(XactEvent event);
extern void uc_buffer_subxact_event(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid);
extern void uc_buffer_add_jsonb(Oid relid, Jsonb *const *objs);
extern void uc_buffer_add_record(Oid relid, HeapTupleHeader td,
								 ArrayType *const *roles, UcRowMap **mapp,
								 MemoryContext cxt);
extern bool uc_buffer_write(int64 *inserted, int64 *updated);
extern void uc_deferred_checks(Oid relid, Oid *userid, int *secctx);

#endif							/* UC_BUFFER_H */
