/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  What the extension knows of Citus: which tables are Citus', and how
 *	  a hash-distributed table's rows fall into shards.
 *
 * Citus keeps its metadata in catalogs of its own in pg_catalog:
 * pg_dist_partition (a row per Citus table: logicalrelid, partmethod 'h'
 * for hash-distributed, 'n' for reference and local tables, partkey the
 * distribution column as a node string) and pg_dist_shard (a row per shard:
 * logicalrelid, shardminvalue and shardmaxvalue, the int4 hash range as
 * text).  They are found here by name, so nothing of Citus is needed to
 * build or load the extension, and a database without Citus has neither.
 *
 * Uses: a Citus table is planned per call (cache.c: Citus refuses generic
 * plans of INSERT ... SELECT with parameters) and its statements count
 * with RETURNING xmax = 0 (sqlgen.c: Citus refuses our functions there); the
 * rows of a batch on a hash-distributed table are written shard by shard
 * (execute.c), so that each statement touches one shard and Citus routes
 * it to one worker instead of pulling it to the coordinator.  The shard of
 * a row is found as Citus finds it: the distribution column's value hashed
 * by its type's default hash function under the column's collation, looked
 * up in the sorted hash ranges.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dlfcn.h>

#include "access/genam.h"
#include "access/hash.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "nodes/execnodes.h"
#include "nodes/extensible.h"
#include "nodes/nodeFuncs.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "citus.h"

/* One of Citus' catalogs, open, with the attribute number of some columns */
static Relation
open_catalog(const char *name)
{
	Oid			catalog = get_relname_relid(name, PG_CATALOG_NAMESPACE);

	return OidIsValid(catalog) ? table_open(catalog, AccessShareLock) : NULL;
}

/* The attribute number of a column of the catalog, if it has that type */
static AttrNumber
catalog_column(Relation rel, const char *name, Oid typid)
{
	AttrNumber	attno = get_attnum(RelationGetRelid(rel), name);

	if (attno == InvalidAttrNumber ||
		TupleDescAttr(RelationGetDescr(rel), attno - 1)->atttypid != typid)
		return InvalidAttrNumber;
	return attno;
}

/*
 * The catalog's tuple for relid (a copy), scanning by its logicalrelid
 * column; NULL if there is none or the catalog is not the one we know.
 */
