/*-------------------------------------------------------------------------
 *
 * fold.c
 *	  Background mode's fold: taking a target's logged rows, merging them
 *	  per key and writing them, exactly once; the background worker that
 *	  does it for a database; upsert_counter_fold() and _discard().
 *
 * A fold of one target, in one transaction (the worker's own, or the
 * caller's in upsert_counter_fold()):
 *	- takes a lock that serializes folds of that target (an advisory
 *	  transaction lock of a kind user code cannot take), so that two folds
 *	  never apply a target's rows out of log order;
 *	- deletes up to upsert_counter.fold_batch_size of the target's oldest
 *	  log rows, in id order, and gets them back (DELETE ... RETURNING, as
 *	  the log's owner);
 *	- merges each run of consecutive rows of one calling user and one shape
 *	  (the same target, column names and roles) in a batch state (batch.c):
 *	  deltas summed, the later assigned value kept, the earlier insert-only
 *	  one, which is what the run's calls would have left one by one;
 *	- writes the runs in log order, each as its user, in key order, through
 *	  the cached statements (the same path as a batch in statement mode).
 * The deletion and the writes commit together or not at all, so every
 * committed log row is applied exactly once: a crash, a kill or an
 * immediate shutdown before the commit leaves the rows in the log for the
 * next fold.  Rows logged by transactions still in progress are not seen
 * and wait for a later fold.
 *
 * Each user's rows are written in a security-restricted operation under
 * that user, with search_path set to "$user", public, pg_temp and every
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
 * that has rows pending, each in a transaction of its own: a target whose
 * fold fails (a CHECK the merged row violates, a dropped target, a user
 * who lost a privilege) keeps its rows, gets its error recorded in
 * upsert_counter_fold_status (and the server log), is retried after a
 * back-off that doubles up to a minute, and does not hold up the others.
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
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "background.h"

/* Our advisory locks: field4 = 3, a kind the SQL functions never use */
#define UC_LOCK_KIND		3
#define UC_LOCK_WORKER		0x464F4C44	/* "FOLD": the worker's lock */
#define UC_LOCK_TARGET		0x54524754	/* "TRGT": one target's folds */

bool		uc_fold_worker_enabled = true;
int			uc_fold_interval = 100;
int			uc_fold_batch_size = 50000;
int			uc_fold_idle_exit = 60;


static void
worker_locktag(LOCKTAG *tag, Oid dboid)
{
	SET_LOCKTAG_ADVISORY(*tag, dboid, 0, UC_LOCK_WORKER, UC_LOCK_KIND);
}

/* ---------------------------------------------------------------------
 * Folding one target
 * ---------------------------------------------------------------------
 */

/*
 * A run: consecutive logged rows (in log order) of one calling user and
 * one shape, merged.  Runs are written in log order, so that an assigned
 * or insert-only value of a later row is never written before an earlier
 * one of another shape or user.
 */
typedef struct UcFoldGroup
{
	Oid			caller;
	UcBatchState *state;
	const char *namekey;		/* the shape's cache key, for the next row */
	int			namekeylen;
} UcFoldGroup;

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

/* The log's tuple descriptor, for row_order() */
static TupleDesc logdesc;

/* qsort: log rows by id */
static int
row_order(const void *a, const void *b)
{
	bool		isnull;
	int64		x = DatumGetInt64(SPI_getbinval(*(HeapTuple const *) a, logdesc, 1, &isnull));
	int64		y = DatumGetInt64(SPI_getbinval(*(HeapTuple const *) b, logdesc, 1, &isnull));

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Write a group's rows as its user: a security-restricted operation, with
 * search_path fixed and every setting changed by user code undone.
 */
static void
write_as_caller(UcFoldGroup *g, int64 *inserted, int64 *updated)
{
	Oid			save_userid;
	int			save_secctx;
	int			save_nestlevel;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(g->caller)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u, which logged rows for this table, no longer exists",
						g->caller),
				 errhint("Delete them with upsert_counter_discard(), or restore the role.")));

	GetUserIdAndSecContext(&save_userid, &save_secctx);
	SetUserIdAndSecContext(g->caller, save_secctx | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		(void) set_config_option("search_path", "\"$user\", public, pg_temp",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		uc_batch_write(g->state, inserted, updated);
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_secctx);
	}
	PG_END_TRY();
}

