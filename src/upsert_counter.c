/*-------------------------------------------------------------------------
 *
 * upsert_counter.c
 *	  Module set-up, settings and the SQL-callable functions.
 *
 * This file owns the boundary with SQL: argument checking common to all
 * entry points, the aggregate's transition and final functions,
 * upsert_increment_returning(), and the cache inspection functions.  The
 * work itself is done by the other files (see upsert_counter.h).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "commands/event_trigger.h"
#include "executor/nodeAgg.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "background.h"
#include "citus.h"
#include "upsert_counter.h"

#ifdef PG_MODULE_MAGIC_EXT
PG_MODULE_MAGIC_EXT(.name = "upsert_counter",.version = "1.3.0");
#else
PG_MODULE_MAGIC;
#endif

/* The aggregate's transition state */
typedef struct UcAggState
{
	bool		deferred;		/* commit mode: rows went to the buffer */
	bool		background;		/* background mode: merged rows are logged */
	int64		nrows;			/* input rows */
	UcBatchState *batch;		/* statement mode */
	UcRowMap   *rowmap;			/* upsert_increment_rows(): the row mapping */
	Oid			relid;			/* the target, the same on every row */
} UcAggState;

int			uc_cache_size = 1000;
int			uc_batch_size = 1000;
int			uc_flush_mode = UC_FLUSH_STATEMENT;
int			uc_buffer_limit = 100000;

/* upsert_counter.fast_update: accepted, no effect since 1.3 */
static bool uc_fast_update_obsolete = false;