static HeapTuple
catalog_tuple(Relation rel, Oid relid)
{
	AttrNumber	attno = catalog_column(rel, "logicalrelid", REGCLASSOID);
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;

	if (attno == InvalidAttrNumber)
		return NULL;
	ScanKeyInit(&key, attno, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		tup = heap_copytuple(tup);
	else
		tup = NULL;
	systable_endscan(scan);
	return tup;
}

/* Is the relation a Citus table (distributed, reference or managed local)? */
bool
uc_citus_table(Oid relid)
{
	Relation	rel = open_catalog("pg_dist_partition");
	HeapTuple	tup;

	if (rel == NULL)
		return false;
	tup = catalog_tuple(rel, relid);
	table_close(rel, AccessShareLock);
	return tup != NULL;
}

static int
range_order(const void *a, const void *b)
{
	int32		x = ((const int32 *) a)[0];
	int32		y = ((const int32 *) b)[0];

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The shard map of a hash-distributed table whose distribution column is
 * column i of the shape, or NULL: not hash-distributed, the distribution
 * column not among the call's columns, no default hash function for its
 * type, or catalogs not as we know them.  Allocated in the current context.
 */
UcShardMap *
uc_citus_shard_map(const UcShape *shape)
{
	Relation	rel;
	HeapTuple	tup;
	AttrNumber	methodno,
				keyno;
	bool		isnull;
	Datum		d;
	Node	   *partkey;
	Var		   *var;
	UcShardMap *map;
	TypeCacheEntry *tce;
	SysScanDesc scan;
	ScanKeyData key;
	AttrNumber	relidno,
				minno,
				maxno;
	int			room = 32;

	if (!shape->distributed || (rel = open_catalog("pg_dist_partition")) == NULL)
		return NULL;
	methodno = catalog_column(rel, "partmethod", CHAROID);
	keyno = catalog_column(rel, "partkey", TEXTOID);
	tup = methodno && keyno ? catalog_tuple(rel, shape->relid) : NULL;
	if (tup == NULL)
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}
	d = heap_getattr(tup, methodno, RelationGetDescr(rel), &isnull);
	if (isnull || DatumGetChar(d) != 'h')
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}
	d = heap_getattr(tup, keyno, RelationGetDescr(rel), &isnull);
	table_close(rel, AccessShareLock);
	if (isnull)
		return NULL;
	partkey = stringToNode(TextDatumGetCString(d));
	if (partkey == NULL || !IsA(partkey, Var))
		return NULL;
	var = (Var *) partkey;

	map = palloc0(sizeof(UcShardMap));
	map->col = -1;
	for (int i = 0; i < shape->ncols; i++)
		if (shape->cols[i].attnum == var->varattno)
			map->col = i;
	if (map->col < 0)
		return NULL;
	tce = lookup_type_cache(getBaseType(shape->cols[map->col].typid), TYPECACHE_HASH_PROC);
	if (!OidIsValid(tce->hash_proc))
		return NULL;
	fmgr_info(tce->hash_proc, &map->hashfn);
	map->collation = var->varcollid;

	/* the shards' hash ranges, sorted */
	if ((rel = open_catalog("pg_dist_shard")) == NULL)
		return NULL;
	relidno = catalog_column(rel, "logicalrelid", REGCLASSOID);
	minno = catalog_column(rel, "shardminvalue", TEXTOID);
	maxno = catalog_column(rel, "shardmaxvalue", TEXTOID);
	if (!relidno || !minno || !maxno)
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}
	map->ranges = palloc(sizeof(int32) * 2 * room);
	ScanKeyInit(&key, relidno, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(shape->relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Datum		lo = heap_getattr(tup, minno, RelationGetDescr(rel), &isnull);
		bool		hinull;
		Datum		hi = heap_getattr(tup, maxno, RelationGetDescr(rel), &hinull);

		if (isnull || hinull)
		{
			map->nshards = 0;
			break;
		}
		if (map->nshards == room)
		{
			room *= 2;
			map->ranges = repalloc(map->ranges, sizeof(int32) * 2 * room);
		}
		map->ranges[2 * map->nshards] = pg_strtoint32(TextDatumGetCString(lo));
		map->ranges[2 * map->nshards + 1] = pg_strtoint32(TextDatumGetCString(hi));
		map->nshards++;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (map->nshards < 2)
		return NULL;			/* nothing to split */
	qsort(map->ranges, map->nshards, 2 * sizeof(int32), range_order);
	return map;
}

/*
 * The shard (an index into the sorted ranges) of a row whose distribution
 * column has this value; -1 for NULL or a hash in no range (Citus will say
 * what it thinks of those rows).
 */
int
uc_citus_shard_of(const UcShardMap *map, Datum value, bool isnull)
{
	int32		h;
	int			lo = 0,
				hi = map->nshards - 1;

	if (isnull)
		return -1;
	h = DatumGetInt32(FunctionCall1Coll((FmgrInfo *) &map->hashfn, map->collation, value));
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (h < map->ranges[2 * mid])
			hi = mid - 1;
		else if (h > map->ranges[2 * mid + 1])
			lo = mid + 1;
		else
			return mid;
	}
	return -1;
}

/*
 * The name Citus gives shard shardid of a table named name (Citus'
 * AppendShardIdToName()): "<name>_<shardid>", or, where that would not
 * fit in NAMEDATALEN - 1 bytes, the name clipped, "_", its hash in eight
 * hex digits, and "_<shardid>".
 */
static void
citus_shard_name(const char *name, int64 shardid, char *out)
{
	char		suffix[NAMEDATALEN];
	int			len = strlen(name);
	int			suffixlen;

	snprintf(suffix, sizeof(suffix), "_" INT64_FORMAT, shardid);
	suffixlen = strlen(suffix);
	if (len < NAMEDATALEN - suffixlen)
		snprintf(out, NAMEDATALEN, "%s%s", name, suffix);
	else
		snprintf(out, NAMEDATALEN, "%.*s_%.8x%s",
				 pg_mbcliplen(name, len, NAMEDATALEN - suffixlen - 10), name,
				 DatumGetUInt32(hash_any((const unsigned char *) name, len)),
				 suffix);
}

/*
 * Is the relation a shard of a Citus table, as Citus names shards
 * (citus_shard_name()), with that shard id in pg_dist_shard for that
 * table, in the table's schema?
 */
