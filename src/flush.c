/*-------------------------------------------------------------------------
 *
 * flush.c
 *	  Commit-time flush: the per-transaction buffer of upsert_counter.flush
 *	  = commit.
 *
 * This file owns the buffer that upsert_increment() fills instead of
 * writing when upsert_counter.flush is 'commit', and its fate at every
 * transaction boundary:
 *
 *	- The buffer is a list of batch states (batch.c), one per subtransaction
 *	  level that buffered rows, each allocated in that subtransaction's
 *	  CurTransactionContext, so that its memory goes with it on abort.
 *	- Releasing a savepoint hands the level's buffers to the parent (their
 *	  memory already survives: a committed subtransaction's context lives on
 *	  until its parent ends).  Rolling back to it drops them.
 *	- Writing (upsert_counter_flush(), the size limit, commit) merges every
 *	  pending buffer, later rows counting as later, and writes the result
 *	  sorted by key, one statement per chunk, like a batch.  The buffers are
 *	  not freed but marked as written in the current subtransaction: if that
 *	  subtransaction rolls back, its writes are undone and the buffers are
 *	  pending again, so no increment is lost or counted twice.
 *	- Just before commit (and before PREPARE TRANSACTION) the pending
 *	  buffers are written.  PostgreSQL has fired deferred triggers by then,
 *	  so we fire those our writes queued (deferred constraint checks on the
 *	  counter table), looping until neither is left.  An error aborts the
 *	  commit.
 *	- Abort discards everything; nothing survives the transaction.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "upsert_counter.h"

typedef struct UcBuffer
{
	UcBatchState *state;
	SubTransactionId owner;		/* whose rows these are */
	SubTransactionId written_in;	/* 0 while pending */
} UcBuffer;

static UcBuffer *uc_buffers = NULL;	/* in TopTransactionContext */
static int	uc_nbuffers = 0;
static int	uc_maxbuffers = 0;

static bool
buffer_pending(const UcBuffer *b)
{
	return b->written_in == InvalidSubTransactionId;
}

/* Distinct keys waiting to be written */
static int64
pending_keys(void)
{
	int64		n = 0;

	for (int i = 0; i < uc_nbuffers; i++)
		if (buffer_pending(&uc_buffers[i]))
			n += uc_batch_nkeys(uc_buffers[i].state);
	return n;
}

/* The buffer that rows of the current subtransaction go into */
static UcBatchState *
current_buffer(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	UcBuffer   *b;

	if (uc_nbuffers > 0)
	{
		b = &uc_buffers[uc_nbuffers - 1];
		if (b->owner == subid && buffer_pending(b))
			return b->state;
	}
	if (uc_nbuffers >= uc_maxbuffers)
	{
		uc_maxbuffers = Max(8, uc_maxbuffers * 2);
		uc_buffers = uc_buffers == NULL ?
			MemoryContextAlloc(TopTransactionContext, uc_maxbuffers * sizeof(UcBuffer)) :
			repalloc(uc_buffers, uc_maxbuffers * sizeof(UcBuffer));
	}
	b = &uc_buffers[uc_nbuffers++];
	b->state = uc_batch_create(CurTransactionContext, false);
	b->owner = subid;
	b->written_in = InvalidSubTransactionId;
	return b->state;
}

/*
 * Write every pending buffer now, in the current subtransaction.  Adds what
 * was written to *inserted and *updated; returns false if nothing was
 * pending.
 */
bool
uc_flush_pending(int64 *inserted, int64 *updated)
{
	MemoryContext cxt;
	UcBatchState *merged;
	bool		any = false;

	for (int i = 0; i < uc_nbuffers && !any; i++)
		any = buffer_pending(&uc_buffers[i]) && uc_batch_nkeys(uc_buffers[i].state) > 0;
	if (!any)
		return false;

	/* merge into a scratch state: the buffers must survive a rollback */
	cxt = AllocSetContextCreate(CurTransactionContext, "upsert_counter flush",
								ALLOCSET_DEFAULT_SIZES);
	merged = uc_batch_create(cxt, false);
	for (int i = 0; i < uc_nbuffers; i++)
	{
		if (!buffer_pending(&uc_buffers[i]))
			continue;
		uc_batch_merge(merged, uc_buffers[i].state);
		uc_buffers[i].written_in = GetCurrentSubTransactionId();
	}
	uc_batch_flush(merged, inserted, updated);
	MemoryContextDelete(cxt);
	return true;
}

/*
 * upsert_increment() in commit mode: buffer one input row.  Flushes early
 * when the buffer passes upsert_counter.flush_limit distinct keys.
 */
void
uc_defer_row(Oid relid, Jsonb *const *objs)
{
	uc_batch_add_jsonb(current_buffer(), relid, objs);
	if (pending_keys() > uc_flush_limit)
	{
		int64		inserted = 0;
		int64		updated = 0;

		uc_flush_pending(&inserted, &updated);
	}
}

static void
uc_flush_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			{
				int64		inserted = 0;
				int64		updated = 0;

				/*
				 * Deferred triggers have fired already; fire the ones our
				 * writes queue, and write what those buffer, until done.
				 * The portal's snapshot is gone by now: SPI needs one.
				 */
				for (;;)
				{
					bool		wrote;

					PushActiveSnapshot(GetTransactionSnapshot());
					wrote = uc_flush_pending(&inserted, &updated);
					PopActiveSnapshot();
					if (!wrote)
						break;
					AfterTriggerFireDeferred();
				}
				break;
			}
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the memory went with the transaction's contexts */
			uc_buffers = NULL;
			uc_nbuffers = 0;
			uc_maxbuffers = 0;
			break;
		default:
			break;
	}
}

static void
uc_flush_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	int			keep = 0;

	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			for (int i = 0; i < uc_nbuffers; i++)
			{
				if (uc_buffers[i].owner == mySubid)
					uc_buffers[i].owner = parentSubid;
				if (uc_buffers[i].written_in == mySubid)
					uc_buffers[i].written_in = parentSubid;
			}
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			for (int i = 0; i < uc_nbuffers; i++)
			{
				UcBuffer	b = uc_buffers[i];

				if (b.owner == mySubid)
					continue;	/* its rows are rolled back, its memory gone */
				if (b.written_in == mySubid)
					b.written_in = InvalidSubTransactionId; /* writes undone */
				uc_buffers[keep++] = b;
			}
			uc_nbuffers = keep;
			break;
		default:
			break;
	}
}

void
uc_flush_init(void)
{
	RegisterXactCallback(uc_flush_xact_callback, NULL);
	RegisterSubXactCallback(uc_flush_subxact_callback, NULL);
}
