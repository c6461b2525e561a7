/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The per-backend cache of resolved shapes and their SPI plans.
 *
 * This file owns the life of a cache entry, in the manner of
 * utils/adt/ri_triggers.c, and the one protocol by which the rest of the
 * extension uses an entry:
 *
 *		entry = uc_cache_acquire(&args, &pin);	lock, look up or build, pin
 *		... use entry->shape and uc_cache_plan(entry, form) ...
 *		uc_cache_release(&pin);
 *
 *	- Acquire locks the target first (RowExclusiveLock, as the INSERT will):
 *	  taking the lock processes pending invalidations, so a valid entry can
 *	  be trusted (ri_FetchPreparedPlan() makes the same point).  It then
 *	  looks the entry up by the target's OID and the exact role and name of
 *	  every column (never a hash alone), builds it from the catalogs if it
 *	  is missing or invalid, and pins it.  Everything a caller does with an
 *	  entry, converting values included, happens after acquire: user code
 *	  run by a conversion (a domain check, a type input function) may call
 *	  us again, and can then neither free nor rebuild what the caller holds.
 *	- A pin belongs to whoever acquired it and is released by that holder
 *	  alone, through its own UcPin; releasing twice is a no-op.  Holders tie
 *	  their pins to what they live in: a single call releases in
 *	  PG_FINALLY; an aggregate state or a commit-mode buffer releases from a
 *	  callback of the memory context it is allocated in, so the pin lives
 *	  exactly as long as its user (a cursor's portal that outlives a
 *	  savepoint keeps its pins; an aborted subtransaction's buffer drops
 *	  them).  No transaction callback touches pins.
 *	- Invalidation callbacks (relcache: the table or its arbiter; syscache:
 *	  any schema, since a renamed schema changes our SQL text) only mark
 *	  entries invalid.  The next acquire of an invalid entry takes it out of
 *	  the cache (detaches it) and builds a new one from the catalogs, so a
 *	  call always uses the current names of its target OID, even while an
 *	  older entry is still pinned by someone else.
 *	- An entry is freed only when it is out of the cache and unpinned, and
 *	  never inside a callback: release moves it to a list that the next
 *	  acquire empties.  The cache holds at most upsert_counter.cache_size
 *	  entries beyond those pinned, evicting the least recently used.
 *	- A kept plan that plancache reports invalid is dropped and prepared
 *	  again from freshly built text, as ri_FetchPreparedPlan() does, unless
 *	  a plan of the entry is executing (a trigger's nested call): then
 *	  plancache revalidates it in place.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/syscache.h"

#include "upsert_counter.h"

const char *const uc_form_names[UC_NFORMS] = {
	"single", "batch", "returning", "lookup"
};

/* The hash table's element: the exact key and the entry it names now */
typedef struct UcCacheKey
{
	Oid			relid;
	uint32		hash;
	int			len;
	const char *namekey;		/* points into the entry */
} UcCacheKey;

typedef struct UcCacheSlot
{
	UcCacheKey	key;			/* must be first */
	UcCacheEntry *entry;
} UcCacheSlot;

static HTAB *uc_cache = NULL;
static MemoryContext uc_cache_cxt = NULL;
static dlist_head uc_lru = DLIST_STATIC_INIT(uc_lru);	/* attached entries */
static dlist_head uc_dead = DLIST_STATIC_INIT(uc_dead); /* to be freed */
static int	uc_nentries = 0;

static uint32
key_hash(const void *key, Size keysize)
{
	return ((const UcCacheKey *) key)->hash;
}

static int
key_match(const void *a, const void *b, Size keysize)
{
	const UcCacheKey *ka = a;
	const UcCacheKey *kb = b;

	if (ka->relid != kb->relid || ka->hash != kb->hash || ka->len != kb->len)
		return 1;
	return memcmp(ka->namekey, kb->namekey, ka->len);
}

/* ---------------------------------------------------------------------
 * Invalidation: mark only
 * ---------------------------------------------------------------------
 */

static void
uc_invalidate(Oid relid, uint32 nsphash)
{
	dlist_iter	iter;
	bool		all = !OidIsValid(relid) && nsphash == 0;

	dlist_foreach(iter, &uc_lru)
	{
		UcCacheEntry *entry = dlist_container(UcCacheEntry, node, iter.cur);
		const UcShape *s = entry->shape;

		if (all || (OidIsValid(relid) && entry->relid == relid) ||
			(OidIsValid(relid) && s->arbiter == relid) ||
			(nsphash != 0 && s->nsphash == nsphash))
			entry->valid = false;
	}
}

static void
uc_relcache_callback(Datum arg, Oid relid)
{
	uc_invalidate(relid, 0);
}

static void
uc_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	uc_invalidate(InvalidOid, hashvalue);
}

