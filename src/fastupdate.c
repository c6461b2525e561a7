/*-------------------------------------------------------------------------
 *
 * fastupdate.c
 *	  The update path of a single-row call, without the executor, where it
 *	  is exactly what INSERT ... ON CONFLICT DO UPDATE would do.
 *
 * Counters nearly always take the update path.  Through SPI that costs a
 * whole executor start and end for one row.  This file owns a direct path
 * for it, built like core's logical replication apply
 * (executor/execReplication.c): find the row through the arbiter index
 * with a dirty snapshot (waiting for in-progress writers, as ON CONFLICT's
 * pre-check does), lock it as ON CONFLICT DO UPDATE locks it, compute the
 * new row (deltas added with the column type's own addition, assigned
 * values), check the table's constraints, update it and its indexes.
 * When the key is not there, the caller runs the cached INSERT ... ON
 * CONFLICT plan, which inserts (or updates, if a concurrent insert won).
 *
 * Before the update it does what ExecInsert() does before it looks for the
 * conflict: it builds the proposed insert row (the call's values, and the
 * default of every other column, evaluated: a serial column's nextval()
 * runs, with its privilege check) and checks the table's NOT NULL and
 * CHECK constraints on it, so every error the statement would raise there
 * is raised here too.
 *
 * It is used only where nothing else could happen on the same path through
 * the executor.  Decided once per shape (uc_fast_update_decide, from the
 * catalogs; any change to the table invalidates the shape):
 *	- a plain table (not partitioned), without row-level security or
 *	  stored generated columns;
 *	- no triggers, except foreign key checks on columns the call does not
 *	  set (those queue no event for such an update; see below);
 *	- no column the call does not name is of a domain type without a
 *	  default (core checks the NULL it proposes against the domain);
 *	- delta and assigned columns are not domains, and deltas have no typmod
 *	  (the SQL path coerces the sum to the column's typmod);
 *	- the call has deltas or assigned values (not get-or-create).
 * And per call:
 *	- READ COMMITTED (REPEATABLE READ and SERIALIZABLE add visibility checks
 *	  and predicate locks: the SQL path does those);
 *	- no key is NULL;
 *	- a foreign key check must fire when the row was inserted by the
 *	  current transaction (RI_FKey_fk_upd_check_required): then the SQL path.
 * Privileges are checked with the range table of the cached plan (the
 * same RangeTblEntry, columns and all, that the executor checks), through
 * ExecCheckRTPerms(), so hooks such as sepgsql see the same check.
 *
 * upsert_counter.fast_update = off turns the path off.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/bitmapset.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "upsert_counter.h"

bool		uc_fast_update_enabled = true;

/* The columns of a foreign key constraint on rel, as attnums */
static Bitmapset *
fk_columns(Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Bitmapset  *cols = NULL;
	bool		isnull;
	Datum		d;
	ArrayType  *arr;
	int16	   *attnums;
	int			n;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for constraint %u", conoid);
	d = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull);
	if (!isnull)
	{
		arr = DatumGetArrayTypeP(d);
		n = ARR_DIMS(arr)[0];
		attnums = (int16 *) ARR_DATA_PTR(arr);
		for (int i = 0; i < n; i++)
			cols = bms_add_member(cols, attnums[i]);
	}
	ReleaseSysCache(tup);
	return cols;
}

/*
 * Decide, from the catalogs, whether the shape's update path may go
 * direct.  rel is the open target.
 */
void
uc_fast_update_decide(Relation rel, UcShape *shape, MemoryContext cxt)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *named = NULL;
	Bitmapset  *set = NULL;
	MemoryContext oldcxt;

	shape->fast_update = false;
	shape->fk_triggers = false;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relrowsecurity ||
		shape->distributed ||
		shape->nrole[UC_DELTA] + shape->nrole[UC_ASSIGN] == 0)
		return;
	if (desc->constr != NULL && desc->constr->has_generated_stored)
		return;

	for (int i = 0; i < shape->ncols; i++)
	{
		const UcColumn *col = &shape->cols[i];

		named = bms_add_member(named, col->attnum);
		if (col->role == UC_DELTA || col->role == UC_ASSIGN)
		{
			set = bms_add_member(set, col->attnum);
			if (col->typid != col->basetypid)
				return;
			if (col->role == UC_DELTA && col->typmod >= 0)
				return;
		}
	}

	/* the other columns' defaults, as the rewriter builds them */
	oldcxt = MemoryContextSwitchTo(cxt);
	shape->defattnum = palloc(Max(desc->natts, 1) * sizeof(AttrNumber));
	shape->defexpr = palloc(Max(desc->natts, 1) * sizeof(Expr *));
	shape->ndefaults = 0;
	MemoryContextSwitchTo(oldcxt);
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		Node	   *def;

		if (att->attisdropped || bms_is_member(att->attnum, named))
			continue;
		def = build_column_default(rel, att->attnum);
		if (def == NULL)
		{
			if (get_typtype(att->atttypid) == TYPTYPE_DOMAIN)
				return;
			continue;
		}
		/* planned once, as ExecPrepareExpr() would plan it on every call */
		shape->defattnum[shape->ndefaults] = att->attnum;
		oldcxt = MemoryContextSwitchTo(cxt);
		shape->defexpr[shape->ndefaults] = expression_planner((Expr *) def);
		MemoryContextSwitchTo(oldcxt);
		shape->ndefaults++;
	}

	if (rel->trigdesc != NULL)
	{
		for (int t = 0; t < rel->trigdesc->numtriggers; t++)
		{
			Trigger    *trig = &rel->trigdesc->triggers[t];

			if (RI_FKey_trigger_type(trig->tgfoid) != RI_TRIGGER_FK ||
				!OidIsValid(trig->tgconstraint) ||
				bms_overlap(fk_columns(trig->tgconstraint), set))
				return;
		}
		shape->fk_triggers = true;
	}

	shape->fast_update = true;
}

