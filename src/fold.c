/*-------------------------------------------------------------------------
 *
 * fold.c
 *	  Background mode's fold: taking a target's logged rows, merging them
 *	  per key and writing them, exactly once; the background worker that
 *	  does it for a database; upsert_counter_fold() and _discard().
 *
 * A fold of one target, in one transaction (the worker's own, or the
 * caller's in upsert_counter_fold()):
 *	- takes a lock that serializes folds (and discards) of that target (an
 *	  advisory transaction lock of a kind user code cannot take), so that
 *	  each fold applies the rows it sees in log (id) order after those of
 *	  the fold before (a row whose transaction commits after a fold, with
 *	  a lower id than rows that fold applied, is applied by a later fold);
 *	- takes the rows logged up to the highest id at its start, no later
 *	  ones, so that a fold of a busy target ends;
 *	- reads the target's oldest log rows, in id order, in windows of at
 *	  most upsert_counter.fold_batch_size, as the log's owner, without
 *	  decoding them: nothing of the target's (its types' functions, its
 *	  domains, its triggers) runs before the fold acts as the row's caller;
 *	- splits a window into runs of consecutive rows of one calling user and
 *	  one shape (the same column names, roles and logged types);
 *	- writes the window's runs in one subtransaction, each run as its
 *	  user in a security-restricted operation (uc_run_restricted_as()):
 *	  decoded, merged per key in a batch state (batch.c: deltas summed, the
 *	  later assigned value kept, the earlier insert-only one, which is what
 *	  the run's calls would have left one by one), written in key order
 *	  through the cached statements (the path of a batch in statement
 *	  mode); and deletes the written rows from the log (by ctid) in the
 *	  same subtransaction;
 *	- if that fails, writes the window again run by run, each run in a
 *	  subtransaction of its own; if a run fails, key by key; a key that fails is
 *	  withheld, with every later row of it in this fold (so that its rows
 *	  stay in log order), and its error recorded; the other keys go on
 *	  (keys are told apart without decoding them, as key_class() says:
 *	  where equal keys may differ in their bytes, a whole class of keys
 *	  counts as one).  A cancel or statement timeout stops the fold.
 * Each row's write and its deletion commit together or not at all, so
 * every committed log row is applied exactly once: a crash, a kill or an
 * immediate shutdown before the commit leaves the rows in the log for the
 * next fold.  Rows logged by transactions still in progress are not seen
 * and wait for a later fold.
 *
 * A logged row's user is the role with the logged OID if it still has the
 * logged name, else the role with that name (after a dump and restore OIDs
 * differ); the row is withheld if there is none.  Each user's rows are
 * written with search_path set to "$user", public, pg_temp, and every
 * setting the target's triggers change undone afterwards (as VACUUM and
 * ANALYZE run index expressions as the table's owner), so that neither
 * the session that runs the fold nor one user's trigger can change how
 * another user's rows are written.
 *
 * The worker: one per database, started after the commit of a transaction
 * that logged rows when none runs (a dynamic background worker, so that
 * the extension needs no shared_preload_libraries; see README for the
 * trade-off).  It holds a session advisory lock while it runs, which is
 * how a backend tells whether one runs.  Every round it folds each target
 * that has rows pending, each in a transaction of its own, with
 * constraints immediate (a deferred constraint trigger fires in the write's
 * subtransaction) and lock_timeout set (a key whose row a long transaction
 * holds waits at most UC_FOLD_LOCK_TIMEOUT).  A key whose write fails (a
 * CHECK the merged row violates, a user who lost a privilege, a lock
 * timeout) keeps its rows and gets its error recorded in
 * upsert_counter_fold_status (and the server log); a target none of whose
 * rows could be written is retried after a back-off that doubles up to a
 * minute, and does not hold up the others.
 * It sleeps upsert_counter.fold_interval after a round that folded
 * something, twice as long (up to 1 s) after each idle one, and leaves
 * after upsert_counter.fold_idle_exit seconds with nothing to fold (so
 * that DROP DATABASE is not kept waiting).  Before it leaves it releases
 * its lock and looks once more: a row committed before that look is
 * folded; one committed after it finds the lock free and starts a new
 * worker.  The postmaster never restarts it (a restart could not tell a
 * crash from a dropped database): a worker killed, crashed or stopped
 * with the server is started again by the next commit that logs rows, and
 * until then upsert_counter_fold() folds on demand.  SIGTERM stops it as
 * it stops a backend.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "background.h"
#include "citus.h"

/* Our advisory locks: field4 = 3, a kind the SQL functions never use */
#define UC_LOCK_KIND		3
#define UC_LOCK_WORKER		0x464F4C44	/* "FOLD": the worker's lock */
#define UC_LOCK_TARGET		0x54524754	/* "TRGT": one target's folds */

/* How long the worker waits for a lock (see upsert_counter_fold_main()) */
#define UC_FOLD_LOCK_TIMEOUT	"5s"

bool		uc_fold_worker_enabled = true;
int			uc_fold_interval = 100;
int			uc_fold_batch_size = 50000;
int			uc_fold_idle_exit = 60;


static void
worker_locktag(LOCKTAG *tag, Oid dboid)
{
	SET_LOCKTAG_ADVISORY(*tag, dboid, 0, UC_LOCK_WORKER, UC_LOCK_KIND);
}

/*
 * Take the lock that serializes the folds (and discards) of a target, for
 * the transaction; false if !wait and another transaction holds it.
 */