/* ---------------------------------------------------------------------
 * Entries: set-up, detaching, freeing
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
	ctl.entrysize = sizeof(UcCacheSlot);
	ctl.hash = key_hash;
	ctl.match = key_match;
	ctl.hcxt = uc_cache_cxt;
	uc_cache = hash_create("upsert_counter cache", 64, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	/* Callback slots are global and cannot be released: register once */
	CacheRegisterRelcacheCallback(uc_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, uc_namespace_callback, (Datum) 0);
}

static void
entry_free(UcCacheEntry *entry)
{
	Assert(entry->pins == 0 && entry->detached);
	for (int f = 0; f < UC_NFORMS; f++)
		if (entry->plans[f] != NULL)
			SPI_freeplan(entry->plans[f]);
	MemoryContextDelete(entry->cxt);
}

/* Free the entries that were released out of the cache */
static void
free_dead(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &uc_dead)
	{
		UcCacheEntry *entry = dlist_container(UcCacheEntry, node, iter.cur);

		dlist_delete(&entry->node);
		entry_free(entry);
	}
}

/*
 * Take an entry out of the cache.  Unpinned, it is freed at once (never
 * call this from a callback); pinned, at its last release.
 */
static void
entry_detach(UcCacheEntry *entry)
{
	UcCacheKey	key;

	Assert(!entry->detached);
	key.relid = entry->relid;
	key.hash = entry->hash;
	key.len = entry->namekeylen;
	key.namekey = entry->namekey;
	hash_search(uc_cache, &key, HASH_REMOVE, NULL);
	dlist_delete(&entry->node);
	uc_nentries--;
	entry->detached = true;
	if (entry->pins == 0)
		entry_free(entry);
}

static void
evict(void)
{
	dlist_mutable_iter iter;

	/* oldest first; dlist has no reverse iterator that tolerates deletion */
	for (iter.cur = uc_lru.head.prev, iter.next = iter.cur->prev;
		 iter.cur != &uc_lru.head && uc_nentries > uc_cache_size;
		 iter.cur = iter.next, iter.next = iter.cur->prev)
	{
		UcCacheEntry *entry = dlist_container(UcCacheEntry, node, iter.cur);

		if (entry->pins == 0)
			entry_detach(entry);
	}
}