/* COALESCE(old, 0) + delta, in the column's type */
static Datum
add_delta(const UcColumn *col, Datum old, bool oldnull, Datum delta)
{
	switch (col->basetypid)
	{
		case INT2OID:
			return DirectFunctionCall2(int2pl, oldnull ? Int16GetDatum(0) : old, delta);
		case INT4OID:
			return DirectFunctionCall2(int4pl, oldnull ? Int32GetDatum(0) : old, delta);
		case INT8OID:
			return DirectFunctionCall2(int8pl, oldnull ? Int64GetDatum(0) : old, delta);
		case NUMERICOID:
			return DirectFunctionCall2(numeric_add,
									   oldnull ? NumericGetDatum(int64_to_numeric(0)) : old,
									   delta);
		case FLOAT4OID:
			return DirectFunctionCall2(float4pl, oldnull ? Float4GetDatum(0) : old, delta);
		case FLOAT8OID:
			return DirectFunctionCall2(float8pl, oldnull ? Float8GetDatum(0) : old, delta);
	}
	elog(ERROR, "unexpected delta type %u", col->basetypid);
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * Build the row the statement would propose for insertion (the call's
 * values, the defaults of the other columns) and check the table's
 * constraints on it, as ExecInsert() does before it looks for a conflict.
 */
static void
check_proposed_row(const UcShape *shape, ResultRelInfo *rri, EState *estate,
				   const Datum *values, const char *nulls)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	ExprContext *econtext = GetPerTupleExprContext(estate);

	ExecClearTuple(slot);
	for (int a = 0; a < desc->natts; a++)
	{
		slot->tts_values[a] = (Datum) 0;
		slot->tts_isnull[a] = true;
	}
	for (int i = 0; i < shape->ncols; i++)
	{
		slot->tts_values[shape->cols[i].attnum - 1] = values[i];
		slot->tts_isnull[shape->cols[i].attnum - 1] = (nulls[i] == 'n');
	}
	for (int d = 0; d < shape->ndefaults; d++)
	{
		int			a = shape->defattnum[d] - 1;
		MemoryContext oldcxt;
		ExprState  *es;

		/* in the estate's memory, as ExecPrepareExpr() would */
		oldcxt = MemoryContextSwitchTo(estate->es_query_cxt);
		es = ExecInitExpr(shape->defexpr[d], NULL);
		MemoryContextSwitchTo(oldcxt);

		slot->tts_values[a] = ExecEvalExprSwitchContext(es, econtext,
														&slot->tts_isnull[a]);
	}
	ExecStoreVirtualTuple(slot);
	if (rel->rd_att->constr)
		ExecConstraints(rri, slot, estate);
}

/*
 * Find the row with the call's key through the arbiter index, waiting for
 * in-progress writers, and lock it as ON CONFLICT DO UPDATE does.  Returns
 * false if there is no such row.
 */
