/*-------------------------------------------------------------------------
 *
 * buffer.c
 *	  Commit mode: the per-transaction buffer of upsert_counter.flush =
 *	  'commit', written just before the transaction commits.
 *
 * This file owns the buffer that upsert_increment() fills instead of
 * writing when upsert_counter.flush is 'commit', whose rows they are, and
 * their fate at every transaction boundary.  Its callbacks are the
 * hooks the extension's one transaction callback (upsert_counter.c) calls
 * first (the cache ties its references to memory contexts instead, see
 * cache.c).
 *
 * Buffering (uc_buffer_add_jsonb, uc_buffer_add_record):
 *	- is refused inside a security-restricted operation (ANALYZE, VACUUM,
 *	  REFRESH MATERIALIZED VIEW, CREATE INDEX run index expressions as the
 *	  table owner: rows buffered there would be written at commit, outside
 *	  it), in parallel mode (a worker's buffer would be lost), and in a
 *	  read-only transaction (as an INSERT would be, at the call);
 *	- checks the caller's INSERT privilege on the target before it locks
 *	  it, and the column privileges of the call's shape after;
 *	- records the user id and security context it ran under: the rows are
 *	  written under them, never under whoever commits, so a SECURITY
 *	  DEFINER function's rows are written as its owner and a caller's as
 *	  the caller.
 *
 * The buffers: one per (subtransaction, user, security context) that
 * buffered rows, each a batch state (batch.c) in its own memory context
 * under TopTransactionContext.  Each holds its rows merged by key, so
 * memory grows with distinct keys, not calls.
 *
 * Transaction events, in the order core raises them:
 *	- PRE_COMMIT_SUB (RELEASE SAVEPOINT, leaving an EXCEPTION block
 *	  normally): a pending buffer of the ending subtransaction is merged
 *	  into its parent's pending buffer of the same user and context, if
 *	  there is one, and freed.  This is where a merge may still fail (a sum
 *	  out of range), as the write would have.  So an EXCEPTION loop of N
 *	  calls keeps one buffer, not N.
 *	- COMMIT_SUB: what is left of the subtransaction's buffers passes to
 *	  the parent; writes it made count as the parent's.
 *	- ABORT_SUB: its buffers are freed (their rows roll back); buffers it
 *	  wrote are pending again (its writes were undone), so nothing is lost
 *	  or counted twice.
 *	- Writing (upsert_counter_flush(), upsert_counter.flush_limit, commit)
 *	  merges the
 *	  pending buffers of each user and context, later rows counting as
 *	  later, switches to that user and context, and writes the result
 *	  sorted by key, one statement per chunk, like a batch.  The buffers
 *	  are marked as written in the current subtransaction (freed at once at
 *	  top level, where only the whole transaction's abort undoes a write).
 *	- PRE_COMMIT and PRE_PREPARE: the pending buffers are written.  Core
 *	  has fired deferred triggers by then, so we fire those our writes
 *	  queued, still as the buffering user, looping until neither is left.
 *	  An error aborts the commit.
 *	- COMMIT, ABORT, PREPARE: the memory went with TopTransactionContext;
 *	  the static pointers are reset.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "buffer.h"

typedef struct UcBuffer
{
	MemoryContext cxt;			/* holds state; freed with the buffer */
	UcBatchState *state;
	SubTransactionId owner;		/* whose rows these are */
	SubTransactionId written_in;	/* 0 while pending */
	Oid			userid;			/* who buffered them ... */
	int			secctx;			/* ... and in which security context */
} UcBuffer;

static UcBuffer *uc_buffers = NULL; /* in TopTransactionContext */
static int	uc_nbuffers = 0;
static int	uc_maxbuffers = 0;

static bool
buffer_pending(const UcBuffer *b)
{
	return b->written_in == InvalidSubTransactionId;
}

static bool
same_owner(const UcBuffer *a, Oid userid, int secctx)
{
	return a->userid == userid && a->secctx == secctx;
}

static void
buffer_free(UcBuffer *b)
{
	MemoryContextDelete(b->cxt);	/* its callback releases the references */
	b->cxt = NULL;
	b->state = NULL;
}