static const struct config_enum_entry uc_flush_options[] = {
	{"statement", UC_FLUSH_STATEMENT, false},
	{"commit", UC_FLUSH_COMMIT, false},
	{"background", UC_FLUSH_BACKGROUND, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * The extension's one transaction and subtransaction callback: each layer
 * that keeps state across a call gets the events in turn, the commit-mode
 * buffer first (its pre-commit write may fail the commit), background
 * mode's worker start last (after the commit).
 */
static void
xact_callback(XactEvent event, void *arg)
{
	uc_buffer_xact_event(event);
	uc_write_xact_event(event);
	uc_background_xact_event(event);
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	uc_buffer_subxact_event(event, mySubid, parentSubid);
	uc_write_subxact_event(event);
}

void
_PG_init(void)
{
	DefineCustomIntVariable("upsert_counter.cache_size",
							"Maximum number of call shapes whose plans a backend keeps.",
							"A shape is a target table with one set of key, delta, assign and on_insert column names. The least recently used shape is evicted beyond this number.",
							&uc_cache_size,
							1000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("upsert_counter.batch_size",
							"Number of distinct keys the aggregate writes per statement.",
							NULL,
							&uc_batch_size,
							1000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("upsert_counter.flush",
							 "When upsert_increment() writes: at once, just before commit, or later in the background.",
							 "'statement' writes in the calling statement. 'commit' buffers the rows, merged, for the transaction and writes them just before it commits, so that the row locks are held for the commit only. 'background' appends the rows to a log that a background worker folds into the table, so that no call waits for a row lock.",
							 &uc_flush_mode,
							 UC_FLUSH_STATEMENT, uc_flush_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("upsert_counter.fast_update",
							 "Obsolete: has no effect.",
							 "Version 1.2 updated existing rows without the executor when this was on. Since 1.3 every call runs the cached INSERT ... ON CONFLICT statement; the setting is still accepted so that configurations naming it keep working.",
							 &uc_fast_update_obsolete,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("upsert_counter.flush_limit",
							"Distinct keys the commit-mode buffer holds before it is written early.",
							"Writing early takes the row locks then, not at commit.",
							&uc_buffer_limit,
							100000, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("upsert_counter.fold_worker",
							 "Starts the database's fold worker when a transaction that logged rows in background mode commits.",
							 "Off: logged rows wait for upsert_counter_fold() or a commit with it on; a running worker leaves after its round.",
							 &uc_fold_worker_enabled,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("upsert_counter.fold_interval",
							"Time the fold worker waits after a round that folded rows.",
							"After an idle round it waits twice as long as the time before, up to 1 s.",
							&uc_fold_interval,
							100, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("upsert_counter.fold_batch_size",
							"Logged rows of one target the fold takes per transaction.",
							NULL,
							&uc_fold_batch_size,
							50000, 1, 10000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("upsert_counter.fold_idle_exit",
							"Time without rows to fold after which the fold worker leaves.",
							"The next commit that logs rows starts it again. 0: it stays.",
							&uc_fold_idle_exit,
							60, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("upsert_counter");
	uc_cache_init();
	uc_background_init();
	uc_fastpath_init();
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
}

/*
 * Read the arguments common to every entry point: target, keys, deltas and
 * the optional assign and on_insert.
 */
static Oid
get_call_args(FunctionCallInfo fcinfo, int first, Jsonb **objs)
{
	static const char *const argnames[] = {"target", "keys", "deltas"};

	for (int a = 0; a < 3; a++)
		if (PG_ARGISNULL(first + a))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument \"%s\" of upsert_increment() must not be null",
							argnames[a]),
					 a == 2 ? errhint("Pass '{}' as deltas to only make sure the row exists.") : 0));

	for (int r = 0; r < UC_NROLES; r++)
	{
		int			argno = first + 1 + r;

		objs[r] = (argno < PG_NARGS() && !PG_ARGISNULL(argno)) ?
			PG_GETARG_JSONB_P(argno) : NULL;
	}
	return PG_GETARG_OID(first);
}

/*
 * {"inserted": n, "updated": m}, or in commit and background mode
 * {..: null, "deferred": n}
 */
static Jsonb *
build_result(int64 inserted, int64 updated, int64 deferred)
{
	JsonbParseState *st = NULL;
	JsonbValue	k;
	JsonbValue	v;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	v.type = jbvNumeric;

	for (int i = 0; i < (deferred >= 0 ? 3 : 2); i++)
	{
		static const char *const names[] = {"inserted", "updated", "deferred"};
		int64		n = i == 0 ? inserted : i == 1 ? updated : deferred;

		k.val.string.val = (char *) names[i];
		k.val.string.len = strlen(names[i]);
		pushJsonbValue(&st, WJB_KEY, &k);
		if (deferred >= 0 && i < 2)
		{
			JsonbValue	null;

			null.type = jbvNull;
			pushJsonbValue(&st, WJB_VALUE, &null);
			continue;
		}
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(n);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}

	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * The result of a call.  The results of a single-row call (one insert, one
 * update, one deferred row) are built once per backend and copied.
 */
static Jsonb *
result_jsonb(int64 inserted, int64 updated, int64 deferred)
{
	static Jsonb *common[3];
	int			which = deferred == 1 && inserted == 0 && updated == 0 ? 2 :
		deferred < 0 && inserted + updated == 1 ? (inserted == 1 ? 0 : 1) : -1;
	Jsonb	   *copy;

	if (which < 0)
		return build_result(inserted, updated, deferred);
	if (common[which] == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		common[which] = build_result(inserted, updated, deferred);
		MemoryContextSwitchTo(oldcxt);
	}
	copy = palloc(VARSIZE(common[which]));
	memcpy(copy, common[which], VARSIZE(common[which]));
	return copy;
}

typedef struct AggrefCount
{
	int			aggno;
	int			count;
} AggrefCount;

static bool
count_aggrefs(Node *node, AggrefCount *c)
{
	if (node == NULL)
		return false;
	if (IsA(node, Aggref))
	{
		Aggref	   *aggref = (Aggref *) node;

		if (aggref->agglevelsup == 0 && aggref->aggno == c->aggno)
			c->count++;
		return false;
	}
	return expression_tree_walker(node, count_aggrefs, (void *) c);
}

/*
 * The install script marks the aggregates volatile, so that the planner
 * computes two identical calls twice.  A definition re-created without
 * that (pg_upgrade and pg_dump --binary-upgrade create the aggregates one
 * by one, and CREATE AGGREGATE records them immutable) lets the planner
 * compute identical calls once: one write where the query asked for
 * several.  Refuse that rather than count wrong.
 */
static void
refuse_merged_calls(FunctionCallInfo fcinfo)
{
	Aggref	   *aggref = AggGetAggref(fcinfo);
	Plan	   *plan = ((AggState *) fcinfo->context)->ss.ps.plan;
	AggrefCount c;

	if (aggref == NULL || func_volatile(aggref->aggfnoid) == PROVOLATILE_VOLATILE)
		return;
	c.aggno = aggref->aggno;
	c.count = 0;
	count_aggrefs((Node *) plan->targetlist, &c);
	count_aggrefs((Node *) plan->qual, &c);
	if (c.count > 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("identical upsert_increment() calls in one query would be written once"),
				 errdetail("Aggregate %s is marked immutable in this database (as pg_upgrade and binary-upgrade dumps re-create it), so the planner computes %d identical calls only once.",
						   format_procedure(aggref->aggfnoid), c.count),
				 errhint("Make the calls differ, or run them in separate statements. Re-creating the extension (DROP EXTENSION and CREATE EXTENSION upsert_counter) restores its definition.")));
}

/*
 * An aggregate over rows Citus brings from its workers, or running on a
 * worker over shards: refused where its target or rows cannot be trusted
 * (citus.c).
 */
static void
refuse_remote_rows(FunctionCallInfo fcinfo, const char *aggname)
{
	Aggref	   *aggref = AggGetAggref(fcinfo);
	AggState   *aggstate = (AggState *) fcinfo->context;
	Expr	   *target;

	if (aggref == NULL || aggref->args == NIL)
		return;
	target = linitial_node(TargetEntry, aggref->args)->expr;
	uc_citus_check_aggregate_input(outerPlanState(aggstate), IsA(target, Const),
								   aggname);
}

/* "s"."t", or "with OID n" for an OID that names no relation */
static char *
relation_text(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		return psprintf("with OID %u", relid);
	return psprintf("\"%s\"", name);
}

/*
 * The state of an aggregate call, made at its first row: the mode is
 * decided then, once per call, and the target is fixed.  A later row that
 * names another target is refused: a call writes one table (a target that
 * changes between rows is also what an argument evaluated elsewhere, by
 * Citus on a worker, would look like).  can_hold: a lone first row may be
 * kept as given (the jsonb form, see batch.c).
 */
static UcAggState *
agg_state(FunctionCallInfo fcinfo, MemoryContext aggcxt, bool can_hold,
		  Oid relid, const char *aggname)
{
	UcAggState *state;

	if (!PG_ARGISNULL(0))
	{
		state = (UcAggState *) PG_GETARG_POINTER(0);
		if (relid != state->relid)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("argument \"target\" of %s() must name the same table on every row",
							aggname),
					 errdetail("The first row names relation %s, this row names relation %s.",
							   relation_text(state->relid), relation_text(relid)),
					 errhint("Call it once per target table, for example with GROUP BY on the target.")));
		return state;
	}
	refuse_merged_calls(fcinfo);
	refuse_remote_rows(fcinfo, aggname);
	state = MemoryContextAllocZero(aggcxt, sizeof(UcAggState));
	state->relid = relid;
	state->deferred = (uc_flush_mode == UC_FLUSH_COMMIT);
	state->background = (uc_flush_mode == UC_FLUSH_BACKGROUND);
	if (!state->deferred)
		state->batch = uc_batch_create(aggcxt, can_hold, false);
	return state;
}

/*
 * upsert_increment(target, keys, deltas [, assign [, on_insert]]): the
 * aggregate's transition function.
 */
PG_FUNCTION_INFO_V1(upsert_increment_transfn);
Datum
upsert_increment_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	UcAggState *state;
	Jsonb	   *objs[UC_NROLES];
	Oid			relid;

	/*
	 * PostgreSQL refuses window use of an aggregate whose final function is
	 * READ_WRITE, so only a plain aggregate call gets here.
	 */
	if (AggCheckCallContext(fcinfo, &aggcxt) != AGG_CONTEXT_AGGREGATE)
		elog(ERROR, "upsert_increment_transfn called in non-aggregate context");

	relid = get_call_args(fcinfo, 1, objs);
	state = agg_state(fcinfo, aggcxt, true, relid, "upsert_increment");

	if (state->deferred)
	{
		uc_buffer_add_jsonb(relid, objs);
		state->nrows++;
	}
	else
	{
		uc_batch_add_jsonb(state->batch, relid, objs);
		state->nrows++;
	}
	PG_RETURN_POINTER(state);
}

/*
 * upsert_increment_rows(target, row, deltas [, assign [, on_insert]]): the
 * typed aggregate's transition function (rows.c).
 */
PG_FUNCTION_INFO_V1(upsert_increment_rows_transfn);
Datum
upsert_increment_rows_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	UcAggState *state;
	ArrayType  *roles[UC_NROLES] = {NULL};
	Oid			relid;
	HeapTupleHeader td;

	if (AggCheckCallContext(fcinfo, &aggcxt) != AGG_CONTEXT_AGGREGATE)
		elog(ERROR, "upsert_increment_rows_transfn called in non-aggregate context");
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" of upsert_increment_rows() must not be null",
						PG_ARGISNULL(1) ? "target" : "row")));
	relid = PG_GETARG_OID(1);
	td = PG_GETARG_HEAPTUPLEHEADER(2);
	for (int r = UC_DELTA; r < UC_NROLES; r++)
	{
		int			argno = 2 + r;

		if (argno < PG_NARGS() && !PG_ARGISNULL(argno))
			roles[r] = PG_GETARG_ARRAYTYPE_P(argno);
	}

	state = agg_state(fcinfo, aggcxt, false, relid, "upsert_increment_rows");

	if (state->deferred)
	{
		uc_buffer_add_record(relid, td, roles, &state->rowmap, aggcxt);
		state->nrows++;
	}
	else
	{
		uc_rows_add(state->batch, relid, td, roles, &state->rowmap, aggcxt);
		state->nrows++;
	}
	PG_RETURN_POINTER(state);
}

PG_FUNCTION_INFO_V1(upsert_increment_finalfn);
Datum
upsert_increment_finalfn(PG_FUNCTION_ARGS)
{
	UcAggState *state = PG_ARGISNULL(0) ? NULL : (UcAggState *) PG_GETARG_POINTER(0);
	int64		inserted = 0;
	int64		updated = 0;

	if (state == NULL)
		PG_RETURN_JSONB_P(result_jsonb(0, 0, uc_flush_mode != UC_FLUSH_STATEMENT ? 0 : -1));
	if (state->deferred)
		PG_RETURN_JSONB_P(result_jsonb(0, 0, state->nrows));
	if (state->background)
	{
		(void) uc_log_batch(state->batch);
		PG_RETURN_JSONB_P(result_jsonb(0, 0, state->nrows));
	}
	uc_batch_write(state->batch, &inserted, &updated);
	PG_RETURN_JSONB_P(result_jsonb(inserted, updated, -1));
}

/*
 * upsert_increment_call(target, keys, deltas, assign, on_insert): one row,
 * as a plain function, callable directly: the same result as the aggregate
 * over one row, in either flush mode.  With a sixth argument, called_as,
 * it is what a FROM-less call of the aggregate is planned as (fastpath.c),
 * and checks the EXECUTE right on that aggregate first.
 */
PG_FUNCTION_INFO_V1(upsert_increment_call);
Datum
upsert_increment_call(PG_FUNCTION_ARGS)
{
	Jsonb	   *objs[UC_NROLES];
	Oid			relid;
	UcArgs		args = {0};
	int64		inserted = 0;
	int64		updated = 0;

	if (PG_NARGS() > 5)
		uc_fastpath_check_call(PG_ARGISNULL(5) ? InvalidOid : PG_GETARG_OID(5));
	relid = get_call_args(fcinfo, 0, objs);

	if (uc_flush_mode == UC_FLUSH_COMMIT)
	{
		uc_buffer_add_jsonb(relid, objs);
		PG_RETURN_JSONB_P(result_jsonb(0, 0, 1));
	}
	if (uc_flush_mode == UC_FLUSH_BACKGROUND)
	{
		uc_log_jsonb(relid, objs);
		PG_RETURN_JSONB_P(result_jsonb(0, 0, 1));
	}
	uc_args_read(&args, relid, objs);
	uc_write_one(&args, UC_FORM_SINGLE, NULL, &inserted, &updated);
	PG_RETURN_JSONB_P(result_jsonb(inserted, updated, -1));
}

/*
 * upsert_counter_flush(): write the commit-mode buffer now; returns what it
 * wrote.
 */
PG_FUNCTION_INFO_V1(upsert_counter_flush);
Datum
upsert_counter_flush(PG_FUNCTION_ARGS)
{
	int64		inserted = 0;
	int64		updated = 0;

	uc_buffer_write(&inserted, &updated);
	PG_RETURN_JSONB_P(result_jsonb(inserted, updated, -1));
}

/*
 * upsert_increment_returning(target, keys, deltas, assign, on_insert,
 *							  OUT inserted boolean, OUT new_row jsonb)
 */
PG_FUNCTION_INFO_V1(upsert_increment_returning);
Datum
upsert_increment_returning(PG_FUNCTION_ARGS)
{
	Jsonb	   *objs[UC_NROLES];
	UcArgs		args = {0};
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	Datum		row = (Datum) 0;
	int64		inserted = 0;
	int64		updated = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* the row is written now, whatever upsert_counter.flush says */
	uc_args_read(&args, get_call_args(fcinfo, 0, objs), objs);
	uc_write_one(&args, UC_FORM_RETURNING, &row, &inserted, &updated);
	values[0] = BoolGetDatum(inserted > 0);
	values[1] = row;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * upsert_counter_note_update(anyelement) returns anyelement: called from
 * the SET clause of the generated statements, once per row that takes the
 * update path; marks it and returns its argument.  Not strict, so that a
 * NULL assigned value is marked too.
 */
PG_FUNCTION_INFO_V1(upsert_counter_note_update);
Datum
upsert_counter_note_update(PG_FUNCTION_ARGS)
{
	uc_note_update();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * upsert_counter_note_row(anyelement) returns anyelement: around the first
 * value of each proposed row; clears the flag that the SET clause sets.
 * Not strict.
 */
PG_FUNCTION_INFO_V1(upsert_counter_note_row);
Datum
upsert_counter_note_row(PG_FUNCTION_ARGS)
{
	uc_note_row();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * upsert_counter_take_update() returns boolean: in RETURNING; whether the
 * row took the update path.  Clears the flag.
 */
PG_FUNCTION_INFO_V1(upsert_counter_take_update);
Datum
upsert_counter_take_update(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(uc_take_update());
}

/*
 * upsert_counter_citus_note_update(anyelement) returns anyelement and
 * upsert_counter_citus_take_update(anyelement) returns boolean: the same
 * flag, for partitioned Citus tables, where Citus allows only functions
 * declared immutable in SET and RETURNING.  Their arguments are always
 * row values (EXCLUDED.x, t.k), so no planner folds them into constants;
 * take_update's argument is only there for that.
 */
PG_FUNCTION_INFO_V1(upsert_counter_citus_note_update);
Datum
upsert_counter_citus_note_update(PG_FUNCTION_ARGS)
{
	uc_note_update();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

PG_FUNCTION_INFO_V1(upsert_counter_citus_take_update);
Datum
upsert_counter_citus_take_update(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(uc_take_update());
}

PG_FUNCTION_INFO_V1(upsert_counter_cache);
Datum
upsert_counter_cache(PG_FUNCTION_ARGS)
{
	return uc_cache_report(fcinfo);
}

PG_FUNCTION_INFO_V1(upsert_counter_cache_reset);
Datum
upsert_counter_cache_reset(PG_FUNCTION_ARGS)
{
	uc_cache_reset();
	PG_RETURN_VOID();
}

/*
 * upsert_counter_fold(target regclass DEFAULT NULL) returns jsonb:
 * background mode's fold, now, in this transaction (fold.c).
 */
PG_FUNCTION_INFO_V1(upsert_counter_fold);
Datum
upsert_counter_fold(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(uc_fold_now(PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0)));
}

/*
 * upsert_counter_read(target regclass, keys jsonb) returns jsonb: a row
 * with what is pending for it applied (deltalog.c).
 */
PG_FUNCTION_INFO_V1(upsert_counter_read);
Datum
upsert_counter_read(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" of upsert_counter_read() must not be null",
						PG_ARGISNULL(0) ? "target" : "keys")));
	result = uc_log_read(PG_GETARG_OID(0), PG_GETARG_JSONB_P(1), &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * upsert_counter_discard(target regclass) returns bigint: delete what is
 * logged for target, unfolded (fold.c).
 */
PG_FUNCTION_INFO_V1(upsert_counter_discard);
Datum
upsert_counter_discard(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(uc_fold_discard(PG_GETARG_OID(0)));
}

/*
 * upsert_counter_sql_drop(): the sql_drop event trigger that keeps a table
 * with logged rows from being dropped (uc_log_sql_drop())
 */
PG_FUNCTION_INFO_V1(upsert_counter_sql_drop);
Datum
upsert_counter_sql_drop(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("upsert_counter_sql_drop() must be called as an event trigger")));
	uc_log_sql_drop();
	PG_RETURN_NULL();
}