static bool
find_and_lock(Relation rel, Relation irel, const UcShape *shape,
			  const Datum *values, LockTupleMode lockmode,
			  TupleTableSlot *slot)
{
	ScanKeyData skey[INDEX_MAX_KEYS];
	SnapshotData snap;
	IndexScanDesc scan;
	bool		found;

	for (int k = 0; k < shape->nkeys; k++)
	{
		ScanKeyInit(&skey[k], k + 1, BTEqualStrategyNumber,
					shape->keyeqproc[k], values[shape->keyorder[k]]);
		skey[k].sk_collation = shape->keycollation[k];
	}

	InitDirtySnapshot(snap);
	scan = index_beginscan(rel, irel, &snap, shape->nkeys, 0);
	for (;;)
	{
		TransactionId xwait;
		TM_FailureData tmfd;
		TM_Result	res;

		index_rescan(scan, skey, shape->nkeys, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
		if (!found)
			break;

		/* a writer is in progress: wait for it, then look again */
		xwait = TransactionIdIsValid(snap.xmin) ? snap.xmin : snap.xmax;
		if (TransactionIdIsValid(xwait))
		{
			XactLockTableWait(xwait, rel, &slot->tts_tid, XLTW_InsertIndex);
			continue;
		}

		res = table_tuple_lock(rel, &slot->tts_tid, GetLatestSnapshot(), slot,
							   GetCurrentCommandId(false), lockmode,
							   LockWaitBlock, 0, &tmfd);
		if (res == TM_Ok)
			break;
		if (res == TM_Updated || res == TM_Deleted)
			continue;			/* as ON CONFLICT: start over */
		elog(ERROR, "unexpected table_tuple_lock status: %u", res);
	}
	index_endscan(scan);
	return found;
}

/*
 * The update path of one call, if it may go direct.  Returns true if the
 * row existed and was updated; false if the caller must run the SQL path
 * (nothing was written).
 */
bool
uc_fast_update(UcCacheEntry *entry, const Datum *values, const char *nulls)
{
	const UcShape *shape = entry->shape;
	Relation	rel;
	Relation	irel;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	EState	   *estate;
	ResultRelInfo *rri;
	LockTupleMode lockmode;
	bool		update_indexes;
	bool		done = false;

	if (!uc_fast_update_enabled || !shape->fast_update ||
		IsolationUsesXactSnapshot() || entry->perm_rtable == NIL)
		return false;
	for (int i = 0; i < shape->ncols; i++)
		if (nulls[i] == 'n' && shape->cols[i].role == UC_KEY)
			return false;

	/* the executor's own privilege check, on the cached plan's range table */
	ExecCheckRTPerms(entry->perm_rtable, true);

	/* a new command, as SPI starts one for each statement */
	CommandCounterIncrement();

	rel = table_open(shape->relid, RowExclusiveLock);
	irel = index_open(shape->arbiter, RowExclusiveLock);
	lockmode = shape->updates_key_columns ? LockTupleExclusive : LockTupleNoKeyExclusive;
	oldslot = table_slot_create(rel, NULL);

	if (find_and_lock(rel, irel, shape, values, lockmode, oldslot))
	{
		bool		isnull;
		TransactionId xmin = DatumGetTransactionId(slot_getsysattr(oldslot,
																	 MinTransactionIdAttributeNumber,
																	 &isnull));

		/* a foreign key check fires on rows this transaction inserted */
		if (!shape->fk_triggers || !TransactionIdIsCurrentTransactionId(xmin))
		{
			TupleDesc	desc = RelationGetDescr(rel);

			estate = CreateExecutorState();
			ExecInitRangeTable(estate, entry->perm_rtable);
			rri = makeNode(ResultRelInfo);
			InitResultRelInfo(rri, rel, entry->perm_rti, NULL, 0);
			estate->es_output_cid = GetCurrentCommandId(true);

			/* the proposed insert row, checked as ExecInsert() checks it */
			check_proposed_row(shape, rri, estate, values, nulls);

			slot_getallattrs(oldslot);
			newslot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
			ExecClearTuple(newslot);
			memcpy(newslot->tts_values, oldslot->tts_values, desc->natts * sizeof(Datum));
			memcpy(newslot->tts_isnull, oldslot->tts_isnull, desc->natts * sizeof(bool));
			for (int i = shape->rolestart[UC_DELTA]; i < shape->rolestart[UC_ON_INSERT]; i++)
			{
				const UcColumn *col = &shape->cols[i];
				int			a = col->attnum - 1;

				if (col->role == UC_DELTA)
				{
					newslot->tts_values[a] = add_delta(col, oldslot->tts_values[a],
													   oldslot->tts_isnull[a], values[i]);
					newslot->tts_isnull[a] = false;
				}
				else
				{
					newslot->tts_values[a] = values[i];
					newslot->tts_isnull[a] = (nulls[i] == 'n');
				}
			}
			ExecStoreVirtualTuple(newslot);

			ExecOpenIndices(rri, false);

			if (rel->rd_att->constr)
				ExecConstraints(rri, newslot, estate);
			simple_table_tuple_update(rel, &oldslot->tts_tid, newslot,
									  GetLatestSnapshot(), &update_indexes);
			if (rri->ri_NumIndices > 0 && update_indexes)
				list_free(ExecInsertIndexTuples(rri, newslot, estate, true, false,
												NULL, NIL));

			ExecCloseIndices(rri);
			ExecResetTupleTable(estate->es_tupleTable, false);
			FreeExecutorState(estate);
			ExecDropSingleTupleTableSlot(newslot);
			done = true;
		}
	}

	ExecDropSingleTupleTableSlot(oldslot);
	index_close(irel, NoLock);
	table_close(rel, NoLock);
	if (done)
		entry->fast_calls++;
	return done;
}
