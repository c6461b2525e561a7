/*-------------------------------------------------------------------------
 *
 * execute.c
 *	  Running the cached plans, and counting what they did.
 *
 * This file owns the step from values to executed statements:
 * uc_write_one() is the whole single-row path (acquire, convert, execute,
 * release); uc_write_rows() writes the rows a batch has merged and
 * sorted, upsert_counter.batch_size rows per statement, through the batch
 * plan (one array parameter per column); on a hash-distributed Citus table
 * it regroups them by shard first (shard, then key order) and no statement
 * crosses a shard (citus.c), so that Citus routes each to one worker.
 *
 * Both acquire the cache entry they execute right before they use it (see
 * cache.c), so a batch buffered earlier is written by its target's OID
 * through the current names, and a nested call from a trigger or a domain
 * check cannot free what is running.
 *
 * Counting (see sqlgen.c): every row the statement inserted or updated
 * comes back with RETURNING <inserted>, a boolean; rows a BEFORE trigger
 * skipped do not come back and count as neither.  <inserted> is a flag
 * kept here: each proposed row clears it (upsert_counter_note_row()
 * around its first value), the SET clause of the update path sets it
 * (upsert_counter_note_update()), and RETURNING reads and clears it
 * (upsert_counter_take_update()); a nested statement's flag is saved and
 * restored around it.  The statement reads no column the caller did not
 * name, so it needs exactly the privileges of the plain statement.  On
 * Citus tables, which refuse our functions in the statement, it is
 * RETURNING xmax = 0 instead (plain tables only).  With DO NOTHING, rows
 * not inserted are keys that existed.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "citus.h"
#include "write.h"

/* Whether the row being written now took the ON CONFLICT DO UPDATE path */
static bool uc_pending_update = false;

/* The (sub)transaction nesting level that set it */
static int	uc_pending_level = 0;

/*
 * A statement that fails between its SET clause and its RETURNING leaves
 * the flag set: clear it when its (sub)transaction aborts (called from the
 * extension's one transaction callback, upsert_counter.c).  This matters
 * where the flag is kept for a statement run by another backend (a Citus
 * coordinator's, through functions declared immutable, with no function
 * clearing it per proposed row: sqlgen.c); here run_plan() restores it
 * anyway.
 */
void
uc_write_xact_event(XactEvent event)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		uc_pending_update = false;
}

void
uc_write_subxact_event(SubXactEvent event)
{
	/*
	 * Only a subtransaction the flag was set in: one a trigger of the row
	 * ran and rolled back (an EXCEPTION block) leaves the row's flag alone.
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB &&
		uc_pending_level >= GetCurrentTransactionNestLevel())
		uc_pending_update = false;
}



/* What one execution did */
typedef struct UcOutcome
{
	uint64		inserted;
	uint64		updated;
	uint64		processed;		/* rows inserted or updated */
} UcOutcome;

/* upsert_counter_note_row(): a proposed row, not yet known to update */
void
uc_note_row(void)
{
	uc_pending_update = false;
}

/* upsert_counter_note_update(): the row took the update path */
void
uc_note_update(void)
{
	uc_pending_update = true;
	uc_pending_level = GetCurrentTransactionNestLevel();
}

/* upsert_counter_take_update(): did the row just written take it? */
bool
uc_take_update(void)
{
	bool		result = uc_pending_update;

	uc_pending_update = false;
	return result;
}

/* What a statement of a shape did, from SPI's result and its RETURNING */
static inline void
count_result(const UcShape *s, UcForm form, int rc, UcOutcome *out)
{
	if (rc != SPI_OK_INSERT && rc != SPI_OK_INSERT_RETURNING && rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute returned %s", SPI_result_code_string(rc));

	out->processed = SPI_processed;
	if (form == UC_FORM_LOOKUP)
		out->inserted = out->updated = 0;
	else if (s->nrole[UC_DELTA] + s->nrole[UC_ASSIGN] == 0)
	{
		/* DO NOTHING: every row processed was inserted */
		out->inserted = SPI_processed;
		out->updated = 0;
	}
	else
	{
		out->inserted = 0;
		for (uint64 j = 0; j < SPI_processed; j++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[j],
										   SPI_tuptable->tupdesc, 1, &isnull)))
				out->inserted++;
		}
		out->updated = SPI_processed - out->inserted;
	}
}

