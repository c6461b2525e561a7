/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  Citus tables, read from Citus' catalogs by name (citus.c): whether a
 *	  table is one, and the shard a row of a hash-distributed table goes to.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_CITUS_H
#define UC_CITUS_H

#include "shape.h"

typedef struct UcShardMap
{
	int			col;			/* the distribution column: index into cols */
	FmgrInfo	hashfn;			/* its type's default hash function */
	Oid			collation;
	int			nshards;
	int32	   *ranges;			/* nshards (min, max) pairs, sorted */
} UcShardMap;

extern bool uc_citus_table(Oid relid);
extern UcShardMap *uc_citus_shard_map(const UcShape *shape);
extern int	uc_citus_shard_of(const UcShardMap *map, Datum value, bool isnull);
extern void uc_citus_use_2pc(void);

struct PlanState;
extern void uc_citus_check_aggregate_input(struct PlanState *agg,
										   bool target_is_const,
										   const char *aggname);

#endif							/* UC_CITUS_H */
