/*-------------------------------------------------------------------------
 *
 * deltalog.c
 *	  Background mode's log: appending a call's rows to upsert_counter_delta,
 *	  decoding them again, and reading a counter with what is pending.
 *
 * With upsert_counter.flush = 'background' a call does not touch its
 * target.  It does everything a call does up to the write: it reads its
 * arguments, resolves its shape and converts every value (so every error
 * of the arguments is raised at the call), and checks the privileges the
 * statement will need, as commit mode does (buffer.c).  Then it appends one
 * row per key to the log: the target, the calling user, the column names
 * role by role, and each value in its type's binary form (typsend), so
 * that the fold gets back exactly the Datum the call converted, whatever
 * DateStyle, TimeZone or search_path the fold runs under.  The aggregate
 * merges its rows first (batch.c) and logs one row per distinct key.
 *
 * The log belongs to the extension's owner and no one else may write it:
 * the row is inserted as that owner (SECURITY_LOCAL_USERID_CHANGE, as
 * ri_triggers.c switches to a table's owner for its checks), by core's
 * single-row insert without a plan (execReplication.c): the cost of a
 * call is close to that of the INSERT of one row.
 *
 * When a transaction that logged rows commits, the database's fold worker
 * is started unless one runs (fold.c), from the extension's one
 * transaction callback (upsert_counter.c).
 *
 * upsert_counter_read() is here too: a counter's row as the table has it
 * with the pending deltas applied, both read under one snapshot.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "background.h"

/* The log table, its owner and its id sequence; reset by invalidations */
static Oid	log_relid = InvalidOid;
static Oid	log_owner = InvalidOid;
static Oid	log_idseq = InvalidOid;

/* This transaction logged rows: start the fold worker at commit */
static bool logged_in_xact = false;

static void
forget_log(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == log_relid)
		log_relid = log_owner = log_idseq = InvalidOid;
}

/* The log table's OID; an error if this extension version has none */
Oid
uc_log_relid(void)
{
	if (!OidIsValid(log_relid))
	{
		Oid			nsp = uc_extension_schema(false);
		Oid			relid = get_relname_relid("upsert_counter_delta", nsp);
		Relation	rel;

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("upsert_counter.flush = background needs upsert_counter 1.3 or later in this database"),
					 errhint("Run ALTER EXTENSION upsert_counter UPDATE.")));
		rel = table_open(relid, AccessShareLock);
		log_owner = rel->rd_rel->relowner;
		log_idseq = uc_identity_sequence(rel, 1);
		table_close(rel, AccessShareLock);
		log_relid = relid;
	}
	return log_relid;
}

/* The role that owns the log, which reads and writes it */
Oid
uc_log_owner(void)
{
	(void) uc_log_relid();
	return log_owner;
}

/*
 * Insert a row into the log through core's single-row insert without a
 * plan, ExecSimpleRelationInsert() (executor/execReplication.c, as
 * logical replication applies a row): its constraints, indexes and any
 * triggers a DBA put on it apply; its defaults are computed here, id from
 * its identity sequence and logged_at as now() gives it.  The caller is
 * the log's owner.
 */