/*
 * Run a plan of a referenced entry and count what it did.  A statement run
 * from inside this one (a trigger calling upsert_increment() again) has a
 * flag of its own: the outer one is saved and restored around each
 * execution, also when it fails.
 */
static void
run_plan(UcCacheEntry *entry, UcForm form, Datum *values, const char *nulls,
		 UcOutcome *out)
{
	const UcShape *s = uc_entry_shape(entry);
	bool		saved = uc_pending_update;
	int			saved_level = uc_pending_level;
	SPIPlanPtr	plan = uc_cache_begin_execute(entry, form);
	volatile int rc = 0;

	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		uc_cache_end_execute(entry);
		uc_pending_update = saved;
		uc_pending_level = saved_level;
	}
	PG_END_TRY();

	count_result(s, form, rc, out);
}

/*
 * A row of relid's row type as to_jsonb() gives it.  to_jsonb(anyelement)
 * finds its argument's type in its call expression: build one.
 */
Datum
uc_row_to_jsonb(Oid relid, TupleDesc rowdesc, HeapTuple tuple)
{
	Oid			rowtype = get_rel_type_id(relid);
	FuncExpr   *call;
	FmgrInfo	flinfo;

	call = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(rowtype, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info(F_TO_JSONB, &flinfo);
	fmgr_info_set_expr((Node *) call, &flinfo);
	return FunctionCall1(&flinfo, heap_copy_tuple_as_datum(tuple, rowdesc));
}

/*
 * The returned row of the returning and lookup forms, in the caller's
 * context: the statement returns t.* (after the inserted flag in the
 * returning form), and the row is built here as to_jsonb() of the table's
 * row type, so that the statement calls no function that is not
 * immutable (Citus refuses them in RETURNING).
 */
static Datum
returned_row(const UcShape *s, UcForm form)
{
	int			first = form == UC_FORM_LOOKUP ? 1 : 2;
	Oid			rowtype = get_rel_type_id(s->relid);
	TupleDesc	spidesc = SPI_tuptable->tupdesc;
	TupleDesc	rowdesc;
	Datum	   *values;
	bool	   *nulls;
	int			j = first;
	HeapTuple	tuple;
	Datum		result;

	if (!OidIsValid(rowtype))
		elog(ERROR, "relation %u has no row type", s->relid);
	rowdesc = lookup_rowtype_tupdesc(rowtype, -1);
	values = palloc(Max(rowdesc->natts, 1) * sizeof(Datum));
	nulls = palloc(Max(rowdesc->natts, 1) * sizeof(bool));
	for (int a = 0; a < rowdesc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(rowdesc, a);

		if (att->attisdropped)
		{
			values[a] = (Datum) 0;
			nulls[a] = true;
			continue;
		}
		/* the plan was checked under our lock: its t.* is the row type */
		if (j > spidesc->natts || TupleDescAttr(spidesc, j - 1)->atttypid != att->atttypid)
			elog(ERROR, "RETURNING t.* does not match the row type of relation \"%s\"",
				 s->relname);
		values[a] = SPI_getbinval(SPI_tuptable->vals[0], spidesc, j++, &nulls[a]);
	}
	if (j != spidesc->natts + 1)
		elog(ERROR, "RETURNING t.* does not match the row type of relation \"%s\"",
			 s->relname);
	tuple = heap_form_tuple(rowdesc, values, nulls);
	result = uc_row_to_jsonb(s->relid, rowdesc, tuple);
	ReleaseTupleDesc(rowdesc);

	return SPI_datumTransfer(result, false, -1);
}

/*
 * The single-row path, once the entry is referenced.  Adds 0 or 1 to *inserted
 * and *updated (with DO NOTHING, updated means the key existed); with
 * UC_FORM_RETURNING also sets *row.
 */
static void
write_one_referenced(UcCacheEntry *entry, const UcArgs *args, UcForm form,
				  Datum *row, int64 *inserted, int64 *updated)
{
	const UcShape *shape = uc_entry_shape(entry);
	Datum	   *values;
	char	   *nulls;
	bool		do_nothing = (shape->nrole[UC_DELTA] + shape->nrole[UC_ASSIGN] == 0);
	UcOutcome	out;

	values = palloc(Max(shape->ncols, 1) * sizeof(Datum));
	nulls = palloc(Max(shape->ncols, 1) * sizeof(char));
	for (int i = 0; i < shape->ncols; i++)
	{
		bool		isnull;

		values[i] = uc_value_to_datum(shape, i, &args->values[i], &isnull, NULL);
		nulls[i] = isnull ? 'n' : ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Get-or-create with RETURNING: when DO NOTHING found the key, read the
	 * row.  Should it have been deleted in between, insert again, as ON
	 * CONFLICT itself retries; but only once more: a row that neither
	 * comes back from the insert nor can be read was skipped by a trigger
	 * or is hidden by row-level security, and trying again would not
	 * change that.
	 */
	for (int attempt = 1;; attempt++)
	{
		run_plan(entry, form, values, nulls, &out);
		if (out.processed > 0)
		{
			if (form == UC_FORM_RETURNING)
				*row = returned_row(shape, form);
			break;
		}
		if (form != UC_FORM_RETURNING)
		{
			/*
			 * DO NOTHING found the key (or a trigger skipped the insert:
			 * the two cannot be told apart); DO UPDATE did nothing because
			 * a BEFORE trigger skipped the row.
			 */
			out.updated = do_nothing ? 1 : 0;
			break;
		}
		if (do_nothing)
		{
			run_plan(entry, UC_FORM_LOOKUP, values, nulls, &out);
			if (out.processed > 0)
			{
				*row = returned_row(shape, UC_FORM_LOOKUP);
				out.updated = 1;
				break;
			}
		}
		if (!do_nothing || attempt >= 2)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("upsert_increment_returning() has no row of relation \"%s\" to return",
							shape->relname),
					 errdetail("The statement neither inserted nor updated a row, and no row with these keys is visible: a BEFORE trigger may have skipped the row, or row-level security may hide it from the current user."),
					 errhint("Use upsert_increment(), which returns no row, for this table.")));
		CHECK_FOR_INTERRUPTS();
	}

	SPI_finish();
	*inserted += out.inserted;
	*updated += out.updated;
}