/*
 * Fold up to limit of target's oldest logged rows, in the current
 * transaction.  Returns how many it folded; adds what the writes did to
 * *inserted and *updated, and sets *oldest to the oldest row's logged_at.
 */
static int64
fold_target(Oid target, int limit, int64 *inserted, int64 *updated,
			TimestampTz *oldest)
{
	LOCKTAG		tag;
	MemoryContext cxt;
	MemoryContext oldcxt;
	UcFoldGroup *groups = NULL;
	int			ngroups = 0;
	int			maxgroups = 0;
	int64		n = 0;
	char	   *sql;
	Oid			argtypes[2] = {REGCLASSOID, INT4OID};
	Datum		params[2];
	int			rc;
	const char *log;
	HeapTuple  *order;
	TupleDesc	desc;
	MemoryContext rowcxt;
	UcLoggedRow rows[2];

	/* folds of one target, one at a time, in log order */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, target, UC_LOCK_TARGET, UC_LOCK_KIND);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);

	/*
	 * The oldest rows: the highest id among the first limit of the
	 * target's (an index scan of its primary key), then every row up to
	 * it.  Rows of transactions in progress are invisible to both and stay
	 * for a later fold; a row another session deleted meanwhile (a discard)
	 * is not returned.  No FOR UPDATE: folds of the target are serialized
	 * by the lock above, and the DELETE only returns what it deleted.
	 */
	log = uc_log_table("upsert_counter_delta");
	sql = psprintf("DELETE FROM %s WHERE target OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.<=) "
				   "(SELECT pg_catalog.max(id) FROM (SELECT id FROM %s WHERE target OPERATOR(pg_catalog.=) $1 "
				   "ORDER BY id LIMIT $2) first) "
				   "RETURNING id, target, caller, names, nrole, types, vals, logged_at",
				   log, log);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "upsert_counter fold",
								ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	params[0] = ObjectIdGetDatum(target);
	params[1] = Int32GetDatum(limit);
	rc = uc_log_query(sql, 2, argtypes, params, NULL, false);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));

	n = (int64) SPI_processed;
	if (n > 0 && !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u, which has rows logged for it, no longer exists",
						target),
				 errhint("Delete its rows with upsert_counter_discard(%u).", target)));

	/* in log order (the DELETE returns them in no promised order) */
	order = palloc(Max(n, 1) * sizeof(HeapTuple));
	for (uint64 j = 0; j < SPI_processed; j++)
		order[j] = SPI_tuptable->vals[j];
	desc = SPI_tuptable->tupdesc;
	logdesc = desc;
	qsort(order, n, sizeof(HeapTuple), row_order);

	/* merge runs of one user and shape, in log order */
	oldcxt = MemoryContextSwitchTo(cxt);
	rowcxt = AllocSetContextCreate(cxt, "upsert_counter fold row", ALLOCSET_SMALL_SIZES);
	for (int64 j = 0; j < n; j++)
	{
		UcLoggedRow *row = &rows[j % 2];
		UcLoggedRow *prev = j > 0 ? &rows[(j + 1) % 2] : NULL;
		UcFoldGroup *g = ngroups > 0 ? &groups[ngroups - 1] : NULL;

		MemoryContextSwitchTo(rowcxt);
		uc_log_decode(order[j], desc, row, prev, cxt);
		MemoryContextSwitchTo(cxt);
		if (j == 0 || row->logged_at < *oldest)
			*oldest = row->logged_at;
		if (g == NULL || g->caller != row->caller ||
			g->namekeylen != row->args.namekeylen ||
			memcmp(g->namekey, row->args.namekey, row->args.namekeylen) != 0)
		{
			if (ngroups == maxgroups)
			{
				maxgroups = Max(4, maxgroups * 2);
				groups = groups == NULL ? palloc(maxgroups * sizeof(UcFoldGroup)) :
					repalloc(groups, maxgroups * sizeof(UcFoldGroup));
			}
			g = &groups[ngroups++];
			g->caller = row->caller;
			g->state = uc_batch_create(cxt, false, false);
			/* the key holds NUL bytes: copy it whole */
			g->namekey = memcpy(palloc(Max(row->args.namekeylen, 1)),
								row->args.namekey, row->args.namekeylen);
			g->namekeylen = row->args.namekeylen;
		}
		uc_batch_add_with(g->state, &row->args, convert_logged, row);
		/* the batch copied the values; the shape stays in cxt */
		MemoryContextReset(rowcxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextSwitchTo(oldcxt);

	for (int i = 0; i < ngroups; i++)
		write_as_caller(&groups[i], inserted, updated);

	SPI_finish();
	MemoryContextDelete(cxt);
	return n;
}

/*
 * Record a target's fold (ok) or its failure (error, sqlstate) in
 * upsert_counter_fold_status, as the log's owner.  SPI connected.
 */
static void
record_status(Oid target, bool ok, int64 folded, TimestampTz oldest,
			  const char *error, const char *sqlstate)
{
	const char *status = uc_log_table("upsert_counter_fold_status");
	char	   *sql;
	Oid			argtypes[5] = {REGCLASSOID, INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
	Datum		params[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			rc;

	if (ok)
		sql = psprintf("INSERT INTO %s AS s (target, last_fold, folded, last_lag) "
					   "VALUES ($1, pg_catalog.now(), $2, pg_catalog.now() OPERATOR(pg_catalog.-) $3) "
					   "ON CONFLICT (target) DO UPDATE SET last_fold = EXCLUDED.last_fold, "
					   "folded = s.folded OPERATOR(pg_catalog.+) EXCLUDED.folded, "
					   "last_lag = EXCLUDED.last_lag, last_error = NULL, last_sqlstate = NULL, "
					   "last_error_at = NULL, failures = 0",
					   status);
	else
		sql = psprintf("INSERT INTO %s AS s (target, last_error, last_sqlstate, last_error_at, failures) "
					   "VALUES ($1, $4, $5, pg_catalog.now(), 1) "
					   "ON CONFLICT (target) DO UPDATE SET last_error = EXCLUDED.last_error, "
					   "last_sqlstate = EXCLUDED.last_sqlstate, last_error_at = EXCLUDED.last_error_at, "
					   "failures = s.failures OPERATOR(pg_catalog.+) 1",
					   status);
	params[0] = ObjectIdGetDatum(target);
	params[1] = Int64GetDatum(folded);
	params[2] = TimestampTzGetDatum(oldest);
	params[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	params[4] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	if (error == NULL)
		nulls[3] = 'n';
	if (sqlstate == NULL)
		nulls[4] = 'n';

	rc = uc_log_query(sql, 5, argtypes, params, nulls, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
}

/* Fold a target and record it, in the current transaction */
static int64
fold_and_record(Oid target, int limit, int64 *inserted, int64 *updated)
{
	TimestampTz oldest = 0;
	int64		n = fold_target(target, limit, inserted, updated, &oldest);

	if (n > 0)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		record_status(target, true, n, oldest, NULL, NULL);
		SPI_finish();
	}
	return n;
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
				   "secs => LEAST(60, pg_catalog.power(2, LEAST(s.failures, 10))::float8))"
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
	List	   *targets;
	ListCell   *lc;
	JsonbParseState *st = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *res;

	PreventCommandIfReadOnly("upsert_counter_fold()");
	PreventCommandIfParallelMode("upsert_counter_fold()");
	if (OidIsValid(target) && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target)) &&
		!may_insert(target))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(target));

	targets = pending_targets(target, false);
	foreach(lc, targets)
	{
		Oid			t = lfirst_oid(lc);

		if (!OidIsValid(target) &&
			(!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(t)) || !may_insert(t)))
			continue;
		for (;;)
		{
			int64		n = fold_and_record(t, uc_fold_batch_size, &inserted, &updated);

			folded += n;
			if (n < uc_fold_batch_size)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	v.type = jbvNumeric;
	for (int i = 0; i < 3; i++)
	{
		static const char *const names[] = {"folded", "inserted", "updated"};
		int64		n = i == 0 ? folded : i == 1 ? inserted : updated;

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
		int64		inserted = 0;
		int64		updated = 0;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "upsert_counter fold");
		PG_TRY();
		{
			folded += fold_and_record(target, uc_fold_batch_size, &inserted, &updated);
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
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			record_status(target, false, 0, 0,
						  edata->detail ? psprintf("%s (%s)", edata->message, edata->detail) :
						  edata->message,
						  unpack_sql_state(edata->sqlerrcode));
			SPI_finish();
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