static void
insert_log_row(Datum *values, bool *nulls)
{
	Relation	rel = table_open(uc_log_relid(), RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *slot;

	if (desc->natts != UC_LOG_NATTS)
		elog(ERROR, "upsert_counter_delta has %d columns, not %d", desc->natts, UC_LOG_NATTS);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	uc_exec_init_range_table(estate, rte);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(rri, false);
	AfterTriggerBeginQuery();

	slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, desc->natts * sizeof(Datum));
	memcpy(slot->tts_isnull, nulls, desc->natts * sizeof(bool));
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationInsert(rri, estate, slot);

	AfterTriggerEndQuery(estate);
	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/*
 * Append one row of a shape to the log, as logged by caller; values
 * converted for the shape.
 */
static void
log_row(const UcShape *shape, const Datum *values, const bool *nulls,
		Oid caller)
{
	int			n = shape->ncols;
	Datum	   *names = palloc(Max(n, 1) * sizeof(Datum));
	Datum	   *types = palloc(Max(n, 1) * sizeof(Datum));
	Datum	   *vals = palloc(Max(n, 1) * sizeof(Datum));
	bool	   *valnulls = palloc(Max(n, 1) * sizeof(bool));
	Datum		nrole[UC_NROLES];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Oid			save_userid;
	int			save_secctx;

	for (int i = 0; i < n; i++)
	{
		const UcColumn *col = &shape->cols[i];

		if (!OidIsValid(col->sendfn.fn_oid))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of type %s cannot be logged in background mode",
							col->name, format_type_be(col->typid)),
					 errdetail("Type %s has no binary output and input functions.",
							   format_type_be(col->typid)),
					 errhint("Set upsert_counter.flush to statement or commit for calls on relation \"%s\".",
							 shape->relname)));
		names[i] = CStringGetTextDatum(col->name);
		types[i] = ObjectIdGetDatum(col->typid);
		valnulls[i] = nulls[i];
		vals[i] = nulls[i] ? (Datum) 0 :
			PointerGetDatum(SendFunctionCall((FmgrInfo *) &col->sendfn, values[i]));
	}
	for (int r = 0; r < UC_NROLES; r++)
		nrole[r] = Int16GetDatum((int16) shape->nrole[r]);

	/* the log's owner writes it, and checks its own rights on it */
	GetUserIdAndSecContext(&save_userid, &save_secctx);
	SetUserIdAndSecContext(uc_log_owner(), save_secctx | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		Datum		row[UC_LOG_NATTS];
		bool		rownulls[UC_LOG_NATTS] = {false};

		row[UC_LOG_ID - 1] = Int64GetDatum(nextval_internal(log_idseq, true));
		row[UC_LOG_TARGET - 1] = ObjectIdGetDatum(shape->relid);
		row[UC_LOG_CALLER - 1] = ObjectIdGetDatum(caller);
		row[UC_LOG_CALLER_NAME - 1] = DirectFunctionCall1(namein,
														  CStringGetDatum(GetUserNameFromId(caller, false)));
		row[UC_LOG_NAMES - 1] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
		row[UC_LOG_NROLE - 1] = PointerGetDatum(construct_array(nrole, UC_NROLES, INT2OID, 2, true, TYPALIGN_SHORT));
		row[UC_LOG_TYPES - 1] = PointerGetDatum(construct_array(types, n, REGTYPEOID, sizeof(Oid), true, TYPALIGN_INT));
		row[UC_LOG_VALS - 1] = PointerGetDatum(construct_md_array(vals, valnulls, 1, dims, lbs,
																  BYTEAOID, -1, false, TYPALIGN_INT));
		row[UC_LOG_LOGGED_AT - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		insert_log_row(row, rownulls);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_secctx);
	}
	PG_END_TRY();
	logged_in_xact = true;
}

/*
 * What a call checks before it logs rows of a shape, as the statement it
 * stands for would check them: the user's privileges; and what background
 * mode refuses, tables whose rows the fold could not write as the call
 * would have (another session's fold cannot see a temporary table, and
 * would apply row-level security policies after the call has returned).
 */
static void
check_loggable(const UcShape *shape, Oid userid)
{
	uc_shape_check_privileges(shape, userid);
	if (get_rel_persistence(shape->relid) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("upsert_counter.flush = background cannot log rows for temporary table \"%s\"",
						shape->relname),
				 errdetail("The fold runs in another session, which cannot see it."),
				 errhint("Set upsert_counter.flush to statement or commit for calls on this table.")));
	if (check_enable_rls(shape->relid, userid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("upsert_counter.flush = background cannot log rows for relation \"%s\", which has row-level security",
						shape->relname),
				 errdetail("The fold would apply its policies after the call returned, when a row they refuse can no longer fail the call."),
				 errhint("Set upsert_counter.flush to statement or commit for calls on this table.")));
}

