/*-------------------------------------------------------------------------
 *
 * execute.c
 *	  Running the cached plans: one row, or a sorted batch in chunks.
 *
 * This file owns the step from converted values to executed statements and
 * the counting of what they did.  uc_upsert_one() is the whole single-row
 * path (lock, cache, convert, execute); uc_execute_rows() writes the rows a
 * batch has merged and sorted, upsert_counter.batch_size rows per
 * statement, through the batch plan (one array parameter per column).
 *
 * Every execution pins its cache entry, so that a call made from inside
 * it (a trigger on the target calling upsert_increment() again) cannot free
 * the plan that is running.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/array.h"
#include "utils/memutils.h"

#include "upsert_counter.h"

/*
 * Rows that took the ON CONFLICT DO UPDATE path in the statement running
 * now: the generated SET clause passes its first expression through
 * upsert_counter_note_update(), which counts here.
 */
static uint64 uc_updates = 0;

/*
 * Run a plan with the entry pinned.  Returns SPI_processed (rows inserted
 * or updated; with DO NOTHING, rows inserted); sets *updated to how many of
 * them were updates.  A statement run from inside this one (a trigger
 * calling upsert_increment() again) counts its own updates: the counter is
 * saved and restored around each execution.
 */
static uint64
run_plan(UcCacheEntry *entry, UcForm form, Datum *values, const char *nulls,
		 uint64 *updated)
{
	SPIPlanPtr	plan = uc_cache_plan(entry, form);
	uint64		saved = uc_updates;
	int			rc;

	uc_updates = 0;
	uc_cache_pin(entry);
	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	uc_cache_unpin(entry);
	*updated = uc_updates;
	uc_updates = saved;
	if (rc != SPI_OK_INSERT && rc != SPI_OK_INSERT_RETURNING && rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* upsert_counter_note_update(anyelement): count one updated row */
void
uc_note_update(void)
{
	uc_updates++;
}

/*
 * One row, given as the arguments of a call.  Returns whether the row was
 * created; with UC_FORM_RETURNING also sets *row to the row as jsonb,
 * allocated in the caller's memory context.
 */
bool
uc_upsert_one(const UcArgs *args, UcForm form, Datum *row)
{
	UcCacheEntry *entry;
	const UcShape *shape;
	Datum	   *values;
	char	   *nulls;
	bool		inserted;

	uc_lock_target(args->relid);
	entry = uc_cache_lookup(args);
	shape = entry->shape;

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

	for (;;)
	{
		bool		isnull;
		uint64		nupdated;
		uint64		processed = run_plan(entry, form, values, nulls, &nupdated);

		if (processed > 0)
		{
			inserted = (nupdated == 0);
			if (form == UC_FORM_RETURNING)
				*row = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 1, &isnull),
										 false, -1);
			break;
		}

		/* DO NOTHING found the key: the row exists */
		inserted = false;
		if (form != UC_FORM_RETURNING)
			break;

		/*
		 * Get-or-create with RETURNING: DO NOTHING returned nothing, so read
		 * the row.  Should it have been deleted in between, try the insert
		 * again, as ON CONFLICT itself retries.
		 */
		if (run_plan(entry, UC_FORM_LOOKUP, values, nulls, &nupdated) > 0)
		{
			*row = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull),
									 false, -1);
			break;
		}
		CHECK_FOR_INTERRUPTS();
	}

	SPI_finish();
	return inserted;
}

/*
 * Write n merged rows, already in the arbiter's key order.  rows[j] points
 * to ncols Datums followed by ncols bools (see batch.c).  SPI must be
 * connected.  Adds to *inserted and *updated.
 */
void
uc_execute_rows(UcCacheEntry *entry, const UcShape *shape, int64 n,
				UcRowIter next_row, void *iterarg,
				int64 *inserted, int64 *updated)
{
	int			ncols = shape->ncols;
	int			chunk = (n == 1 || !shape->batchable) ? 1 : (int) Min(n, uc_batch_size);
	MemoryContext chunkcxt;
	MemoryContext oldcxt;
	Datum	   *elems;
	bool	   *elemnulls;
	Datum	   *params;
	char	   *paramnulls;
	int64		done = 0;

	chunkcxt = AllocSetContextCreate(CurrentMemoryContext,
									 "upsert_counter chunk",
									 ALLOCSET_DEFAULT_SIZES);
	elems = palloc(sizeof(Datum) * ncols * chunk);
	elemnulls = palloc(sizeof(bool) * ncols * chunk);
	params = palloc(sizeof(Datum) * Max(ncols, 1));
	paramnulls = palloc(sizeof(char) * Max(ncols, 1));

	while (done < n)
	{
		int			m = (int) Min(chunk, n - done);
		uint64		processed;
		uint64		nupdated;

		/* gather m rows column by column */
		for (int j = 0; j < m; j++)
		{
			const Datum *vals;
			const bool *isnull;

			next_row(iterarg, &vals, &isnull);
			for (int i = 0; i < ncols; i++)
			{
				elems[i * chunk + j] = vals[i];
				elemnulls[i * chunk + j] = isnull[i];
			}
		}

		oldcxt = MemoryContextSwitchTo(chunkcxt);
		if (chunk == 1)
		{
			for (int i = 0; i < ncols; i++)
			{
				params[i] = elems[i];
				paramnulls[i] = elemnulls[i] ? 'n' : ' ';
			}
			MemoryContextSwitchTo(oldcxt);
			processed = run_plan(entry, UC_FORM_SINGLE, params, paramnulls, &nupdated);
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
			processed = run_plan(entry, UC_FORM_BATCH, params, paramnulls, &nupdated);
		}

		/* with DO NOTHING, rows not processed are keys that existed */
		*inserted += processed - nupdated;
		*updated += m - (processed - nupdated);
		done += m;
		MemoryContextReset(chunkcxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(chunkcxt);
}
