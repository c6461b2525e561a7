/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The per-backend cache of resolved shapes and their SPI plans.
 *
 * This file owns the life of a cache entry, in the manner of
 * utils/adt/ri_triggers.c, and the one protocol by which the rest of the
 * extension uses an entry:
 *
 *		entry = uc_cache_acquire(&args, &ref);	lock, look up or build, ref
 *		... uc_entry_shape(entry), uc_cache_execute(entry, form, ...) ...
 *		uc_cache_release(&ref);
 *
 *	- Acquire locks the target first (RowExclusiveLock, as the INSERT will):
 *	  taking the lock processes pending invalidations, so a valid entry can
 *	  be trusted (ri_FetchPreparedPlan() makes the same point).  It then
 *	  looks the entry up by the target's OID and the exact role and name of
 *	  every column (never a hash alone), builds it from the catalogs if it
 *	  is missing or invalid, and takes a reference on it for the caller.  Everything a caller does with an
 *	  entry, converting values included, happens after acquire: user code
 *	  run by a conversion (a domain check, a type input function) may call
 *	  us again, and can then neither free nor rebuild what the caller holds.
 *	- A reference belongs to whoever acquired it and is released by that
 *	  holder alone, through its own UcRef; releasing twice is a no-op.
 *	  Holders tie their references to what they live in: a single call releases in
 *	  PG_FINALLY; an aggregate state or a commit-mode buffer releases from a
 *	  callback of the memory context it is allocated in, so the reference
 *	  lives exactly as long as its user (a cursor's portal that outlives a
 *	  savepoint keeps its references; an aborted subtransaction's buffer
 *	  drops them).  No transaction callback touches references.
 *	- Invalidation callbacks (relcache: the table or its arbiter; syscache:
 *	  any schema, since a renamed schema changes our SQL text) only mark
 *	  entries invalid.  The next acquire of an invalid entry takes it out of
 *	  the cache (detaches it) and builds a new one from the catalogs, so a
 *	  call always uses the current names of its target OID, even while an
 *	  older entry is still referenced by someone else.
 *	- An entry is freed only when it is out of the cache and no longer
 *	  referenced, and never inside a callback: release moves it to a list
 *	  that the next acquire empties.  The cache holds at most
 *	  upsert_counter.cache_size entries beyond those referenced, evicting
 *	  the least recently used.
 *	- A kept plan that plancache reports invalid is dropped and prepared
 *	  again from freshly built text, as ri_FetchPreparedPlan() does, unless
 *	  a plan of the entry is executing (a trigger's nested call): then
 *	  plancache revalidates it in place.
 *
 * The entry's fields are this file's: the layers above reach a shape and
 * the statements only through the functions below.
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
#include "executor/spi.h"
#include "utils/syscache.h"

#include "cache.h"

/*
 * A cache entry: a shape and the plans prepared for it.  Allocated in its
 * own memory context, with everything it owns but the kept plans.  Used
 * only between uc_cache_acquire() and uc_cache_release(), and never freed
 * while referenced.
 */
struct UcCacheEntry
{
	Oid			relid;
	char	   *namekey;		/* as UcArgs.namekey */
	int			namekeylen;
	uint32		hash;
	MemoryContext cxt;
	UcShape    *shape;
	bool		valid;			/* false once an invalidation hit it */
	bool		detached;		/* out of the cache; freed at its last release */
	int			refcount;		/* uc_cache_acquire() and addref not released */
	int			running;		/* executions of its plans under way */
	SPIPlanPtr	plans[UC_NFORMS];
	uint64		calls[UC_NFORMS];
	dlist_node	node;			/* LRU list, or the list of entries to free */
};

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

		/*
		 * A partitioned Citus table's shape also depends on its partitions'
		 * triggers (shape.c): any relation's change invalidates it.
		 */
		if (all || (OidIsValid(relid) && entry->relid == relid) ||
			(OidIsValid(relid) && s->arbiter == relid) ||
			(OidIsValid(relid) && s->counting == UC_COUNT_CITUS_FLAG) ||
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
	Assert(entry->refcount == 0 && entry->detached);
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
 * Take an entry out of the cache.  Unreferenced, it is freed at once (never
 * call this from a callback); referenced, at its last release.
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
	if (entry->refcount == 0)
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

		if (entry->refcount == 0)
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
 * Lock the call's target, find or build its current entry, and take a
 * reference on it for the caller, who must pass ref to uc_cache_release()
 * when done.
 */
UcCacheEntry *
uc_cache_acquire(const UcArgs *args, UcRef *ref)
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

	entry->refcount++;
	ref->entry = entry;

	if (uc_nentries > uc_cache_size)
		evict();
	return entry;
}

/*
 * Give back a reference.  Safe to call twice, and from memory context
 * callbacks during abort: it frees nothing itself.
 */
void
uc_cache_release(UcRef *ref)
{
	UcCacheEntry *entry = ref->entry;

	if (entry == NULL)
		return;
	ref->entry = NULL;
	Assert(entry->refcount > 0);
	entry->refcount--;
	if (entry->refcount == 0 && entry->detached)
		dlist_push_tail(&uc_dead, &entry->node);
}

/*
 * Take another reference on an entry a holder has, for a holder that
 * inherits its rows (a merged batch).  No look-up: the entry is used only
 * through uc_cache_acquire() again when its rows are written.
 */
void
uc_cache_addref(const UcRef *held, UcRef *ref)
{
	Assert(held->entry != NULL && held->entry->refcount > 0);
	held->entry->refcount++;
	ref->entry = held->entry;
}

/* The shape of a referenced entry */
UcShape *
uc_entry_shape(const UcCacheEntry *entry)
{
	return entry->shape;
}

/* Does this call name exactly the entry's target, columns and roles? */
bool
uc_entry_is_for(const UcCacheEntry *entry, const UcArgs *args)
{
	return args->relid == entry->relid &&
		args->hash == entry->hash &&
		args->namekeylen == entry->namekeylen &&
		memcmp(args->namekey, entry->namekey, args->namekeylen) == 0;
}

/*
 * The arguments of the call an entry was built for, without values: to
 * acquire the current entry of that call again (a batch written later than
 * it was read).
 */
void
uc_entry_args(const UcCacheEntry *entry, UcArgs *args)
{
	const UcShape *s = entry->shape;

	args->relid = entry->relid;
	args->ncols = s->ncols;
	args->maxcols = s->ncols;
	args->names = palloc(Max(s->ncols, 1) * sizeof(char *));
	args->namelens = palloc(Max(s->ncols, 1) * sizeof(int));
	args->values = NULL;
	for (int r = 0; r < UC_NROLES; r++)
		args->nrole[r] = s->nrole[r];
	for (int i = 0; i < s->ncols; i++)
	{
		args->names[i] = s->cols[i].name;
		args->namelens[i] = strlen(s->cols[i].name);
	}
	args->namekey = entry->namekey;
	args->namekeylen = entry->namekeylen;
	args->hash = entry->hash;
}

/*
 * The order batches write their groups in: by target OID, then by the
 * call's roles and names, so that concurrent writers lock in one order.
 */
int
uc_entry_compare(const UcCacheEntry *a, const UcCacheEntry *b)
{
	int			c;

	if (a->relid != b->relid)
		return a->relid < b->relid ? -1 : 1;
	c = memcmp(a->namekey, b->namekey, Min(a->namekeylen, b->namekeylen));
	if (c != 0)
		return c;
	return a->namekeylen - b->namekeylen;
}

/*
 * The kept plan for one form of a referenced entry, prepared on first use
 * and again when plancache says it went stale.  The caller has SPI
 * connected.
 */
pg_noinline static SPIPlanPtr
cache_plan(UcCacheEntry *entry, UcForm form)
{
	SPIPlanPtr	plan = entry->plans[form];

	Assert(entry->refcount > 0);
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

/* Count a statement of a form run without the entry's plan (Citus batches) */
void
uc_cache_count_call(UcCacheEntry *entry, UcForm form)
{
	entry->calls[form]++;
}

/*
 * The plan of a form of a referenced entry, to be executed now: between
 * this and uc_cache_end_execute() (which the caller must reach, also on
 * error), a nested call (a trigger's) that finds the plan stale leaves it
 * to plancache to revalidate in place rather than freeing it.  The
 * caller has SPI connected.
 */
SPIPlanPtr
uc_cache_begin_execute(UcCacheEntry *entry, UcForm form)
{
	SPIPlanPtr	plan = cache_plan(entry, form);

	entry->running++;
	return plan;
}

void
uc_cache_end_execute(UcCacheEntry *entry)
{
	Assert(entry->running > 0);
	entry->running--;
}

/*
 * Execute a form's plan of a referenced entry with these parameters and
 * return SPI's result code (read_only: under the current snapshot, as SPI
 * means it).  The caller has SPI connected.
 */
int
uc_cache_execute(UcCacheEntry *entry, UcForm form, Datum *values,
				 const char *nulls, bool read_only)
{
	SPIPlanPtr	plan = uc_cache_begin_execute(entry, form);
	volatile int rc = 0;

	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
	}
	PG_FINALLY();
	{
		uc_cache_end_execute(entry);
	}
	PG_END_TRY();
	return rc;
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

	InitMaterializedSRF(fcinfo, 0);
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

			if (entry->plans[f] == NULL && entry->calls[f] == 0)
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