static bool
is_shard(Relation scanned)
{
	const char *name = RelationGetRelationName(scanned);
	const char *sep = strrchr(name, '_');
	Relation	rel;
	AttrNumber	relno,
				idno;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		found = false;
	int64		shardid;
	char	   *end;

	if (sep == NULL || sep[1] == '\0' || strspn(sep + 1, "0123456789") != strlen(sep + 1))
		return false;
	errno = 0;
	shardid = strtoi64(sep + 1, &end, 10);
	if (errno != 0)
		return false;
	rel = open_catalog("pg_dist_shard");
	if (rel == NULL)
		return false;
	relno = catalog_column(rel, "logicalrelid", REGCLASSOID);
	idno = catalog_column(rel, "shardid", INT8OID);
	if (relno != InvalidAttrNumber && idno != InvalidAttrNumber)
	{
		ScanKeyInit(&key, idno, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(shardid));
		scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
		while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			bool		isnull;
			Oid			logical = DatumGetObjectId(heap_getattr(tup, relno,
																RelationGetDescr(rel),
																&isnull));
			char	   *logicalname = isnull ? NULL : get_rel_name(logical);
			char		shardname[NAMEDATALEN];

			if (logicalname == NULL ||
				get_rel_namespace(logical) != RelationGetNamespace(scanned))
				continue;
			citus_shard_name(logicalname, shardid, shardname);
			found = strcmp(shardname, name) == 0;
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
	return found;
}

typedef struct UcPlanSearch
{
	bool		remote;			/* a Citus scan gathering rows from workers */
	bool		shard;			/* a scan of a Citus shard */
} UcPlanSearch;

static bool
search_plan(PlanState *ps, void *arg)
{
	UcPlanSearch *found = (UcPlanSearch *) arg;

	if (ps == NULL)
		return false;
	if (IsA(ps->plan, CustomScan))
	{
		/* the name EXPLAIN shows: "Citus Adaptive" and its kin */
		const char *name = ((CustomScan *) ps->plan)->methods->CustomName;

		if (name != NULL && strncmp(name, "Citus", 5) == 0)
			found->remote = true;
	}
	switch (nodeTag(ps->plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_IndexOnlyScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
			if (((ScanState *) ps)->ss_currentRelation != NULL &&
				is_shard(((ScanState *) ps)->ss_currentRelation))
				found->shard = true;
			break;
		default:
			break;
	}
	return planstate_tree_walker(ps, search_plan, arg);
}

/*
 * The rows below an aggregate come through Citus: refuse what cannot be
 * right there.  agg is the aggregate's input; target_is_const says whether
 * the aggregate's target argument is a constant of the plan.
 *
 *	- Gathered from the workers by a Citus scan, a non-constant target was
 *	  evaluated on a worker and reaches us as the worker's OID, which here
 *	  may name another table (and the typed form's records lose their
 *	  field names on the way).
 *	- Over a shard, the aggregate itself runs on a worker, pushed down by
 *	  Citus (GROUP BY the distribution column), where the write would be a
 *	  distributed query inside a query on a shard.
 *
 * Either way the source belongs on the coordinator: a subquery with
 * OFFSET 0 makes Citus gather it first.  Nothing is checked without
 * Citus' catalogs.
 */
void
uc_citus_check_aggregate_input(PlanState *agg, bool target_is_const,
							   const char *aggname)
{
	UcPlanSearch found = {false, false};

	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return;
	search_plan(agg, &found);
	if (found.shard)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s() cannot run over the shards of a Citus table", aggname),
				 errdetail("Citus pushed the aggregate down to the workers (as it does with GROUP BY the distribution column), where its writes would be distributed queries inside a query on a shard."),
				 errhint("Read the source in a subquery with OFFSET 0, for example FROM (SELECT ... FROM source OFFSET 0) s, so that the aggregate runs on the coordinator.")));
	if (found.remote && !target_is_const)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s() cannot take its arguments from rows Citus gathers from its workers", aggname),
				 errdetail("Citus evaluates the aggregate's arguments on its workers, where a table's OID can differ from its OID here: the target would name whatever table has that OID here."),
				 errhint("Read the source in a subquery with OFFSET 0, for example FROM (SELECT ... FROM source OFFSET 0) s, so that the arguments are evaluated on the coordinator.")));
}

/*
 * Make the current transaction commit its writes on Citus workers in two
 * phases.  Citus does so when a transaction modifies more than one node;
 * a fold writes a Citus table and deletes rows of a local table, the log,
 * which Citus does not count as a node: with one worker written, it would
 * commit there in one phase before the coordinator commits, and a crash
 * in between would leave the rows applied there and still logged here, to
 * be applied again.  In two phases, Citus' recovery resolves the worker's
 * prepared transaction by the coordinator's outcome: exactly once.
 *
 * Citus has no SQL for this; its C function
 * Use2PCForCoordinatedTransaction() sets a flag that Citus resets at the
 * end of the transaction.  It is looked up among the loaded libraries
 * (PostgreSQL loads them RTLD_GLOBAL), so nothing is loaded here: without
 * Citus loaded there are no Citus writes to commit.
 */
void
uc_citus_use_2pc(void)
{
	static void (*use2pc) (void) = NULL;
	static bool looked = false;

	if (!looked)
	{
#ifdef RTLD_DEFAULT
		use2pc = (void (*) (void)) dlsym(RTLD_DEFAULT, "Use2PCForCoordinatedTransaction");
#endif
		looked = true;
		if (use2pc == NULL && OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
			ereport(LOG,
					(errmsg("upsert_counter: Citus' Use2PCForCoordinatedTransaction() was not found"),
					 errdetail("A fold that writes a Citus table on one worker commits there in one phase: a crash of this node before its own commit applies the rows again.")));
	}
	if (use2pc != NULL)
		use2pc();
}