/* One call in background mode: check, convert and log its row */
void
uc_log_jsonb(Oid relid, Jsonb *const *objs)
{
	UcArgs		args = {0};
	UcRef		ref = {NULL};
	UcCacheEntry *entry;
	Oid			userid;
	int			secctx;

	uc_deferred_checks(relid, &userid, &secctx);
	uc_args_read(&args, relid, objs);
	entry = uc_cache_acquire(&args, &ref);
	PG_TRY();
	{
		const UcShape *shape = uc_entry_shape(entry);
		Datum	   *values = palloc(Max(shape->ncols, 1) * sizeof(Datum));
		bool	   *nulls = palloc(Max(shape->ncols, 1) * sizeof(bool));

		check_loggable(shape, userid);
		for (int i = 0; i < shape->ncols; i++)
			values[i] = uc_value_to_datum(shape, i, &args.values[i], &nulls[i], NULL);
		log_row(shape, values, nulls, userid);
	}
	PG_FINALLY();
	{
		uc_cache_release(&ref);
	}
	PG_END_TRY();
}

/* uc_batch_drain()'s sink in background mode: log a group's rows */
static void
log_sink(const UcCacheEntry *entry, int64 n, UcRowIter next, void *iterarg,
		 void *arg)
{
	const UcShape *shape = uc_entry_shape(entry);
	Oid			userid;
	int			secctx;

	MemoryContext rowcxt;
	MemoryContext oldcxt;

	uc_deferred_checks(shape->relid, &userid, &secctx);
	check_loggable(shape, userid);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "upsert_counter log row",
								   ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(rowcxt);
	for (int64 j = 0; j < n; j++)
	{
		const Datum *values;
		const bool *nulls;

		next(iterarg, &values, &nulls);
		log_row(shape, values, nulls, userid);
		/* what the row's conversion and insert allocated */
		MemoryContextReset(rowcxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(rowcxt);
	*(int64 *) arg += n;
}

/* The aggregate's final function in background mode: log every key */
int64
uc_log_batch(UcBatchState *state)
{
	int64		logged = 0;

	uc_batch_drain(state, log_sink, &logged);
	return logged;
}

/* ---------------------------------------------------------------------
 * Reading the log back
 * ---------------------------------------------------------------------
 */

/*
 * Deform a row of the log read with UC_LOG_COLUMNS, once: every column is
 * NOT NULL, and reading them one by one would walk the tuple each time
 */
void
uc_log_deform(HeapTuple tuple, TupleDesc desc, UcLogTuple *lt)
{
	bool		nulls[UC_LOG_NATTS + 1];

	if (desc->natts != UC_LOG_NATTS && desc->natts != UC_LOG_NATTS + 1)
		elog(ERROR, "a row of upsert_counter_delta has %d columns, not %d",
			 desc->natts, UC_LOG_NATTS);
	heap_deform_tuple(tuple, desc, lt->values, nulls);
	for (int i = 0; i < desc->natts; i++)
		if (nulls[i])
			elog(ERROR, "upsert_counter_delta has a null in column %d", i + 1);
	if (desc->natts > UC_LOG_NATTS)
		ItemPointerCopy((ItemPointer) DatumGetPointer(lt->values[UC_LOG_NATTS]), &lt->ctid);
	else
		ItemPointerSetInvalid(&lt->ctid);
}

/* An attribute of a deformed log row */
#define log_attr(lt, attno) ((lt)->values[(attno) - 1])

static void
log_array(Datum d, Oid elemtype, int16 typlen, bool typbyval, char typalign,
		  Datum **elems, bool **nulls, int *n)
{
	deconstruct_array(DatumGetArrayTypeP(d), elemtype, typlen, typbyval, typalign,
					  elems, nulls, n);
}

/* Two array datums with the same bytes */
static bool
same_bytes(Datum a, Datum b)
{
	struct varlena *va = PG_DETOAST_DATUM_PACKED(a);
	struct varlena *vb = PG_DETOAST_DATUM_PACKED(b);

	return VARSIZE_ANY(va) == VARSIZE_ANY(vb) &&
		memcmp(va, vb, VARSIZE_ANY(va)) == 0;
}

/*
 * Decode a row of the log into *row: its values in the current memory
 * context; its names, roles and types (its shape) in shapecxt, or taken
 * from prev when they are the same as prev's (a run of one shape decodes
 * them once).  The tuple is in the log's column order; prev, if not NULL,
 * was decoded from a tuple of the same SPI result.
 */
void
uc_log_decode(const UcLogTuple *lt, UcLoggedRow *row,
			  const UcLoggedRow *prev, MemoryContext shapecxt)
{
	Datum	   *vals;
	bool	   *valnulls;
	int			nvals;

	row->id = DatumGetInt64(log_attr(lt, UC_LOG_ID));
	row->target = DatumGetObjectId(log_attr(lt, UC_LOG_TARGET));
	row->caller = DatumGetObjectId(log_attr(lt, UC_LOG_CALLER));
	row->rawnames = log_attr(lt, UC_LOG_NAMES);
	row->rawnrole = log_attr(lt, UC_LOG_NROLE);
	row->rawtypes = log_attr(lt, UC_LOG_TYPES);
	row->logged_at = DatumGetTimestampTz(log_attr(lt, UC_LOG_LOGGED_AT));

	if (prev != NULL && prev->target == row->target &&
		same_bytes(prev->rawnames, row->rawnames) &&
		same_bytes(prev->rawnrole, row->rawnrole) &&
		same_bytes(prev->rawtypes, row->rawtypes))
	{
		row->args = prev->args;
		row->types = prev->types;
	}
	else
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(shapecxt);
		Datum	   *names;
		Datum	   *nrole;
		Datum	   *types;
		bool	   *nulls;
		int			nnames;
		int			nroles;
		int			ntypes;
		int			total = 0;

		log_array(row->rawnames, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &nnames);
		log_array(row->rawnrole, INT2OID, 2, true, TYPALIGN_SHORT, &nrole, &nulls, &nroles);
		log_array(row->rawtypes, REGTYPEOID, sizeof(Oid), true, TYPALIGN_INT, &types, &nulls, &ntypes);
		if (nroles != UC_NROLES)
			elog(ERROR, "upsert_counter_delta row " INT64_FORMAT " has %d role counts",
				 row->id, nroles);
		memset(&row->args, 0, sizeof(UcArgs));
		for (int r = 0; r < UC_NROLES; r++)
		{
			row->args.nrole[r] = DatumGetInt16(nrole[r]);
			total += row->args.nrole[r];
		}
		if (total != nnames || nnames != ntypes)
			elog(ERROR, "upsert_counter_delta row " INT64_FORMAT " is inconsistent", row->id);
		row->args.ncols = row->args.maxcols = nnames;
		row->args.names = palloc(Max(nnames, 1) * sizeof(char *));
		row->args.namelens = palloc(Max(nnames, 1) * sizeof(int));
		row->types = palloc(Max(nnames, 1) * sizeof(Oid));
		for (int i = 0; i < nnames; i++)
		{
			char	   *name = TextDatumGetCString(names[i]);

			row->args.names[i] = name;
			row->args.namelens[i] = strlen(name);
			row->types[i] = DatumGetObjectId(types[i]);
		}
		uc_args_set_key(&row->args, row->target);
		MemoryContextSwitchTo(oldcxt);
	}

	log_array(log_attr(lt, UC_LOG_VALS), BYTEAOID, -1, false, TYPALIGN_INT,
			  &vals, &valnulls, &nvals);
	if (nvals != row->args.ncols)
		elog(ERROR, "upsert_counter_delta row " INT64_FORMAT " is inconsistent", row->id);
	row->vals = palloc(Max(nvals, 1) * sizeof(bytea *));
	for (int i = 0; i < nvals; i++)
		row->vals[i] = valnulls[i] ? NULL : DatumGetByteaPP(vals[i]);
}

/*
 * Column col's value in a logged row, as a value of the shape's column: by
 * its type's binary input when the column still has the type it was
 * logged with, else through the logged type's output and the column
 * type's input (the column's type changed since), as a cast through text.
 */
Datum
uc_log_value(const UcShape *shape, int col, const UcLoggedRow *row, bool *isnull)
{
	const UcColumn *c = &shape->cols[col];
	bytea	   *raw = row->vals[col];
	StringInfoData buf;
	Datum		value;

	if (raw == NULL)
		return uc_null_to_datum(shape, col, isnull);
	*isnull = false;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw));
	if (row->types[col] == c->typid && OidIsValid(c->recvfn.fn_oid))
		value = ReceiveFunctionCall((FmgrInfo *) &c->recvfn, &buf, c->recvioparam,
									c->typmod);
	else
	{
		Oid			recvfunc;
		Oid			ioparam;
		Oid			outfunc;
		bool		isvarlena;
		Datum		old;

		getTypeBinaryInputInfo(row->types[col], &recvfunc, &ioparam);
		old = OidReceiveFunctionCall(recvfunc, &buf, ioparam, -1);
		getTypeOutputInfo(row->types[col], &outfunc, &isvarlena);
		value = InputFunctionCall((FmgrInfo *) &c->inputfn,
								  OidOutputFunctionCall(outfunc, old),
								  c->ioparam, c->typmod);
	}
	pfree(buf.data);
	return value;
}