/*
 * One row, given as the arguments of a call.  Adds what it did to
 * *inserted and *updated; with UC_FORM_RETURNING also sets *row to the row
 * as jsonb, allocated in the caller's memory context.
 */
void
uc_write_one(const UcArgs *args, UcForm form, Datum *row,
			 int64 *inserted, int64 *updated)
{
	UcRef		ref = {NULL};
	UcCacheEntry *entry;

	entry = uc_cache_acquire(args, &ref);
	PG_TRY();
	{
		write_one_referenced(entry, args, form, row, inserted, updated);
	}
	PG_FINALLY();
	{
		uc_cache_release(&ref);
	}
	PG_END_TRY();
}

/*
 * Domain-typed delta columns: a merged sum is a value no input function
 * has seen; check it as an INSERT of it would.
 */
static void
check_domains(const UcShape *shape, const Datum *vals, const bool *isnull,
			  void **extra)
{
	for (int i = shape->rolestart[UC_DELTA]; i < shape->rolestart[UC_ASSIGN]; i++)
		if (shape->cols[i].typid != shape->cols[i].basetypid)
			domain_check(vals[i], isnull[i], shape->cols[i].typid, &extra[i],
						 CurrentMemoryContext);
}

/* Rows as an array, for shard_order() */
typedef struct UcRowArray
{
	const Datum **values;
	const bool **isnull;
	int64		pos;
} UcRowArray;