static bool
target_lock(Oid target, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, target, UC_LOCK_TARGET, UC_LOCK_KIND);
	if (wait)
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	else if (uc_lock_acquire_nowait(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	return true;
}

/* ---------------------------------------------------------------------
 * Folding one target
 * ---------------------------------------------------------------------
 */

/*
 * The key class of a run's rows: its key columns' names and logged types
 * (see key_class())
 */
typedef struct UcKeyClass
{
	bytea	   *names;			/* the key columns' names */
	bytea	   *class;			/* the names and the logged types */
	bool		exact;			/* keys are equal iff their bytes are */
} UcKeyClass;

/*
 * A logged row taken by a fold, not decoded: nothing of the target's (its
 * types' functions, its domains, its index expressions) runs before the
 * fold is acting as the row's caller.
 */
typedef struct UcTaken
{
	UcLogTuple	lt;				/* deformed; in the SPI result of the take */
	int64		id;
	Oid			caller;			/* resolved (fold_caller()) */
	TimestampTz logged_at;
	bytea	   *keysig;			/* its key: see key_class() */
	const UcKeyClass *class;	/* its run's key class */
	int			run;
} UcTaken;

/* What folding one target did */
typedef struct UcFoldResult
{
	int64		folded;			/* logged rows applied and deleted */
	int64		withheld;		/* rows left in the log: their key failed */
	int64		inserted;
	int64		updated;
	TimestampTz oldest;			/* logged_at of the oldest row folded */
	char	   *error;			/* the first failure, or NULL */
	char	   *sqlstate;
	MemoryContext cxt;			/* where error and sqlstate live */
} UcFoldResult;

/* The rows one write takes: a run, or one key of a run */
typedef struct UcWrite
{
	UcTaken   **rows;
	int			nrows;
	MemoryContext cxt;			/* the write's memory, freed either way */
	int64		inserted;
	int64		updated;
} UcWrite;

/* batch.c's conversion callback: a logged row's values */
static void
convert_logged(const UcShape *shape, void *arg, Datum *values, bool *nulls)
{
	const UcLoggedRow *row = (const UcLoggedRow *) arg;

	if (shape->ncols != row->args.ncols)
		elog(ERROR, "logged row " INT64_FORMAT " does not match its shape", row->id);
	for (int i = 0; i < shape->ncols; i++)
		values[i] = uc_log_value(shape, i, row, &nulls[i]);
}

/*
 * The role a logged row is written as: the role with the logged OID if it
 * still has the logged name, else the role of that name (after a dump and
 * restore OIDs differ, names do not); InvalidOid if there is none.
 */
static Oid
fold_caller(Oid caller, const char *name)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(caller));
	Oid			byname;

	if (HeapTupleIsValid(tup))
	{
		bool		same = strcmp(NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname), name) == 0;

		ReleaseSysCache(tup);
		if (same)
			return caller;
	}
	byname = get_role_oid(name, true);
	return byname;
}

/*
 * Rows of one key must be told without decoding them (the fold decodes a
 * row only as its caller).  A run's key class is its key columns' names
 * and logged types.  The class is exact when every key type compares by
 * its binary form (the integers, oid, bool, "char", date, time,
 * timestamp, timestamptz, uuid, bytea, and text and varchar under a
 * deterministic collation): two keys of an exact class are equal if and
 * only if their values' bytes are.  In any other class equal keys may
 * differ in their bytes (numeric 1.0 and 1.00, a case-insensitive
 * collation, intervals, floats, domains, arrays), so for the failed set
 * the whole class is one key.  A key's signature is its class followed,
 * in an exact class, by its values' bytes.
 */
static bool
exact_key_type(Oid type)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case BOOLOID:
		case CHAROID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case UUIDOID:
		case BYTEAOID:
		case TEXTOID:
		case VARCHAROID:
			return true;
		default:
			return false;
	}
}

static bytea *
finish_bytes(StringInfo buf)
{
	bytea	   *b = (bytea *) buf->data;

	SET_VARSIZE(b, buf->len);
	return b;
}

/* The key class of a logged row of target (and of its whole run) */
static UcKeyClass *
key_class(Oid target, const UcLogTuple *lt)
{
	UcKeyClass *kc = palloc(sizeof(UcKeyClass));
	Datum	   *nrole;
	Datum	   *names;
	Datum	   *types;
	bool	   *nulls;
	int			n;
	int			nnames;
	int			ntypes;
	int			nkeys;
	StringInfoData nbuf;
	StringInfoData cbuf;

	deconstruct_array(DatumGetArrayTypeP(lt->values[UC_LOG_NROLE - 1]),
					  INT2OID, 2, true, TYPALIGN_SHORT, &nrole, &nulls, &n);
	nkeys = n > 0 ? DatumGetInt16(nrole[0]) : 0;
	deconstruct_array(DatumGetArrayTypeP(lt->values[UC_LOG_NAMES - 1]),
					  TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &nnames);
	deconstruct_array(DatumGetArrayTypeP(lt->values[UC_LOG_TYPES - 1]),
					  REGTYPEOID, sizeof(Oid), true, TYPALIGN_INT, &types, &nulls, &ntypes);
	nkeys = Min(nkeys, Min(nnames, ntypes));

	initStringInfo(&nbuf);
	appendStringInfoSpaces(&nbuf, VARHDRSZ);
	kc->exact = true;
	for (int i = 0; i < nkeys; i++)
	{
		char	   *name = TextDatumGetCString(names[i]);
		Oid			type = DatumGetObjectId(types[i]);

		appendBinaryStringInfo(&nbuf, name, strlen(name) + 1);
		if (!exact_key_type(type))
			kc->exact = false;
		else if (type == TEXTOID || type == VARCHAROID)
		{
			AttrNumber	attnum = get_attnum(target, name);
			Oid			coll = InvalidOid;

			if (attnum != InvalidAttrNumber)
			{
				Oid			typid;
				int32		typmod;

				get_atttypetypmodcoll(target, attnum, &typid, &typmod, &coll);
			}
			if (!OidIsValid(coll) || !get_collation_isdeterministic(coll))
				kc->exact = false;
		}
	}
	initStringInfo(&cbuf);
	appendBinaryStringInfo(&cbuf, nbuf.data, nbuf.len);
	for (int i = 0; i < nkeys; i++)
	{
		Oid			type = DatumGetObjectId(types[i]);

		appendBinaryStringInfo(&cbuf, (char *) &type, sizeof(type));
	}
	kc->names = finish_bytes(&nbuf);
	kc->class = finish_bytes(&cbuf);
	return kc;
}