/* ---------------------------------------------------------------------
 * upsert_counter_read()
 * ---------------------------------------------------------------------
 */

/* What upsert_counter_read() builds: a row of the target's row type */
typedef struct UcReadRow
{
	TupleDesc	rowdesc;
	Datum	   *values;
	bool	   *nulls;
	bool	   *named;			/* the row has this column, or a call named it */
	bool		exists;			/* the table has the row */
	bool		pending;		/* some logged row is for it */
} UcReadRow;

/*
 * Statements on the log run as its owner (a superuser where the extension
 * was created by one) with search_path set to pg_catalog, pg_temp, so that
 * nothing a caller or a database's settings put on the path (a type, an
 * operator, a function) is resolved in them; every name in them is
 * qualified too.
 */
typedef struct UcLogOwner
{
	Oid			save_userid;
	int			save_secctx;
	int			save_nestlevel;
} UcLogOwner;

static void
log_owner_enter(UcLogOwner *lo)
{
	GetUserIdAndSecContext(&lo->save_userid, &lo->save_secctx);
	lo->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	SetUserIdAndSecContext(uc_log_owner(), lo->save_secctx | SECURITY_LOCAL_USERID_CHANGE);
}

static void
log_owner_exit(UcLogOwner *lo)
{
	SetUserIdAndSecContext(lo->save_userid, lo->save_secctx);
	AtEOXact_GUC(false, lo->save_nestlevel);
}