/* Drop the freed buffers from the array, keeping the order */
static void
compact(void)
{
	int			keep = 0;

	for (int i = 0; i < uc_nbuffers; i++)
		if (uc_buffers[i].cxt != NULL)
			uc_buffers[keep++] = uc_buffers[i];
	uc_nbuffers = keep;
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

/* The buffer that rows of the current subtransaction and user go into */
static UcBatchState *
current_buffer(Oid userid, int secctx)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	UcBuffer   *b;

	for (int i = uc_nbuffers - 1; i >= 0; i--)
	{
		b = &uc_buffers[i];
		if (b->owner == subid && buffer_pending(b) && same_owner(b, userid, secctx))
			return b->state;
	}
	if (uc_nbuffers >= uc_maxbuffers)
	{
		uc_maxbuffers = Max(8, uc_maxbuffers * 2);
		uc_buffers = uc_buffers == NULL ?
			MemoryContextAlloc(TopTransactionContext, uc_maxbuffers * sizeof(UcBuffer)) :
			repalloc(uc_buffers, uc_maxbuffers * sizeof(UcBuffer));
	}
	b = &uc_buffers[uc_nbuffers];
	b->cxt = AllocSetContextCreate(TopTransactionContext, "upsert_counter buffer",
								   ALLOCSET_DEFAULT_SIZES);
	b->state = uc_batch_create(b->cxt, false, true);
	b->owner = subid;
	b->written_in = InvalidSubTransactionId;
	b->userid = userid;
	b->secctx = secctx;
	uc_nbuffers++;
	return b->state;
}

/*
 * Write the pending buffers of one user and security context, merged,
 * under that user and context.  With fire_deferred, also fire the deferred
 * triggers the writes queued, still under them.
 */
static void
write_as(Oid userid, int secctx, bool fire_deferred,
		 int64 *inserted, int64 *updated)
{
	MemoryContext cxt;
	UcBatchState *merged;
	Oid			save_userid;
	int			save_secctx;
	SubTransactionId subid = GetCurrentSubTransactionId();

	/* merge into a scratch state: the buffers must survive a rollback */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "upsert_counter write",
								ALLOCSET_DEFAULT_SIZES);
	merged = uc_batch_create(cxt, false, false);
	for (int i = 0; i < uc_nbuffers; i++)
	{
		UcBuffer   *b = &uc_buffers[i];

		if (buffer_pending(b) && same_owner(b, userid, secctx))
		{
			uc_batch_merge(merged, b->state);
			b->written_in = subid;
		}
	}

	GetUserIdAndSecContext(&save_userid, &save_secctx);
	SetUserIdAndSecContext(userid, secctx);
	PG_TRY();
	{
		uc_batch_write(merged, inserted, updated);
		if (fire_deferred)
			AfterTriggerFireDeferred();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_secctx);
	}
	PG_END_TRY();
	MemoryContextDelete(cxt);
}

/*
 * Write every pending buffer now, in the current subtransaction.  Adds what
 * was written to *inserted and *updated; returns false if nothing was
 * pending.
 */
static bool
write_pending(bool fire_deferred, int64 *inserted, int64 *updated)
{
	bool		any = false;

	for (;;)
	{
		UcBuffer   *first = NULL;

		for (int i = 0; i < uc_nbuffers && first == NULL; i++)
			if (buffer_pending(&uc_buffers[i]))
				first = &uc_buffers[i];
		if (first == NULL)
			break;
		write_as(first->userid, first->secctx, fire_deferred, inserted, updated);
		any = true;
	}

	/* at top level only the transaction's abort undoes a write */
	if (GetCurrentSubTransactionId() == TopSubTransactionId)
	{
		for (int i = 0; i < uc_nbuffers; i++)
			if (!buffer_pending(&uc_buffers[i]))
				buffer_free(&uc_buffers[i]);
		compact();
	}
	return any;
}

bool
uc_buffer_write(int64 *inserted, int64 *updated)
{
	return write_pending(false, inserted, updated);
}

/*
 * What every row that is written later (commit mode's buffer, background
 * mode's log) is checked for at the call, before anything is locked;
 * returns the user and security context the row will be written under.
 */