/* A new entry for a call, built from the catalogs; not yet in the cache */
static UcCacheEntry *
entry_build(const UcArgs *args)
{
	MemoryContext cxt;
	UcCacheEntry *entry;

	cxt = AllocSetContextCreate(uc_cache_cxt, "upsert_counter shape",
								ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		entry = MemoryContextAllocZero(cxt, sizeof(UcCacheEntry));
		entry->cxt = cxt;
		entry->relid = args->relid;
		entry->hash = args->hash;
		entry->namekeylen = args->namekeylen;
		entry->namekey = MemoryContextAlloc(cxt, Max(args->namekeylen, 1));
		memcpy(entry->namekey, args->namekey, args->namekeylen);
		entry->shape = uc_shape_build(args, cxt);
	}
	PG_CATCH();
	{
		/* Nothing is kept for calls that fail to resolve */
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSetIdentifier(cxt, entry->shape->relname);
	entry->valid = true;
	return entry;
}

/* ---------------------------------------------------------------------
 * The protocol: acquire and release
 * ---------------------------------------------------------------------
 */

/*
 * Lock the call's target, find or build its current entry, and pin it for
 * the caller, who must pass pin to uc_cache_release() when done.
 */
UcCacheEntry *
uc_cache_acquire(const UcArgs *args, UcPin *pin)
{
	UcCacheKey	key;
	UcCacheSlot *slot;
	UcCacheEntry *entry;
	bool		found;

	uc_cache_init();
	free_dead();

	LockRelationOid(args->relid, RowExclusiveLock);

	key.relid = args->relid;
	key.hash = args->hash;
	key.len = args->namekeylen;
	key.namekey = args->namekey;
	slot = hash_search(uc_cache, &key, HASH_FIND, NULL);
	entry = slot != NULL ? slot->entry : NULL;

	if (entry != NULL && !entry->valid)
	{
		entry_detach(entry);
		entry = NULL;
	}

	if (entry == NULL)
	{
		entry = entry_build(args);
		key.namekey = entry->namekey;
		slot = hash_search(uc_cache, &key, HASH_ENTER, &found);
		Assert(!found);
		slot->entry = entry;
		dlist_push_head(&uc_lru, &entry->node);
		uc_nentries++;
	}
	else
		dlist_move_head(&uc_lru, &entry->node);

	entry->pins++;
	pin->entry = entry;

	if (uc_nentries > uc_cache_size)
		evict();
	return entry;
}

/*
 * Give back a pin.  Safe to call twice, and from memory context callbacks
 * during abort: it frees nothing itself.
 */
void
uc_cache_release(UcPin *pin)
{
	UcCacheEntry *entry = pin->entry;

	if (entry == NULL)
		return;
	pin->entry = NULL;
	Assert(entry->pins > 0);
	entry->pins--;
	if (entry->pins == 0 && entry->detached)
		dlist_push_tail(&uc_dead, &entry->node);
}

/*
 * Take another pin on an entry a holder has pinned, for a holder that
 * inherits its rows (a merged batch).  No look-up: the entry is used only
 * through uc_cache_acquire() again when its rows are written.
 */
void
uc_cache_share(const UcPin *held, UcPin *pin)
{
	Assert(held->entry != NULL && held->entry->pins > 0);
	held->entry->pins++;
	pin->entry = held->entry;
}

/*
 * The kept plan for one form of a pinned entry, prepared on first use and
 * again when plancache says it went stale.  The caller has SPI connected.
 */
SPIPlanPtr
uc_cache_plan(UcCacheEntry *entry, UcForm form)
{
	SPIPlanPtr	plan = entry->plans[form];

	Assert(entry->pins > 0);
	if (plan != NULL && entry->running == 0 && !SPI_plan_is_valid(plan))
	{
		SPI_freeplan(plan);
		entry->plans[form] = plan = NULL;
	}

	if (plan == NULL)
	{
		Oid		   *argtypes = palloc(Max(entry->shape->ncols, 1) * sizeof(Oid));
		int			nargs;
		char	   *sql = uc_sql_build(entry->shape, form, argtypes, &nargs);

		/*
		 * The statement plans the same whatever its parameters: ask for the
		 * generic plan at once rather than after five custom ones.  Not on
		 * a Citus table: Citus routes by the parameters' values and refuses
		 * a generic plan of INSERT ... SELECT with parameters.
		 */
		plan = SPI_prepare_cursor(sql, nargs, argtypes,
								  entry->shape->distributed ? CURSOR_OPT_CUSTOM_PLAN :
								  CURSOR_OPT_GENERIC_PLAN);
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

/* Drop every entry; those in use go when their holders release them */
void
uc_cache_reset(void)
{
	dlist_mutable_iter iter;

	if (uc_cache == NULL)
		return;
	dlist_foreach_modify(iter, &uc_lru)
		entry_detach(dlist_container(UcCacheEntry, node, iter.cur));
	free_dead();
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
		UcCacheEntry *entry = dlist_container(UcCacheEntry, node, iter.cur);
		const UcShape *s = entry->shape;

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