/*
 * Run a statement on the log (or the fold status) as the log's owner and
 * return SPI's result code; SPI connected.
 */
int
uc_log_query(const char *sql, int nargs, Oid *argtypes, Datum *params,
			 const char *nulls, bool read_only)
{
	UcLogOwner	lo;
	volatile int rc = 0;

	(void) uc_log_owner();
	log_owner_enter(&lo);
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, argtypes, params, nulls, read_only, 0);
	}
	PG_FINALLY();
	{
		log_owner_exit(&lo);
	}
	PG_END_TRY();
	return rc;
}

/* uc_log_query() for a prepared plan */
int
uc_log_execute(SPIPlanPtr plan, Datum *params, const char *nulls, bool read_only)
{
	UcLogOwner	lo;
	volatile int rc = 0;

	(void) uc_log_owner();
	log_owner_enter(&lo);
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, params, nulls, read_only, 0);
	}
	PG_FINALLY();
	{
		log_owner_exit(&lo);
	}
	PG_END_TRY();
	return rc;
}

/*
 * Run fn(arg) as userid in a security-restricted operation, with
 * search_path set to "$user", public, pg_temp, upsert_counter.flush to
 * statement, and DateStyle, IntervalStyle and extra_float_digits fixed,
 * every setting changed in between undone afterwards: how the
 * fold writes a user's logged rows, and how upsert_counter_read() decodes
 * them, whoever runs it (as VACUUM and ANALYZE run a table's index
 * expressions as its owner).
 */