static void
array_next(void *arg, const Datum **values, const bool **isnull)
{
	UcRowArray *a = (UcRowArray *) arg;

	*values = a->values[a->pos];
	*isnull = a->isnull[a->pos];
	a->pos++;
}

/*
 * The n rows of a batch on a hash-distributed Citus table, regrouped by
 * shard, each group still in key order: reads every row from the iterator
 * and replaces it (*next_row, *iterarg) with one over the regrouped rows
 * in *byshard.  Returns where each group ends (rows in no shard first,
 * then the shards in hash order: one global order, so concurrent batches
 * still lock in one order), or NULL, leaving the iterator alone, when the
 * table's shard map is not usable (citus.c).
 */
static int64 *
shard_order(const UcShape *shape, int64 n, UcRowIter *next_row, void **iterarg,
			UcRowArray *byshard)
{
	UcShardMap *map = uc_citus_shard_map(shape);
	int			ngroups;
	int		   *shard;
	int64	   *start;
	int64	   *ends;
	const Datum **values;
	const bool **isnull;

	if (map == NULL)
		return NULL;
	ngroups = map->nshards + 1;
	shard = palloc(sizeof(int) * n);
	values = palloc(sizeof(Datum *) * n);
	isnull = palloc(sizeof(bool *) * n);
	start = palloc0(sizeof(int64) * (ngroups + 1));
	for (int64 j = 0; j < n; j++)
	{
		(*next_row) (*iterarg, &values[j], &isnull[j]);
		shard[j] = 1 + uc_citus_shard_of(map, values[j][map->col], isnull[j][map->col]);
		start[shard[j] + 1]++;
	}
	for (int g = 0; g < ngroups; g++)
		start[g + 1] += start[g];
	ends = palloc(sizeof(int64) * ngroups);
	for (int g = 0; g < ngroups; g++)
		ends[g] = start[g + 1];

	byshard->values = palloc(sizeof(Datum *) * n);
	byshard->isnull = palloc(sizeof(bool *) * n);
	byshard->pos = 0;
	for (int64 j = 0; j < n; j++)
	{
		int64		to = start[shard[j]]++;

		byshard->values[to] = values[j];
		byshard->isnull[to] = isnull[j];
	}
	*next_row = array_next;
	*iterarg = byshard;
	return ends;
}