/*
 * A logged row's key signature: its class, and in an exact class the
 * bytes of its key values (the first nrole[keys] values), each with its
 * length.
 */
static bytea *
key_signature(const UcKeyClass *kc, const UcLogTuple *lt)
{
	Datum	   *nrole;
	Datum	   *vals;
	bool	   *nulls;
	int			n;
	int			nkeys;
	StringInfoData buf;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) kc->class, VARSIZE(kc->class));
	if (!kc->exact)
		return finish_bytes(&buf);
	deconstruct_array(DatumGetArrayTypeP(lt->values[UC_LOG_NROLE - 1]),
					  INT2OID, 2, true, TYPALIGN_SHORT, &nrole, &nulls, &n);
	nkeys = n > 0 ? DatumGetInt16(nrole[0]) : 0;
	deconstruct_array(DatumGetArrayTypeP(lt->values[UC_LOG_VALS - 1]),
					  BYTEAOID, -1, false, TYPALIGN_INT, &vals, &nulls, &n);
	for (int i = 0; i < Min(nkeys, n); i++)
	{
		int32		len = nulls[i] ? -1 : (int32) VARSIZE_ANY_EXHDR(DatumGetPointer(vals[i]));

		appendBinaryStringInfo(&buf, (char *) &len, sizeof(len));
		if (!nulls[i])
			appendBinaryStringInfo(&buf, VARDATA_ANY(DatumGetPointer(vals[i])), len);
	}
	return finish_bytes(&buf);
}