void
uc_run_restricted_as(Oid userid, void (*fn) (void *), void *arg)
{
	Oid			save_userid;
	int			save_secctx;
	int			save_nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_secctx);
	SetUserIdAndSecContext(userid, save_secctx | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		(void) set_config_option("search_path", "\"$user\", public, pg_temp",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		(void) set_config_option("upsert_counter.flush", "statement",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);

		/*
		 * A value whose column changed type since it was logged is
		 * converted through text: by the same rules whoever folds it
		 */
		(void) set_config_option("DateStyle", "ISO, YMD",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		(void) set_config_option("IntervalStyle", "postgres",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		(void) set_config_option("extra_float_digits", "3",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		fn(arg);
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_secctx);
	}
	PG_END_TRY();
}

/* The log's (or another of the extension's tables') qualified name */
const char *
uc_log_table(const char *name)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(uc_log_relid())),
									  name);
}

/*
 * Apply a logged row to *rr if it is for the key of shape (keyvals and
 * keynulls, per column of shape), through the logged row's own shape.
 */
static void
apply_logged(const UcShape *shape, const UcArgs *args, const Datum *keyvals,
			 const bool *keynulls, UcLoggedRow *row, UcReadRow *rr)
{
	UcRef		ref = {NULL};
	UcCacheEntry *entry;

	/* the same key columns as the call, in the same order */
	if (row->args.nrole[UC_KEY] != args->nrole[UC_KEY])
		return;
	for (int i = 0; i < args->nrole[UC_KEY]; i++)
		if (row->args.namelens[i] != args->namelens[i] ||
			memcmp(row->args.names[i], args->names[i], args->namelens[i]) != 0)
			return;

	entry = uc_cache_acquire(&row->args, &ref);
	PG_TRY();
	{
		const UcShape *ls = uc_entry_shape(entry);
		bool		match = true;
		bool		creates = !rr->exists && !rr->pending;	/* this row inserts */

		for (int k = 0; k < shape->nkeys && match; k++)
		{
			int			i = shape->keyorder[k];
			bool		vnull;
			Datum		v = uc_log_value(ls, i, row, &vnull);

			match = ApplySortComparator(v, vnull, keyvals[i], keynulls[i],
										&shape->keysort[k]) == 0;
		}
		for (int i = ls->nrole[UC_KEY]; i < ls->ncols && match; i++)
		{
			const UcColumn *c = &ls->cols[i];
			int			a = c->attnum - 1;
			bool		vnull;
			Datum		v = uc_log_value(ls, i, row, &vnull);

			if (c->role == UC_DELTA)
			{
				rr->values[a] = rr->nulls[a] ? v :
					DirectFunctionCall2(uc_delta_add_fn(c->basetypid), rr->values[a], v);
				rr->nulls[a] = false;
			}
			else if (c->role == UC_ASSIGN || creates)
			{
				rr->values[a] = v;
				rr->nulls[a] = vnull;
			}
			rr->named[a] = true;
		}
		if (match && creates)
		{
			for (int k = 0; k < shape->nkeys; k++)
			{
				int			i = shape->keyorder[k];
				int			a = shape->cols[i].attnum - 1;

				rr->values[a] = keyvals[i];
				rr->nulls[a] = keynulls[i];
				rr->named[a] = true;
			}
		}
		rr->pending |= match;
	}
	PG_FINALLY();
	{
		uc_cache_release(&ref);
	}
	PG_END_TRY();
}

/* A relation's owner */
static Oid
rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* The logged rows uc_log_read() applies, for uc_run_restricted_as() */
typedef struct UcApplyLogged
{
	const UcShape *shape;
	const UcArgs *args;
	const Datum *keyvals;
	const bool *keynulls;
	SPITupleTable *logged;
	uint64		nlogged;
	UcReadRow  *rr;
} UcApplyLogged;

static void
apply_all_logged(void *arg)
{
	UcApplyLogged *al = (UcApplyLogged *) arg;

	for (uint64 j = 0; j < al->nlogged; j++)
	{
		UcLoggedRow row;
		UcLogTuple	lt;

		uc_log_deform(al->logged->vals[j], al->logged->tupdesc, &lt);
		uc_log_decode(&lt, &row, NULL, CurrentMemoryContext);
		apply_logged(al->shape, al->args, al->keyvals, al->keynulls, &row, al->rr);
	}
}

