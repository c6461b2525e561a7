/*-------------------------------------------------------------------------
 *
 * plan_cache.c
 *	  The per-backend cache of resolved shapes and their SPI plans.
 *
 * This file owns the generated SQL and its lifetime, in the manner of
 * utils/adt/ri_triggers.c:
 *
 *	- entries are keyed by the target's OID and a hash of the column names
 *	  per role (the hash is confirmed against the names, so a collision can
 *	  never run another shape's plan);
 *	- each entry holds the UcShape resolved from the catalogs and up to one
 *	  kept SPI plan per statement form (single row, batch, returning, lookup);
 *	- the SQL text is built only from catalog names: relation, columns and
 *	  constraint quoted and schema-qualified, operators and functions
 *	  qualified by pg_catalog (or by their own schema), so it means the same
 *	  whatever the caller's search_path;
 *	- the caller locks the target first (uc_lock_target), which processes
 *	  pending invalidations; a relcache invalidation of the table or its
 *	  arbiter, or a change of any schema, marks entries invalid, and the next
 *	  call rebuilds them from the catalogs.  Callbacks only mark; freeing
 *	  happens at the next lookup;
 *	- a plan that plancache reports invalid is dropped and prepared again,
 *	  as ri_FetchPreparedPlan() does;
 *	- the cache holds at most upsert_counter.cache_size entries, evicting the
 *	  least recently used;
 *	- entries in use are pinned: an aggregate holds its shapes from the first
 *	  row to the final function, an execution holds its plan while it runs.
 *	  A pinned entry is never freed; it is not rebuilt either, since the
 *	  lock its user holds keeps its table's definition still.  Pins are
 *	  dropped when their subtransaction aborts and at transaction end.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "utils/fmgroids.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "upsert_counter.h"

const char *const uc_form_names[UC_NFORMS] = {
	"single", "batch", "returning", "lookup"
};

typedef struct UcPin
{
	UcCacheEntry *entry;
	SubTransactionId subxid;
} UcPin;

static HTAB *uc_cache = NULL;
static MemoryContext uc_cache_cxt = NULL;
static dlist_head uc_lru = DLIST_STATIC_INIT(uc_lru);
static int	uc_nentries = 0;

static UcPin *uc_pins = NULL;
static int	uc_npins = 0;
static int	uc_maxpins = 0;

/* ---------------------------------------------------------------------
 * Invalidation
 * ---------------------------------------------------------------------
 */

/*
 * Mark entries invalid: those of relation relid (the table or its arbiter
 * index) or of the schema whose syscache hash is nsphash.  InvalidOid with
 * nsphash 0 means all.  Only marks: freeing waits for the next lookup.
 */
static void
uc_invalidate(Oid relid, uint32 nsphash)
{
	HASH_SEQ_STATUS status;
	UcCacheEntry *entry;
	bool		all = !OidIsValid(relid) && nsphash == 0;

	if (uc_cache == NULL)
		return;
	hash_seq_init(&status, uc_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		const UcShape *s = entry->shape;

		if (all || (OidIsValid(relid) && entry->key.relid == relid) ||
			(s != NULL && OidIsValid(relid) && s->arbiter == relid) ||
			(s != NULL && nsphash != 0 && s->nsphash == nsphash))
			entry->valid = false;
	}
}

static void
uc_relcache_callback(Datum arg, Oid relid)
{
	uc_invalidate(relid, 0);
}

/* A renamed schema changes our SQL text without a relcache invalidation */
static void
uc_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	uc_invalidate(InvalidOid, hashvalue);
}

/* ---------------------------------------------------------------------
 * Pins
 * ---------------------------------------------------------------------
 */

void
uc_cache_pin(UcCacheEntry *entry)
{
	if (uc_npins >= uc_maxpins)
	{
		uc_maxpins = Max(16, uc_maxpins * 2);
		uc_pins = uc_pins == NULL ?
			MemoryContextAlloc(TopMemoryContext, uc_maxpins * sizeof(UcPin)) :
			repalloc(uc_pins, uc_maxpins * sizeof(UcPin));
	}
	uc_pins[uc_npins].entry = entry;
	uc_pins[uc_npins].subxid = GetCurrentSubTransactionId();
	uc_npins++;
	entry->pins++;
}

void
uc_cache_unpin(UcCacheEntry *entry)
{
	for (int i = uc_npins - 1; i >= 0; i--)
	{
		if (uc_pins[i].entry == entry)
		{
			entry->pins--;
			uc_pins[i] = uc_pins[--uc_npins];
			return;
		}
	}
	/* already released by a subtransaction abort or at transaction end */
}

static void
uc_xact_callback(XactEvent event, void *arg)
{
	/* pins must last through the commit-mode flush of PRE_COMMIT */
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE ||
		event == XACT_EVENT_PARALLEL_PRE_COMMIT)
		return;
	for (int i = 0; i < uc_npins; i++)
		uc_pins[i].entry->pins = 0;
	uc_npins = 0;
}