static bool
same_signature(const bytea *a, const bytea *b)
{
	return VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

/* The set of failed keys: a hash table of signatures (the key a pointer) */
static uint32
signature_hash(const void *key, Size keysize)
{
	const bytea *sig = *(bytea *const *) key;

	return hash_bytes((const unsigned char *) VARDATA(sig), VARSIZE(sig) - VARHDRSZ);
}

static int
signature_match(const void *key1, const void *key2, Size keysize)
{
	return same_signature(*(bytea *const *) key1, *(bytea *const *) key2) ? 0 : 1;
}

/*
 * The keys a fold withholds: their signatures, and per key-column names
 * the class (or classes) they failed in.  A row is withheld if its key
 * failed, or if a key with the same column names failed in another class
 * (the same key logged with other types, as before and after ALTER COLUMN
 * TYPE, may be equal in other bytes).
 */
typedef struct UcFailed
{
	HTAB	   *keys;			/* bytea * signatures */
	HTAB	   *names;			/* UcFailedNames, by names */
	MemoryContext cxt;
} UcFailed;

typedef struct UcFailedNames
{
	bytea	   *names;			/* the hash key */
	bytea	   *class;			/* the class its keys failed in */
	bool		multi;			/* ... or more than one */
} UcFailedNames;

static HTAB *
bytes_table(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(bytea *);
	ctl.entrysize = entrysize;
	ctl.hash = signature_hash;
	ctl.match = signature_match;
	ctl.hcxt = cxt;
	return hash_create(name, 64, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

static void
failed_init(UcFailed *f, MemoryContext cxt)
{
	f->keys = bytes_table("upsert_counter fold failed keys", sizeof(bytea *), cxt);
	f->names = bytes_table("upsert_counter fold failed names", sizeof(UcFailedNames), cxt);
	f->cxt = cxt;
}

static bytea *
copy_bytes(MemoryContext cxt, const bytea *b)
{
	bytea	   *copy = MemoryContextAlloc(cxt, VARSIZE(b));

	memcpy(copy, b, VARSIZE(b));
	return copy;
}

static bool
failed_withholds(UcFailed *f, const UcTaken *t)
{
	bytea	   *names = t->class->names;
	UcFailedNames *fn;

	if (hash_search(f->keys, &t->keysig, HASH_FIND, NULL) != NULL)
		return true;
	fn = hash_search(f->names, &names, HASH_FIND, NULL);
	return fn != NULL && (fn->multi || !same_signature(fn->class, t->class->class));
}

static void
failed_add(UcFailed *f, const UcTaken *t)
{
	bytea	   *sig = copy_bytes(f->cxt, t->keysig);
	bytea	   *names = t->class->names;
	UcFailedNames *fn;
	bool		found;

	(void) hash_search(f->keys, &sig, HASH_ENTER, NULL);
	fn = hash_search(f->names, &names, HASH_FIND, NULL);
	if (fn == NULL)
	{
		names = copy_bytes(f->cxt, names);
		fn = hash_search(f->names, &names, HASH_ENTER, &found);
		fn->class = copy_bytes(f->cxt, t->class->class);
		fn->multi = false;
	}
	else if (!same_signature(fn->class, t->class->class))
		fn->multi = true;
}

/*
 * Run inside uc_run_restricted_as(): decode a run's rows, merge them and
 * write them, as their caller, in a context of w->cxt freed at the end (and
 * with w->cxt, which write_and_delete() frees, if this fails).
 */
static void
write_rows(void *arg)
{
	UcWrite    *w = (UcWrite *) arg;
	MemoryContext runcxt = AllocSetContextCreate(w->cxt, "upsert_counter fold run",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext rowcxt = AllocSetContextCreate(runcxt, "upsert_counter fold row",
												 ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(runcxt);
	UcBatchState *state = uc_batch_create(runcxt, false, false);
	UcLoggedRow rows[2];

	for (int j = 0; j < w->nrows; j++)
	{
		UcLoggedRow *row = &rows[j % 2];
		UcLoggedRow *prev = j > 0 ? &rows[(j + 1) % 2] : NULL;

		/* the row's values and conversions in rowcxt; its shape in runcxt */
		MemoryContextSwitchTo(rowcxt);
		uc_log_decode(&w->rows[j]->lt, row, prev, runcxt);
		uc_batch_add_with(state, &row->args, convert_logged, row);
		/* the batch copied what it keeps into its own context */
		MemoryContextSwitchTo(runcxt);
		MemoryContextReset(rowcxt);
		CHECK_FOR_INTERRUPTS();
	}
	uc_batch_write(state, &w->inserted, &w->updated);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(runcxt);
}

/*
 * The fold's DELETE, by the rows' ctids (a TID scan: no index descent per
 * row), prepared once per backend (per log table) with a generic plan: a
 * one-shot plan of a constant array estimates ANY() element by element.
 * The ctids were read in this transaction under the target's lock: no fold
 * or discard can delete the rows meanwhile, and a row deleted by hand
 * cannot have its slot reused while this transaction's snapshot sees it;
 * the target is checked all the same, and the count.  SPI connected.
 */
static SPIPlanPtr
delete_statement(void)
{
	static SPIPlanPtr plan = NULL;
	static Oid	plan_log = InvalidOid;
	Oid			log = uc_log_relid();

	if (plan != NULL && plan_log != log)
	{
		SPI_freeplan(plan);
		plan = NULL;
	}
	if (plan == NULL)
	{
		Oid			argtypes[2] = {REGCLASSOID, TIDARRAYOID};
		SPIPlanPtr	p;

		p = SPI_prepare_cursor(psprintf("DELETE FROM %s WHERE ctid OPERATOR(pg_catalog.=) ANY ($2) "
										"AND target OPERATOR(pg_catalog.=) $1",
										uc_log_table("upsert_counter_delta")),
							   2, argtypes, CURSOR_OPT_GENERIC_PLAN);
		if (p == NULL)
			elog(ERROR, "SPI_prepare_cursor failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		plan = p;
		plan_log = log;
	}
	return plan;
}

/* Delete the written rows from the log, as its owner; SPI connected */
static void
delete_rows(Oid target, UcTaken **rows, int n)
{
	Datum	   *tids = palloc(Max(n, 1) * sizeof(Datum));
	Datum		params[2];
	int			rc;

	for (int j = 0; j < n; j++)
	{
		if (!ItemPointerIsValid(&rows[j]->lt.ctid))
			elog(ERROR, "logged row " INT64_FORMAT " was read without its ctid", rows[j]->id);
		tids[j] = PointerGetDatum(&rows[j]->lt.ctid);
	}
	params[0] = ObjectIdGetDatum(target);
	params[1] = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData), false,
												TYPALIGN_SHORT));
	rc = uc_log_execute(delete_statement(), params, NULL, false);
	if (rc != SPI_OK_DELETE || SPI_processed != (uint64) n)
		elog(ERROR, "the fold deleted " UINT64_FORMAT " of %d logged rows", SPI_processed, n);
}

/* The first failure of a fold, kept in the result's context */
static void
set_error(UcFoldResult *res, const char *error, int sqlerrcode)
{
	res->error = MemoryContextStrdup(res->cxt, error);
	res->sqlstate = MemoryContextStrdup(res->cxt, unpack_sql_state(sqlerrcode));
}

/*
 * Write rows (runs of one caller and one shape each, in log order) and
 * delete them from the log, in a subtransaction: all or nothing.  On
 * failure the subtransaction is rolled back and the rows stay in the log;
 * if record, the error is logged and kept in res (the first one), else it
 * was a first try that is made again in smaller parts.  A cancel (a
 * statement timeout, pg_cancel_backend()) is not a row's failure: it stops
 * the fold, as it stops a statement.  SPI connected.
 */
static bool
write_and_delete(Oid target, UcTaken **rows, int n, bool record, UcFoldResult *res)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext cxt;
	volatile int64 inserted = 0;
	volatile int64 updated = 0;
	volatile bool ok = true;

	cxt = AllocSetContextCreate(oldcxt, "upsert_counter fold write", ALLOCSET_DEFAULT_SIZES);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		for (int first = 0; first < n;)
		{
			int			last = first;
			UcWrite		w;

			while (last < n && rows[last]->run == rows[first]->run)
				last++;
			w.rows = rows + first;
			w.nrows = last - first;
			w.cxt = cxt;
			w.inserted = w.updated = 0;
			uc_run_restricted_as(rows[first]->caller, write_rows, &w);
			inserted += w.inserted;
			updated += w.updated;
			first = last;
		}
		delete_rows(target, rows, n);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		MemoryContextDelete(cxt);
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		if (record)
		{
			if (res->error == NULL)
				set_error(res, edata->detail ?
						  psprintf("%s (%s)", edata->message, edata->detail) : edata->message,
						  edata->sqlerrcode);
			/* in the server log too, with the target's rows named */
			ereport(LOG,
					(errmsg("upsert_counter fold: logged rows " INT64_FORMAT " to " INT64_FORMAT " not written: %s",
							rows[0]->id, rows[n - 1]->id, edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		}
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	if (ok)
	{
		bool		first = (res->folded == 0);

		MemoryContextDelete(cxt);
		for (int j = 0; j < n; j++)
			if (first || rows[j]->logged_at < res->oldest)
			{
				res->oldest = rows[j]->logged_at;
				first = false;
			}
		res->folded += n;
		res->inserted += inserted;
		res->updated += updated;
	}
	return ok;
}

/*
 * Which of a window's rows (or a run's) may be written: not those whose
 * key has failed, nor those of a user who is gone (whose keys fail, so
 * that their later rows wait too).  Fills eligible, returns how many, and
 * counts the others in *held.
 */
static int
eligible_rows(UcTaken **taken, int from, int to, UcFailed *failed,
			  UcTaken **eligible, int64 *held)
{
	int			n = 0;

	for (int j = from; j < to; j++)
	{
		bool		withheld = failed_withholds(failed, taken[j]);

		if (!withheld && !OidIsValid(taken[j]->caller))
		{
			failed_add(failed, taken[j]);
			withheld = true;
		}
		if (withheld)
			(*held)++;
		else
			eligible[n++] = taken[j];
	}
	return n;
}

/* qsort: taken rows by key signature, then by id */
static int
by_key(const void *a, const void *b)
{
	const UcTaken *x = *(UcTaken *const *) a;
	const UcTaken *y = *(UcTaken *const *) b;
	int			c = VARSIZE(x->keysig) != VARSIZE(y->keysig) ?
		(VARSIZE(x->keysig) < VARSIZE(y->keysig) ? -1 : 1) :
		memcmp(x->keysig, y->keysig, VARSIZE(x->keysig));

	if (c != 0)
		return c;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

/*
 * Fold up to limit of target's logged rows, in the current transaction,
 * into *res.  Returns false, folding nothing, if !wait and another fold of
 * the target holds its lock.
 *
 * Rows are taken in windows of the oldest ones (as the log's owner, not
 * decoded), split into runs of consecutive rows of one caller and one
 * shape, and each run is written in a subtransaction of its own, as its
 * caller (write_and_delete()).  A run that fails is tried key by key; a
 * key that fails is withheld, with every later row of it (so that its rows
 * stay in log order), and the other keys go on.  Every row is deleted in
 * the subtransaction that writes it.
 */
static bool
fold_target(Oid target, int limit, bool wait, UcFoldResult *res)
{
	MemoryContext cxt;
	MemoryContext windowcxt;
	MemoryContext oldcxt;
	char	   *take;
	UcFailed	failed;			/* keys withheld */
	int64		after = 0;		/* the last id taken */
	int64		upto = 0;		/* the last id logged when the fold began */
	bool		more = true;

	memset(res, 0, sizeof(UcFoldResult));
	res->cxt = CurrentMemoryContext;

	/* folds of one target, one at a time, in log order */
	if (!target_lock(target, wait))
		return false;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u, which has rows logged for it, no longer exists",
						target),
				 errhint("Delete its rows with upsert_counter_discard(%u).", target)));

	/* on Citus, the target's writes and the log's deletes commit together */
	if (uc_citus_table(target))
		uc_citus_use_2pc();

	/*
	 * cxt: the failed set, for the whole fold; windowcxt: one window's rows,
	 * reset after it (every SPI call returns to SPI's own context, so the
	 * window's context is chosen again after each)
	 */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "upsert_counter fold",
								ALLOCSET_DEFAULT_SIZES);
	windowcxt = AllocSetContextCreate(cxt, "upsert_counter fold window",
									  ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	failed_init(&failed, cxt);
	take = psprintf("SELECT " UC_LOG_COLUMNS ", ctid FROM %s "
					"WHERE target OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.>) $2 "
					"AND id OPERATOR(pg_catalog.<=) $4 ORDER BY id LIMIT $3",
					uc_log_table("upsert_counter_delta"));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * What is logged now, and no more: rows logged while the fold runs wait
	 * for the next one, so that a fold of a busy target ends
	 */
	{
		Oid			argtype = REGCLASSOID;
		Datum		param = ObjectIdGetDatum(target);
		bool		isnull;
		int			rc;

		rc = uc_log_query(psprintf("SELECT pg_catalog.max(id) FROM %s WHERE target OPERATOR(pg_catalog.=) $1",
								   uc_log_table("upsert_counter_delta")),
						  1, &argtype, &param, NULL, false);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
		upto = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
			more = false;
	}

	while (more && res->folded < limit)
	{
		Oid			argtypes[4] = {REGCLASSOID, INT8OID, INT4OID, INT8OID};
		Datum		params[4];
		int			rc;
		int			n;
		UcTaken   **taken;
		UcTaken   **rows;
		UcKeyClass *class = NULL;
		SPITupleTable *tuptable;
		TupleDesc	desc;
		int			nruns = 0;

		/*
		 * The next window, oldest first, as the log's owner, not decoded,
		 * under a snapshot taken after the lock (read_only = false), so
		 * that rows a fold committed before it are not seen.
		 */
		params[0] = ObjectIdGetDatum(target);
		params[1] = Int64GetDatum(after);
		params[2] = Int32GetDatum((int) Min(limit - res->folded, uc_fold_batch_size));
		params[3] = Int64GetDatum(upto);
		rc = uc_log_query(take, 4, argtypes, params, NULL, false);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
		tuptable = SPI_tuptable;
		desc = tuptable->tupdesc;
		n = (int) SPI_processed;
		more = (n == DatumGetInt32(params[2]));
		if (n == 0)
			break;
		MemoryContextSwitchTo(windowcxt);

		taken = palloc(n * sizeof(UcTaken *));
		for (int j = 0; j < n; j++)
		{
			UcTaken    *t = palloc0(sizeof(UcTaken));
			UcTaken    *p = j > 0 ? taken[j - 1] : NULL;
			HeapTuple	tup = tuptable->vals[j];

			uc_log_deform(tup, desc, &t->lt);
			t->id = DatumGetInt64(t->lt.values[UC_LOG_ID - 1]);
			t->logged_at = DatumGetTimestampTz(t->lt.values[UC_LOG_LOGGED_AT - 1]);
			t->caller = DatumGetObjectId(t->lt.values[UC_LOG_CALLER - 1]);
			/* a run: the same caller and the same shape as the row before */
			if (p != NULL && p->caller == t->caller &&
				datumIsEqual(t->lt.values[UC_LOG_NAMES - 1], p->lt.values[UC_LOG_NAMES - 1],
							 false, -1) &&
				datumIsEqual(t->lt.values[UC_LOG_NROLE - 1], p->lt.values[UC_LOG_NROLE - 1],
							 false, -1) &&
				datumIsEqual(t->lt.values[UC_LOG_TYPES - 1], p->lt.values[UC_LOG_TYPES - 1],
							 false, -1))
			{
				t->run = p->run;
				t->class = p->class;
			}
			else
			{
				t->run = nruns++;
				t->class = class = key_class(target, &t->lt);
			}
			t->keysig = key_signature(class, &t->lt);
			taken[j] = t;
			after = t->id;
		}
		/* callers by OID and name (not decoded values: nothing of theirs runs) */
		for (int j = 0; j < n; j++)
		{
			if (j > 0 && taken[j]->run == taken[j - 1]->run)
				taken[j]->caller = taken[j - 1]->caller;
			else
			{
				char	   *name = NameStr(*DatumGetName(taken[j]->lt.values[UC_LOG_CALLER_NAME - 1]));

				taken[j]->caller = fold_caller(taken[j]->caller, name);
				if (!OidIsValid(taken[j]->caller) && res->error == NULL)
					set_error(res, psprintf("role \"%s\", which logged rows for this table, does not exist",
											name),
							  ERRCODE_UNDEFINED_OBJECT);
			}
		}

		rows = palloc(n * sizeof(UcTaken *));

		/*
		 * First the whole window in one subtransaction (one per window,
		 * however many runs it has); if that fails, run by run, and a run
		 * that fails key by key.
		 */
		{
			int64		held = 0;
			int			nrows = eligible_rows(taken, 0, n, &failed, rows, &held);

			if (nrows == 0 || write_and_delete(target, rows, nrows, false, res))
			{
				res->withheld += held;
				SPI_freetuptable(tuptable);
				MemoryContextSwitchTo(cxt);
				MemoryContextReset(windowcxt);
				continue;
			}
		}
		for (int first = 0; first < n;)
		{
			int			last = first;
			int			nrows;

			while (last < n && taken[last]->run == taken[first]->run)
				last++;
			nrows = eligible_rows(taken, first, last, &failed, rows, &res->withheld);
			if (nrows > 0 && !write_and_delete(target, rows, nrows, false, res))
			{
				/*
				 * Key by key (in an inexact class, the class is one key);
				 * different keys, so their order does not matter
				 */
				qsort(rows, nrows, sizeof(UcTaken *), by_key);
				for (int k = 0; k < nrows;)
				{
					int			e = k;

					while (e < nrows && same_signature(rows[e]->keysig, rows[k]->keysig))
						e++;
					if (!write_and_delete(target, rows + k, e - k, true, res))
					{
						failed_add(&failed, rows[k]);
						res->withheld += e - k;
					}
					k = e;
				}
			}
			first = last;
			CHECK_FOR_INTERRUPTS();
		}
		SPI_freetuptable(tuptable);
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(windowcxt);
	}

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	return true;
}

/*
 * Record a target's fold in upsert_counter_fold_status, as the log's
 * owner: what it folded, and its failure if any (whose count grows only
 * when nothing could be folded, so that the worker backs off a target
 * that is stuck, not one that has a withheld key among good ones).
 */
static void
record_status(Oid target, const UcFoldResult *res)
{
	const char *status = uc_log_table("upsert_counter_fold_status");
	char	   *sql;
	Oid			argtypes[6] = {REGCLASSOID, INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		params[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			rc;

	sql = psprintf("INSERT INTO %s AS s (target, last_fold, folded, last_lag, last_error, "
				   "last_sqlstate, last_error_at, failures) "
				   "VALUES ($1, CASE WHEN $2 OPERATOR(pg_catalog.>) 0 THEN pg_catalog.now() END, $2, "
				   "pg_catalog.now() OPERATOR(pg_catalog.-) $3, $4, $5, "
				   "CASE WHEN $4 IS NOT NULL THEN pg_catalog.now() END, "
				   "CASE WHEN $6 THEN 1 ELSE 0 END) "
				   "ON CONFLICT (target) DO UPDATE SET "
				   "last_fold = coalesce(EXCLUDED.last_fold, s.last_fold), "
				   "folded = s.folded OPERATOR(pg_catalog.+) EXCLUDED.folded, "
				   "last_lag = coalesce(EXCLUDED.last_lag, s.last_lag), "
				   "last_error = EXCLUDED.last_error, last_sqlstate = EXCLUDED.last_sqlstate, "
				   "last_error_at = EXCLUDED.last_error_at, "
				   "failures = CASE WHEN $6 THEN s.failures OPERATOR(pg_catalog.+) 1 ELSE 0 END",
				   status);
	params[0] = ObjectIdGetDatum(target);
	params[1] = Int64GetDatum(res->folded);
	params[2] = TimestampTzGetDatum(res->oldest);
	params[3] = res->error ? CStringGetTextDatum(res->error) : (Datum) 0;
	params[4] = res->sqlstate ? CStringGetTextDatum(res->sqlstate) : (Datum) 0;
	params[5] = BoolGetDatum(res->error != NULL && res->folded == 0);
	if (res->folded == 0)
		nulls[2] = 'n';
	if (res->error == NULL)
		nulls[3] = nulls[4] = 'n';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = uc_log_query(sql, 6, argtypes, params, nulls, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
	SPI_finish();
}

/* Record a fold that failed as a whole (its transaction rolled back) */
static void
record_failure(Oid target, const char *error, const char *sqlstate)
{
	UcFoldResult res;

	memset(&res, 0, sizeof(res));
	res.error = (char *) error;
	res.sqlstate = (char *) sqlstate;
	record_status(target, &res);
}

/*
 * The targets with logged rows, for the current user's fold (those it may
 * insert into: all of them for the worker, a superuser) or, with
 * backoff, the worker's round (leaving out those whose last fold failed
 * less than their back-off ago).  A list of OIDs in the current context.
 */
static List *
pending_targets(Oid only, bool backoff)
{
	const char *nsp = quote_identifier(get_namespace_name(get_rel_namespace(uc_log_relid())));

	/* (the tables' schema, quoted; they are named below) */
	char	   *sql;
	List	   *targets = NIL;
	int			rc;
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		params[1] = {ObjectIdGetDatum(only)};
	char		nulls[1] = {OidIsValid(only) ? ' ' : 'n'};
	MemoryContext callercxt = CurrentMemoryContext;

	/* a loose index scan over (target, id): one probe per target */
	sql = psprintf("WITH RECURSIVE t(target) AS ("
				   " (SELECT target FROM %s.upsert_counter_delta ORDER BY target LIMIT 1)"
				   " UNION ALL"
				   " SELECT (SELECT d.target FROM %s.upsert_counter_delta d"
				   "  WHERE d.target OPERATOR(pg_catalog.>) t.target ORDER BY d.target LIMIT 1)"
				   " FROM t WHERE t.target IS NOT NULL)"
				   " SELECT t.target FROM t LEFT JOIN %s.upsert_counter_fold_status s"
				   " ON s.target OPERATOR(pg_catalog.=) t.target"
				   " WHERE t.target IS NOT NULL"
				   " AND ($1 IS NULL OR t.target OPERATOR(pg_catalog.=) $1)"
				   "%s ORDER BY t.target",
				   nsp, nsp, nsp,
				   backoff ?
				   " AND (s.failures IS NULL OR s.failures OPERATOR(pg_catalog.=) 0"
				   " OR s.last_error_at OPERATOR(pg_catalog.+) pg_catalog.make_interval("
				   "secs => LEAST(60, pg_catalog.power(2, LEAST(s.failures, 10))::pg_catalog.float8))"
				   " OPERATOR(pg_catalog.<=) pg_catalog.now())" : "");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = uc_log_query(sql, 1, argtypes, params, nulls, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
	for (uint64 j = 0; j < SPI_processed; j++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext oldcxt = MemoryContextSwitchTo(callercxt);

		targets = lappend_oid(targets, DatumGetObjectId(d));
		MemoryContextSwitchTo(oldcxt);
	}
	SPI_finish();
	return targets;
}

/* ---------------------------------------------------------------------
 * The SQL-callable side
 * ---------------------------------------------------------------------
 */

/* May the current user insert into relid (into some column of it)? */
static bool
may_insert(Oid relid)
{
	return pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK ||
		pg_attribute_aclcheck_all(relid, GetUserId(), ACL_INSERT, ACLMASK_ANY) == ACLCHECK_OK;
}

/*
 * upsert_counter_fold(target): fold now, in the caller's transaction, all
 * that is logged for target (or for every target the caller may insert
 * into), however many rounds it takes.  The caller needs INSERT on a
 * target (on a column of it); the rows are written as the users who
 * logged them.  A target that no longer exists is left to fold_target(),
 * which says so.
 */
Jsonb *
uc_fold_now(Oid target)
{
	int64		folded = 0;
	int64		inserted = 0;
	int64		updated = 0;
	int64		withheld = 0;
	char	   *error = NULL;
	char	   *sqlstate = NULL;
	List	   *targets;
	ListCell   *lc;
	JsonbParseState *st = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *res;

	PreventCommandIfReadOnly("upsert_counter_fold()");
	PreventCommandIfParallelMode("upsert_counter_fold()");
	/* (from a table's trigger, the fold would nest in its own writes) */
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot run upsert_counter_fold() within security-restricted operation")));

	if (OidIsValid(target) && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target)) &&
		!may_insert(target))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(target));

	/*
	 * The writes run in a security-restricted operation, where no deferred
	 * trigger may be queued: make constraints immediate for the rest of the
	 * transaction, as SET CONSTRAINTS ALL IMMEDIATE does (the worker runs
	 * so too), so that a deferred constraint is checked at each write.
	 */
	{
		ConstraintsSetStmt *immediate = makeNode(ConstraintsSetStmt);

		immediate->constraints = NIL;
		immediate->deferred = false;
		AfterTriggerSetState(immediate);
	}

	targets = pending_targets(target, false);
	foreach(lc, targets)
	{
		Oid			t = lfirst_oid(lc);
		UcFoldResult res;

		if (!OidIsValid(target) &&
			(!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(t)) || !may_insert(t)))
			continue;
		/* everything logged for it, withheld keys aside, waiting for other folds */
		(void) fold_target(t, INT_MAX, true, &res);
		record_status(t, &res);
		folded += res.folded;
		inserted += res.inserted;
		updated += res.updated;
		withheld += res.withheld;
		if (res.error && res.withheld > 0 && error == NULL)
		{
			/* the message may quote a row: for who may read the table */
			error = pg_class_aclcheck(t, GetUserId(), ACL_SELECT) == ACLCHECK_OK ?
				res.error : NULL;
			sqlstate = res.sqlstate;
		}
	}

	/* rows that could not be written: say so, after the others were */
	if (withheld > 0)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("upsert_counter_fold() left " INT64_FORMAT " logged rows unfolded", withheld),
				 error ? errdetail("The first failure: %s (SQLSTATE %s).", error, sqlstate) :
				 sqlstate ? errdetail("The first failure has SQLSTATE %s.", sqlstate) : 0,
				 errhint("See upsert_counter_backlog; the rows are folded once the cause is fixed, or deleted with upsert_counter_discard().")));

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	v.type = jbvNumeric;
	for (int i = 0; i < 4; i++)
	{
		static const char *const names[] = {"folded", "inserted", "updated", "withheld"};
		int64		n = i == 0 ? folded : i == 1 ? inserted : i == 2 ? updated : withheld;

		k.val.string.val = (char *) names[i];
		k.val.string.len = strlen(names[i]);
		pushJsonbValue(&st, WJB_KEY, &k);
		v.val.numeric = int64_to_numeric(n);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * upsert_counter_discard(target): delete what is logged for target without
 * folding it.  For the target's owner, or the log's owner (a target that
 * no longer exists has no other).
 */
int64
uc_fold_discard(Oid target)
{
	char	   *sql;
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		params[1] = {ObjectIdGetDatum(target)};
	int			rc;
	int64		n;
	bool		exists = SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target));

	PreventCommandIfReadOnly("upsert_counter_discard()");
	if (!has_privs_of_role(GetUserId(), uc_log_owner()) &&
		!(exists && uc_class_ownercheck(target, GetUserId())))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE,
					   exists ? get_rel_name(target) : psprintf("%u", target));

	/* after a fold of the target that runs, not in the middle of it */
	target_lock(target, true);

	sql = psprintf("WITH gone AS (DELETE FROM %s WHERE target OPERATOR(pg_catalog.=) $1 RETURNING 1) "
				   "SELECT pg_catalog.count(*) FROM gone",
				   uc_log_table("upsert_counter_delta"));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = uc_log_query(sql, 1, argtypes, params, NULL, false);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
	{
		bool		isnull;

		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return n;
}

/* ---------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------
 */

/*
 * After the commit of a transaction that logged rows: start the
 * database's fold worker unless one runs.  Runs after the commit, so it
 * must not fail: it only probes a lock without waiting and registers a
 * worker, and says so in a WARNING if there is no slot for one.
 */
void
uc_fold_ensure_worker(void)
{
	static TimestampTz last_start = 0;
	LOCKTAG		tag;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcxt;
	TimestampTz now;

	if (!IsUnderPostmaster)
		return;					/* single-user mode: no workers */
	now = GetCurrentTimestamp();

	/*
	 * A worker this backend started less than a second ago may not hold
	 * its lock yet: do not start another.
	 */
	if (last_start != 0 && !TimestampDifferenceExceeds(last_start, now, 1000))
		return;

	worker_locktag(&tag, MyDatabaseId);
	if (uc_lock_acquire_nowait(&tag, ExclusiveLock, true, false) ==
		LOCKACQUIRE_NOT_AVAIL)
		return;					/* held: a worker runs */
	LockRelease(&tag, ExclusiveLock, true);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* never restarted: the next commit that logs starts a new one */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "upsert_counter");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "upsert_counter_fold_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "upsert_counter fold for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "upsert_counter fold");
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = 0;

	/* after commit: the transaction's memory is going away */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		last_start = now;
		pfree(handle);
	}
	else
		ereport(LOG,
				(errmsg("could not start the upsert_counter fold worker for database %u: no background worker slot is free",
						MyDatabaseId),
				 errdetail("Its logged rows stay in the log until a fold worker starts or upsert_counter_fold() runs."),
				 errhint("Raise max_worker_processes.")));
	MemoryContextSwitchTo(oldcxt);
}