/* The work of uc_log_read() with the key's entry referenced; SPI connected */
static Datum
read_with_pending(UcCacheEntry *entry, const UcArgs *args, Oid relid,
				  bool *isnull)
{
	const UcShape *shape = uc_entry_shape(entry);
	UcReadRow	rr;
	int			natts;
	Datum	   *keyvals = palloc(Max(shape->ncols, 1) * sizeof(Datum));
	bool	   *keynulls = palloc(Max(shape->ncols, 1) * sizeof(bool));
	char	   *keynullc = palloc(Max(shape->ncols, 1) * sizeof(char));
	int			rc;

	rr.rowdesc = lookup_rowtype_tupdesc_copy(get_rel_type_id(relid), -1);
	natts = rr.rowdesc->natts;
	rr.values = palloc0(Max(natts, 1) * sizeof(Datum));
	rr.nulls = palloc(Max(natts, 1) * sizeof(bool));
	rr.named = palloc0(Max(natts, 1) * sizeof(bool));
	rr.pending = false;
	for (int a = 0; a < natts; a++)
		rr.nulls[a] = true;
	for (int i = 0; i < shape->ncols; i++)
	{
		keyvals[i] = uc_value_to_datum(shape, i, &args->values[i], &keynulls[i], NULL);
		keynullc[i] = keynulls[i] ? 'n' : ' ';
	}

	/* the row, as the caller, under the current snapshot */
	rc = uc_cache_execute(entry, UC_FORM_LOOKUP, keyvals, keynullc, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(rc));
	rr.exists = SPI_processed > 0;
	if (rr.exists)
	{
		TupleDesc	spidesc = SPI_tuptable->tupdesc;

		for (int a = 0, j = 1; a < natts; a++)
		{
			if (TupleDescAttr(rr.rowdesc, a)->attisdropped)
				continue;
			rr.values[a] = SPI_getbinval(SPI_tuptable->vals[0], spidesc, j++, &rr.nulls[a]);
			rr.named[a] = true;
		}
	}

	/* the target's logged rows, in log order, as the log's owner, same snapshot */
	{
		Oid			argtype = REGCLASSOID;
		Datum		param = ObjectIdGetDatum(relid);

		rc = uc_log_query(psprintf("SELECT " UC_LOG_COLUMNS
								   " FROM %s WHERE target OPERATOR(pg_catalog.=) $1 ORDER BY id",
								   uc_log_table("upsert_counter_delta")),
						  1, &argtype, &param, NULL, true);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_with_args returned %s", SPI_result_code_string(rc));
	}
	/*
	 * Their values decoded (types' receive functions, domain checks) as the
	 * table's owner, not as the reader: the rows are other users', as the
	 * fold writes them.
	 */
	{
		UcApplyLogged al = {shape, args, keyvals, keynulls, SPI_tuptable,
		SPI_processed, &rr};

		uc_run_restricted_as(rel_owner(relid), apply_all_logged, &al);
	}

	*isnull = !(rr.exists || rr.pending);
	if (*isnull)
		return (Datum) 0;
	{
		HeapTuple	tuple = heap_form_tuple(rr.rowdesc, rr.values, rr.nulls);
		Datum		full = uc_row_to_jsonb(relid, rr.rowdesc, tuple);

		/* a row not there yet: only the columns the calls named */
		for (int a = 0; a < natts && !rr.exists; a++)
			if (!TupleDescAttr(rr.rowdesc, a)->attisdropped && !rr.named[a])
				full = DirectFunctionCall2(jsonb_delete, full,
										   CStringGetTextDatum(NameStr(TupleDescAttr(rr.rowdesc, a)->attname)));
		return SPI_datumTransfer(full, false, -1);
	}
}