static void
uc_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (int i = uc_npins - 1; i >= 0; i--)
	{
		if (uc_pins[i].subxid == mySubid)
		{
			uc_pins[i].entry->pins--;
			uc_pins[i] = uc_pins[--uc_npins];
		}
	}
}

/* ---------------------------------------------------------------------
 * Set-up, lookup and eviction
 * ---------------------------------------------------------------------
 */

void
uc_cache_init(void)
{
	HASHCTL		ctl;

	if (uc_cache != NULL)
		return;

	uc_cache_cxt = AllocSetContextCreate(TopMemoryContext,
										 "upsert_counter cache",
										 ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(UcCacheKey);
	ctl.entrysize = sizeof(UcCacheEntry);
	ctl.hcxt = uc_cache_cxt;
	uc_cache = hash_create("upsert_counter cache", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* Callback slots are global and cannot be released: register once */
	CacheRegisterRelcacheCallback(uc_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, uc_namespace_callback, (Datum) 0);
	RegisterXactCallback(uc_xact_callback, NULL);
	RegisterSubXactCallback(uc_subxact_callback, NULL);
}

/*
 * Lock the target as the INSERT will, before looking at the cache: taking
 * the lock processes pending invalidations, so that a valid entry can be
 * trusted (ri_FetchPreparedPlan() makes the same point).
 */
void
uc_lock_target(Oid relid)
{
	LockRelationOid(relid, RowExclusiveLock);
}

static void
uc_entry_clear(UcCacheEntry *entry)
{
	for (int f = 0; f < UC_NFORMS; f++)
	{
		if (entry->plans[f] != NULL)
			SPI_freeplan(entry->plans[f]);
		entry->plans[f] = NULL;
	}
	if (entry->cxt != NULL)
		MemoryContextDelete(entry->cxt);
	entry->cxt = NULL;
	entry->shape = NULL;
	entry->valid = false;
}

static void
uc_entry_remove(UcCacheEntry *entry)
{
	uc_entry_clear(entry);
	dlist_delete(&entry->lru);
	hash_search(uc_cache, &entry->key, HASH_REMOVE, NULL);
	uc_nentries--;
}

static void
uc_evict(UcCacheEntry *keep)
{
	dlist_mutable_iter iter;

	/* oldest first; dlist has no reverse iterator that tolerates deletion */
	for (iter.cur = uc_lru.head.prev, iter.next = iter.cur->prev;
		 iter.cur != &uc_lru.head && uc_nentries > uc_cache_size;
		 iter.cur = iter.next, iter.next = iter.cur->prev)
	{
		UcCacheEntry *entry = dlist_container(UcCacheEntry, lru, iter.cur);

		if (entry != keep && entry->pins == 0)
			uc_entry_remove(entry);
	}
}

/* (Re)build an entry's shape from the catalogs */
static void
uc_entry_build(UcCacheEntry *entry, const UcArgs *args)
{
	uc_entry_clear(entry);
	entry->cxt = AllocSetContextCreate(uc_cache_cxt, "upsert_counter shape",
									   ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		entry->shape = uc_shape_build(args, entry->cxt);
	}
	PG_CATCH();
	{
		/* Do not keep entries for calls that fail to resolve */
		uc_entry_remove(entry);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSetIdentifier(entry->cxt, entry->shape->relname);
	entry->valid = true;
}

/*
 * Find or build the entry for a call.  The caller has locked args->relid.
 */
UcCacheEntry *
uc_cache_lookup(const UcArgs *args)
{
	UcCacheKey	key;
	UcCacheEntry *entry;
	bool		found;

	uc_cache_init();

	key.relid = args->relid;
	key.pad = 0;
	key.nameshash = args->nameshash;
	entry = hash_search(uc_cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->cxt = NULL;
		entry->shape = NULL;
		entry->valid = false;
		entry->pins = 0;
		memset(entry->plans, 0, sizeof(entry->plans));
		memset(entry->calls, 0, sizeof(entry->calls));
		dlist_push_head(&uc_lru, &entry->lru);
		uc_nentries++;
		if (uc_nentries > uc_cache_size)
			uc_evict(entry);
	}
	else
		dlist_move_head(&uc_lru, &entry->lru);

	if (entry->shape != NULL && !uc_args_match_shape(args, entry->shape))
	{
		/* two shapes with one 64-bit hash: rebuild for this one */
		if (entry->pins > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("upsert_counter cache entry for relation \"%s\" is in use by another shape",
							entry->shape->relname),
					 errhint("Run the two calls in separate statements.")));
		entry->valid = false;
	}

	if (!entry->valid && entry->pins == 0)
		uc_entry_build(entry, args);

	return entry;
}

/* ---------------------------------------------------------------------
 * SQL generation
 * ---------------------------------------------------------------------
 */

static void
append_column_list(StringInfo buf, const UcShape *s, int from, int n,
				   const char *prefix)
{
	for (int i = from; i < from + n; i++)
	{
		if (i > from)
			appendStringInfoString(buf, ", ");
		appendStringInfo(buf, "%s%s", prefix, quote_identifier(s->cols[i].name));
	}
}

static void
append_conflict_clause(StringInfo buf, const UcShape *s,
					   const char *note_function)
{
	appendStringInfoString(buf, " ON CONFLICT ");
	if (s->constraintname != NULL)
		appendStringInfo(buf, "ON CONSTRAINT %s", quote_identifier(s->constraintname));
	else
	{
		appendStringInfoChar(buf, '(');
		append_column_list(buf, s, s->rolestart[UC_KEY], s->nrole[UC_KEY], "");
		appendStringInfoChar(buf, ')');
	}

	if (s->nrole[UC_DELTA] + s->nrole[UC_ASSIGN] == 0)
	{
		appendStringInfoString(buf, " DO NOTHING");
		return;
	}
	/*
	 * The first SET expression passes through upsert_counter_note_update(),
	 * which counts the rows that took the update path (see execute.c).
	 * RETURNING xmax = 0 would do on plain tables, but partitioned tables
	 * refuse system columns in RETURNING.
	 */
	appendStringInfoString(buf, " DO UPDATE SET ");
	for (int i = s->rolestart[UC_DELTA]; i < s->rolestart[UC_ON_INSERT]; i++)
	{
		const char *col = quote_identifier(s->cols[i].name);
		bool		first = (i == s->rolestart[UC_DELTA]);

		appendStringInfo(buf, "%s%s = %s", first ? "" : ", ", col,
						 first ? note_function : "");
		if (s->cols[i].role == UC_DELTA)
			appendStringInfo(buf,
							 "COALESCE(t.%s, 0) OPERATOR(pg_catalog.+) EXCLUDED.%s",
							 col, col);
		else
			appendStringInfo(buf, "EXCLUDED.%s", col);
		if (first)
			appendStringInfoChar(buf, ')');
	}
}

/*
 * The SELECT that finds an existing row by its key, for get-or-create calls
 * of upsert_increment_returning(): ON CONFLICT DO NOTHING returns no row when
 * the key exists.  Equality is the arbiter's own operator, qualified.
 */
static void
append_lookup(StringInfo buf, const UcShape *s, Oid *argtypes)
{
	Relation	irel = index_open(s->arbiter, AccessShareLock);

	appendStringInfo(buf, "SELECT pg_catalog.to_jsonb(t.*) FROM %s%s AS t WHERE ",
					 get_rel_relkind(s->relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					 quote_qualified_identifier(s->nspname, s->relname));
	for (int k = 0; k < s->nkeys; k++)
	{
		int			i = s->keyorder[k];
		const UcColumn *col = &s->cols[i];
		Oid			opcintype = irel->rd_opcintype[k];
		Oid			eqop = get_opfamily_member(irel->rd_opfamily[k], opcintype,
											   opcintype, BTEqualStrategyNumber);
		char		left[NAMEDATALEN * 2 + 8];
		char		right[16];
		Oid			optype;

		if (!OidIsValid(eqop))
			elog(ERROR, "missing equality operator for opfamily %u",
				 irel->rd_opfamily[k]);
		/* no cast to a polymorphic operator input such as anyenum */
		optype = get_typtype(opcintype) == TYPTYPE_PSEUDO ? opcintype : col->typid;
		snprintf(left, sizeof(left), "t.%s", quote_identifier(col->name));
		snprintf(right, sizeof(right), "$%d", i + 1);
		if (k > 0)
			appendStringInfoString(buf, " AND ");
		appendStringInfoChar(buf, '(');
		generate_operator_clause(buf, left, optype, eqop, right, optype);
		if (s->nulls_not_distinct)
			appendStringInfo(buf, " OR (%s IS NULL AND %s IS NULL)", left, right);
		appendStringInfoChar(buf, ')');
		argtypes[i] = col->typid;
	}
	index_close(irel, AccessShareLock);
}

/*
 * The schema upsert_counter is installed in; get_extension_schema() is
 * static before PostgreSQL 16
 */
static Oid
extension_schema(void)
{
	Oid			extoid = get_extension_oid("upsert_counter", false);
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for extension %u", extoid);
	nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

static char *
build_sql(const UcShape *s, UcForm form, Oid *argtypes, int *nargs)
{
	StringInfoData buf;
	char	   *note = NULL;

	initStringInfo(&buf);

	if (form == UC_FORM_LOOKUP)
	{
		*nargs = s->nkeys;
		append_lookup(&buf, s, argtypes);
		return buf.data;
	}

	*nargs = s->ncols;
	appendStringInfo(&buf, "INSERT INTO %s AS t (",
					 quote_qualified_identifier(s->nspname, s->relname));
	append_column_list(&buf, s, 0, s->ncols, "");
	appendStringInfoChar(&buf, ')');

	/*
	 * A batch is one array per column, zipped by ROWS FROM; unnest() keeps
	 * the arrays' order, which is the arbiter's key order.
	 */
	appendStringInfoString(&buf, form == UC_FORM_BATCH ?
						   " SELECT * FROM ROWS FROM (" : " VALUES (");
	for (int i = 0; i < s->ncols; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (form == UC_FORM_BATCH)
			appendStringInfo(&buf, "pg_catalog.unnest($%d)", i + 1);
		else
			appendStringInfo(&buf, "$%d", i + 1);
		argtypes[i] = form == UC_FORM_BATCH ? s->cols[i].arraytypid : s->cols[i].typid;
	}
	appendStringInfoChar(&buf, ')');

	if (s->nrole[UC_DELTA] + s->nrole[UC_ASSIGN] > 0)
	{
		note = psprintf("%s.upsert_counter_note_update(",
						quote_identifier(get_namespace_name(extension_schema())));
	}
	append_conflict_clause(&buf, s, note);

	if (form == UC_FORM_RETURNING)
		appendStringInfoString(&buf, " RETURNING pg_catalog.to_jsonb(t.*)");

	return buf.data;
}

/*
 * The kept plan for one form of an entry, prepared on first use and again
 * when plancache says it went stale.  The caller has SPI connected.
 */
SPIPlanPtr
uc_cache_plan(UcCacheEntry *entry, UcForm form)
{
	SPIPlanPtr	plan = entry->plans[form];

	if (plan != NULL && entry->pins == 0 && !SPI_plan_is_valid(plan))
	{
		SPI_freeplan(plan);
		entry->plans[form] = plan = NULL;
	}

	if (plan == NULL)
	{
		Oid		   *argtypes = palloc(Max(entry->shape->ncols, 1) * sizeof(Oid));
		int			nargs;
		char	   *sql = build_sql(entry->shape, form, argtypes, &nargs);

		/*
		 * The statement plans the same whatever its parameters: ask for the
		 * generic plan at once rather than after five custom ones.
		 */
		plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		entry->plans[form] = plan;
		pfree(sql);
		pfree(argtypes);
	}
	entry->calls[form]++;
	return plan;
}

/* ---------------------------------------------------------------------
 * SQL-visible inspection and reset
 * ---------------------------------------------------------------------
 */

void
uc_cache_reset(void)
{
	dlist_mutable_iter iter;

	if (uc_cache == NULL)
		return;
	dlist_foreach_modify(iter, &uc_lru)
	{
		UcCacheEntry *entry = dlist_container(UcCacheEntry, lru, iter.cur);

		if (entry->pins == 0)
			uc_entry_remove(entry);
		else
			entry->valid = false;
	}
}

static Datum
names_array(const UcShape *s, UcRole role)
{
	int			n = s->nrole[role];
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	/* keys in the arbiter's column order, the others as jsonb orders them */
	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(s->cols[role == UC_KEY ? s->keyorder[i] :
											   s->rolestart[role] + i].name);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum
uc_cache_report(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	dlist_iter	iter;

#if PG_VERSION_NUM >= 150000
	InitMaterializedSRF(fcinfo, 0);
#else
	{
		MemoryContext oldcxt;
		TupleDesc	tupdesc;

		if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
			!(rsinfo->allowedModes & SFRM_Materialize))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("set-valued function called in context that cannot accept a set")));
		oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		rsinfo->returnMode = SFRM_Materialize;
		rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
		rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
		MemoryContextSwitchTo(oldcxt);
	}
#endif
	if (uc_cache == NULL)
		return (Datum) 0;

	dlist_foreach(iter, &uc_lru)
	{
		UcCacheEntry *entry = dlist_container(UcCacheEntry, lru, iter.cur);
		const UcShape *s = entry->shape;

		if (s == NULL)
			continue;
		for (int f = 0; f < UC_NFORMS; f++)
		{
			Datum		values[9];
			bool		nulls[9] = {0};

			if (entry->plans[f] == NULL)
				continue;
			values[0] = ObjectIdGetDatum(s->relid);
			values[1] = ObjectIdGetDatum(s->arbiter);
			for (int r = 0; r < UC_NROLES; r++)
				values[2 + r] = names_array(s, (UcRole) r);
			values[6] = CStringGetTextDatum(uc_form_names[f]);
			values[7] = Int64GetDatum((int64) entry->calls[f]);
			values[8] = BoolGetDatum(entry->valid);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