static void
write_rows_referenced(UcCacheEntry *entry, const UcShape *merged, int64 n,
					UcRowIter next_row, void *iterarg,
					int64 *inserted, int64 *updated)
{
	const UcShape *shape = uc_entry_shape(entry);
	int			ncols = shape->ncols;
	bool		rows_form = shape->distributed && n > 1;
	int			chunk = rows_form ? (int) Min(Min(n, uc_batch_size), 65535 / Max(shape->ncols, 1)) :
		(n == 1 || !shape->batchable) ? 1 : (int) Min(n, uc_batch_size);
	bool		do_nothing = (shape->nrole[UC_DELTA] + shape->nrole[UC_ASSIGN] == 0);
	MemoryContext chunkcxt;
	MemoryContext oldcxt;
	Datum	   *elems;
	bool	   *elemnulls;
	Datum	   *params;
	char	   *paramnulls;
	void	  **domainextra;
	int64		done = 0;
	int64	   *ends = NULL;	/* per shard group: where its rows end */
	int			group = 0;
	UcRowArray	byshard;

	if (!uc_shape_compatible(merged, shape))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s\" changed after upsert_increment() read its rows",
						shape->relname),
				 errdetail("A column's type or the key's unique index changed between reading and writing the rows."),
				 errhint("Run the statement or transaction again.")));

	/* a hash-distributed Citus table: the rows shard by shard (citus.c) */
	if (shape->distributed && shape->batchable && n > 1)
		ends = shard_order(shape, n, &next_row, &iterarg, &byshard);

	chunkcxt = AllocSetContextCreate(CurrentMemoryContext,
									 "upsert_counter chunk",
									 ALLOCSET_DEFAULT_SIZES);
	elems = palloc(sizeof(Datum) * ncols * chunk);
	elemnulls = palloc(sizeof(bool) * ncols * chunk);
	params = palloc(sizeof(Datum) * Max(ncols, 1));
	paramnulls = palloc(sizeof(char) * Max(ncols, 1));
	domainextra = palloc0(sizeof(void *) * Max(ncols, 1));

	while (done < n)
	{
		int			m = (int) Min(chunk, n - done);
		UcOutcome	out;

		/* no statement crosses a shard's end */
		if (ends != NULL)
		{
			while (ends[group] <= done)
				group++;
			m = (int) Min(m, ends[group] - done);
		}

		/* gather m rows column by column */
		for (int j = 0; j < m; j++)
		{
			const Datum *vals;
			const bool *isnull;

			next_row(iterarg, &vals, &isnull);
			check_domains(shape, vals, isnull, domainextra);
			for (int i = 0; i < ncols; i++)
			{
				elems[i * chunk + j] = vals[i];
				elemnulls[i * chunk + j] = isnull[i];
			}
		}

		oldcxt = MemoryContextSwitchTo(chunkcxt);
		if (rows_form)
		{
			/* Citus: rows as VALUES, which Citus routes to the shard's worker */
			Oid		   *argtypes = palloc(sizeof(Oid) * m * ncols);
			Datum	   *rowparams = palloc(sizeof(Datum) * m * ncols);
			char	   *rownulls = palloc(sizeof(char) * m * ncols);
			char	   *sql = uc_sql_build_rows(shape, m, argtypes);
			int			rc;

			for (int j = 0; j < m; j++)
				for (int i = 0; i < ncols; i++)
				{
					rowparams[j * ncols + i] = elems[i * chunk + j];
					rownulls[j * ncols + i] = elemnulls[i * chunk + j] ? 'n' : ' ';
				}
			MemoryContextSwitchTo(oldcxt);
			rc = SPI_execute_with_args(sql, m * ncols, argtypes, rowparams, rownulls,
									   false, 0);
			uc_cache_count_call(entry, UC_FORM_BATCH);
			count_result(shape, UC_FORM_BATCH, rc, &out);
		}
		else if (chunk == 1)
		{
			for (int i = 0; i < ncols; i++)
			{
				params[i] = elems[i];
				paramnulls[i] = elemnulls[i] ? 'n' : ' ';
			}
			MemoryContextSwitchTo(oldcxt);
			run_plan(entry, UC_FORM_SINGLE, params, paramnulls, &out);
		}
		else
		{
			for (int i = 0; i < ncols; i++)
			{
				const UcColumn *col = &shape->cols[i];
				int			dims[1] = {m};
				int			lbs[1] = {1};

				params[i] = PointerGetDatum(construct_md_array(&elems[i * chunk],
															   &elemnulls[i * chunk],
															   1, dims, lbs,
															   col->typid, col->typlen,
															   col->typbyval, col->typalign));
				paramnulls[i] = ' ';
			}
			MemoryContextSwitchTo(oldcxt);
			run_plan(entry, UC_FORM_BATCH, params, paramnulls, &out);
		}

		*inserted += out.inserted;
		/* with DO NOTHING, rows not inserted are keys that existed */
		*updated += do_nothing ? m - out.inserted : out.updated;
		done += m;
		MemoryContextReset(chunkcxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(chunkcxt);
}

/*
 * Write n merged rows, already in the arbiter's key order, through the
 * current entry of the call that held was built for.  SPI must be
 * connected.  Adds to *inserted and *updated.
 */
void
uc_write_rows(const UcCacheEntry *held, int64 n,
			  UcRowIter next_row, void *iterarg,
			  int64 *inserted, int64 *updated)
{
	UcArgs		args = {0};
	UcRef		ref = {NULL};
	UcCacheEntry *entry;

	uc_entry_args(held, &args);
	entry = uc_cache_acquire(&args, &ref);
	PG_TRY();
	{
		write_rows_referenced(entry, uc_entry_shape(held), n, next_row,
							  iterarg, inserted, updated);
	}
	PG_FINALLY();
	{
		uc_cache_release(&ref);
	}
	PG_END_TRY();
}