/*
 * The row of relid with these keys, with the pending deltas applied, as
 * to_jsonb() gives a row of it: the logged rows for it applied in log
 * order, as the fold applies them: deltas added (to 0 where the row has
 * NULL), assigned values set, insert-only values set only by the row
 * that creates it.  A row that does not exist yet
 * has only the columns the pending calls name; the others, which the fold
 * will give their defaults, are absent.  *isnull when there is neither a
 * row nor a pending delta.
 *
 * The table's row is read as the caller, by the key's lookup statement
 * (the whole row: SELECT on every column), and the log as its owner, both
 * read-only under the current snapshot, so that a fold is seen entirely
 * or not at all.  Logged rows count when they name the same key columns.
 */
Datum
uc_log_read(Oid relid, Jsonb *keys, bool *isnull)
{
	Jsonb	   *objs[UC_NROLES] = {keys, NULL, NULL, NULL};
	UcArgs		args = {0};
	UcRef		ref = {NULL};
	UcCacheEntry *entry;
	Datum		result;

	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("upsert_counter_read() does not read relation \"%s\", which has row-level security",
						get_rel_name(relid)),
				 errdetail("Pending deltas are not filtered by the table's policies."),
				 errhint("Fold them with upsert_counter_fold() and read the table.")));

	/* keys only: a get-or-create shape, whose lookup form reads the row */
	objs[UC_DELTA] = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	uc_args_read(&args, relid, objs);
	entry = uc_cache_acquire(&args, &ref);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		result = read_with_pending(entry, &args, relid, isnull);
		SPI_finish();
	}
	PG_FINALLY();
	{
		uc_cache_release(&ref);
	}
	PG_END_TRY();
	return result;
}

/*
 * The sql_drop event trigger: refuse to drop a table that has rows logged
 * for it and not folded.  Those rows could never be folded, and a dump
 * would carry their target as a bare OID, which may name another table
 * after a restore.  Nothing to check when the log itself goes (DROP
 * EXTENSION), or when this database's version has none.
 */
void
uc_log_sql_drop(void)
{
	Oid			nsp = uc_extension_schema(true);
	Oid			relid;
	SPIPlanPtr	plan;
	volatile int rc = 0;

	if (!OidIsValid(nsp))
		return;
	relid = get_relname_relid("upsert_counter_delta", nsp);
	if (!OidIsValid(relid))
		return;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Under the latest snapshot, not the DROP's: the DROP holds the table's
	 * lock, which a call takes to log a row, so every row logged for it is
	 * committed (or gone) by now, also those committed while the DROP
	 * waited for its lock or after a REPEATABLE READ snapshot was taken.
	 */
	plan = SPI_prepare(psprintf("SELECT d.object_identity, pg_catalog.count(*) "
								"FROM pg_catalog.pg_event_trigger_dropped_objects() d "
								"JOIN %s l ON l.target::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid "
								"WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass "
								"AND d.objsubid OPERATOR(pg_catalog.=) 0 "
								"GROUP BY d.object_identity ORDER BY 1 LIMIT 1",
								uc_log_table("upsert_counter_delta")),
					   0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	{
		UcLogOwner	lo;

		log_owner_enter(&lo);
		PG_TRY();
		{
			rc = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
									  InvalidSnapshot, true, false, 0);
		}
		PG_FINALLY();
		{
			log_owner_exit(&lo);
		}
		PG_END_TRY();
	}
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute returned %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;
		char	   *name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		int64		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 2, &isnull));

		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop table %s because it has " INT64_FORMAT " rows logged in background mode and not folded",
						name, n),
				 errdetail("Logged rows of a dropped table could never be folded."),
				 errhint("Fold them with upsert_counter_fold() or delete them with upsert_counter_discard() first.")));
	}
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * Transaction end: start the fold worker
 * ---------------------------------------------------------------------
 */

void
uc_background_xact_event(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (logged_in_xact && uc_fold_worker_enabled)
				uc_fold_ensure_worker();
			logged_in_xact = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
			logged_in_xact = false;
			break;
		default:
			break;
	}
}

void
uc_background_init(void)
{
	CacheRegisterRelcacheCallback(forget_log, (Datum) 0);
}