void
uc_deferred_checks(Oid relid, Oid *userid, int *secctx)
{
	bool		background = (uc_flush_mode == UC_FLUSH_BACKGROUND);

	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 background ?
				 errmsg("cannot log upsert_increment() rows within security-restricted operation") :
				 errmsg("cannot buffer upsert_increment() rows within security-restricted operation"),
				 background ?
				 errdetail("Rows logged with upsert_counter.flush = background are written later by the fold, outside the operation.") :
				 errdetail("Rows buffered with upsert_counter.flush = commit are written when the transaction commits, outside the operation."),
				 errhint("Set upsert_counter.flush to statement in code that runs during ANALYZE, VACUUM, CREATE INDEX or REFRESH MATERIALIZED VIEW.")));
	PreventCommandIfParallelMode("upsert_increment()");
	if (XactReadOnly && get_rel_persistence(relid) != RELPERSISTENCE_TEMP)
		PreventCommandIfReadOnly("upsert_increment()");

	/* no lock on a table the caller may not insert into */
	GetUserIdAndSecContext(userid, secctx);
	if (pg_class_aclcheck(relid, *userid, ACL_INSERT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(relid, *userid, ACL_INSERT, ACLMASK_ANY) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV,
					   get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
}

/* Past upsert_counter.flush_limit distinct keys, write early */
static void
check_limit(void)
{
	if (pending_keys() > uc_buffer_limit)
	{
		int64		inserted = 0;
		int64		updated = 0;

		write_pending(false, &inserted, &updated);
	}
}

/*
 * upsert_increment() in commit mode: buffer one input row.  Writes early
 * when the buffer passes upsert_counter.flush_limit distinct keys.
 */
void
uc_buffer_add_jsonb(Oid relid, Jsonb *const *objs)
{
	Oid			userid;
	int			secctx;

	uc_deferred_checks(relid, &userid, &secctx);
	uc_batch_add_jsonb(current_buffer(userid, secctx), relid, objs);
	check_limit();
}

/* upsert_increment_rows() in commit mode: buffer one input row */
void
uc_buffer_add_record(Oid relid, HeapTupleHeader td, ArrayType *const *roles,
					 UcRowMap **mapp, MemoryContext cxt)
{
	Oid			userid;
	int			secctx;

	uc_deferred_checks(relid, &userid, &secctx);
	uc_rows_add(current_buffer(userid, secctx), relid, td, roles, mapp, cxt);
	check_limit();
}

void
uc_buffer_xact_event(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			{
				int64		inserted = 0;
				int64		updated = 0;
				bool		wrote;

				/*
				 * Deferred triggers have fired already; fire the ones our
				 * writes queue, and write what those buffer, until done.
				 * The portal's snapshot is gone by now: SPI needs one.
				 */
				do
				{
					PushActiveSnapshot(GetTransactionSnapshot());
					wrote = write_pending(true, &inserted, &updated);
					PopActiveSnapshot();
				} while (wrote);
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

void
uc_buffer_subxact_event(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid)
{
	switch (event)
	{
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			/* fold the ending level's pending rows into its parent's */
			for (int i = 0; i < uc_nbuffers; i++)
			{
				UcBuffer   *b = &uc_buffers[i];

				if (b->owner != mySubid || !buffer_pending(b))
					continue;
				for (int j = 0; j < uc_nbuffers; j++)
				{
					UcBuffer   *p = &uc_buffers[j];

					if (p->owner == parentSubid && buffer_pending(p) &&
						same_owner(p, b->userid, b->secctx))
					{
						uc_batch_merge(p->state, b->state);
						buffer_free(b);
						break;
					}
				}
			}
			compact();
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			for (int i = 0; i < uc_nbuffers; i++)
			{
				UcBuffer   *b = &uc_buffers[i];

				if (b->owner == mySubid)
					b->owner = parentSubid;
				if (b->written_in == mySubid)
				{
					b->written_in = parentSubid;
					/* written at top level now: no rollback can undo it */
					if (parentSubid == TopSubTransactionId)
						buffer_free(b);
				}
			}
			compact();
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			for (int i = 0; i < uc_nbuffers; i++)
			{
				UcBuffer   *b = &uc_buffers[i];

				if (b->owner == mySubid)
					buffer_free(b); /* its rows are rolled back */
				else if (b->written_in == mySubid)
					b->written_in = InvalidSubTransactionId;	/* writes undone */
			}
			compact();
			break;
		default:
			break;
	}
}