/* Is the extension still there, with its log? In a transaction. */
static bool
extension_present(void)
{
	return OidIsValid(get_extension_oid("upsert_counter", true)) &&
		OidIsValid(get_relname_relid("upsert_counter_delta",
									 uc_extension_schema(false)));
}

/*
 * One round: fold every target that has rows, each in a transaction of its
 * own.  Returns how many rows it folded, or -1 if the extension is gone.
 */
static int64
fold_round(MemoryContext roundcxt)
{
	List	   *targets;
	ListCell   *lc;
	volatile int64 folded = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!extension_present())
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		return -1;
	}
	MemoryContextSwitchTo(roundcxt);
	targets = pending_targets(InvalidOid, true);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(roundcxt);

	foreach(lc, targets)
	{
		Oid			target = lfirst_oid(lc);

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "upsert_counter fold");
		PG_TRY();
		{
			UcFoldResult res;
			ConstraintsSetStmt *immediate = makeNode(ConstraintsSetStmt);

			/*
			 * Deferred constraint triggers fire at the end of each write,
			 * in its subtransaction, so that a row they refuse withholds
			 * its key, not the target's whole fold at commit.
			 */
			immediate->constraints = NIL;
			immediate->deferred = false;
			AfterTriggerSetState(immediate);

			/* a target another fold holds is left for the next round */
			if (fold_target(target, uc_fold_batch_size, false, &res))
			{
				record_status(target, &res);
				folded += res.folded;
			}
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(roundcxt);
			edata = CopyErrorData();
			FlushErrorState();
			/* in the server log, with the target named */
			ereport(LOG,
					(errmsg("upsert_counter fold of relation with OID %u failed: %s",
							target, edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
			AbortCurrentTransaction();

			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			record_failure(target,
						   edata->detail ? psprintf("%s (%s)", edata->message, edata->detail) :
						   edata->message,
						   unpack_sql_state(edata->sqlerrcode));
			PopActiveSnapshot();
			CommitTransactionCommand();
			FreeErrorData(edata);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(roundcxt);
		pgstat_report_activity(STATE_IDLE, NULL);
		CHECK_FOR_INTERRUPTS();
	}
	return folded;
}

void
upsert_counter_fold_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	LOCKTAG		tag;
	MemoryContext roundcxt;
	long		sleep_ms = uc_fold_interval;
	TimestampTz idle_since;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* one worker a database: the one that holds the lock; taken at once */
	worker_locktag(&tag, dboid);
	if (uc_lock_acquire_nowait(&tag, ExclusiveLock, true, true) ==
		LOCKACQUIRE_NOT_AVAIL)
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("upsert_counter fold");

	/*
	 * A key whose row a long transaction holds locked waits at most this
	 * long, then is withheld and retried in a later round, so that one
	 * lock does not stop the worker (as a statement's lock_timeout).
	 */
	SetConfigOption("lock_timeout", UC_FOLD_LOCK_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);

	roundcxt = AllocSetContextCreate(TopMemoryContext, "upsert_counter fold round",
									 ALLOCSET_DEFAULT_SIZES);
	idle_since = GetCurrentTimestamp();
	for (;;)
	{
		int64		folded;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!uc_fold_worker_enabled)
			break;				/* upsert_counter.fold_worker = off */
		MemoryContextReset(roundcxt);
		folded = fold_round(roundcxt);
		if (folded < 0)
			break;				/* DROP EXTENSION */
		if (folded > 0)
		{
			idle_since = GetCurrentTimestamp();
			sleep_ms = uc_fold_interval;
		}
		else
		{
			sleep_ms = Min(Max(sleep_ms * 2, uc_fold_interval), 1000);
			if (uc_fold_idle_exit > 0 &&
				TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
										   uc_fold_idle_exit * 1000))
			{
				/*
				 * Leave: release the lock, then look once more.  A row
				 * committed before this look is folded; a transaction that
				 * commits after it finds the lock free and starts a worker.
				 */
				LockRelease(&tag, ExclusiveLock, true);
				MemoryContextReset(roundcxt);
				folded = fold_round(roundcxt);
				if (folded <= 0)
					break;
				if (uc_lock_acquire_nowait(&tag, ExclusiveLock, true, true) ==
					LOCKACQUIRE_NOT_AVAIL)
					break;		/* another worker took over */
				idle_since = GetCurrentTimestamp();
				sleep_ms = uc_fold_interval;
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}
