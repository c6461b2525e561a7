/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the PostgreSQL major versions upsert_counter
 *	  builds for, each written once.
 *
 * Every call into core whose signature or name differs between 15 and 18
 * goes through a definition here; the rest of the code is version-free.
 * Modelled on Citus' pg_version_compat.h: a macro or static inline named
 * for what it does, the #if inside.  16 is built by the same definitions
 * as 17 (it has the same API for what is used here) but is not tested.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_COMPAT_H
#define UC_COMPAT_H

#include "postgres.h"

#include "access/stratnum.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "storage/lock.h"
#include "nodes/parsenodes.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/rel.h"
#include "utils/sortsupport.h"

#if PG_VERSION_NUM < 150000
#error "upsert_counter needs PostgreSQL 15 or later"
#endif

/*
 * 16 replaced pg_proc_aclcheck() and its kin by object_aclcheck() on the
 * catalog's OID.
 */
#if PG_VERSION_NUM >= 160000
#define uc_proc_aclcheck(proc, user, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (user), (mode))
#define uc_class_ownercheck(relid, user) \
	object_ownercheck(RelationRelationId, (relid), (user))
#else
#define uc_proc_aclcheck(proc, user, mode) \
	pg_proc_aclcheck((proc), (user), (mode))
#define uc_class_ownercheck(relid, user) \
	pg_class_ownercheck((relid), (user))
#endif

/*
 * Sort support for an index column, ascending or descending as the index
 * stores it.  18 takes "reverse" where 15-17 took a btree strategy number:
 * an int strategy passed to 18 reads as true, so this must never be
 * written without the #if (it would sort every batch in reverse).
 */
static inline void
uc_sortsupport_from_index(Relation irel, bool descending, SortSupport ssup)
{
#if PG_VERSION_NUM >= 180000
	PrepareSortSupportFromIndexRel(irel, descending, ssup);
#else
	PrepareSortSupportFromIndexRel(irel,
								   descending ? BTGreaterStrategyNumber :
								   BTLessStrategyNumber,
								   ssup);
#endif
}

/*
 * The range table of an executor state that writes one relation without a
 * plan (execReplication.c's entry points), as logical replication's apply
 * builds it: 16 moved permission info out of the range table entry, 18
 * takes the set of unpruned relations.
 */
static inline void
uc_exec_init_range_table(EState *estate, RangeTblEntry *rte)
{
#if PG_VERSION_NUM >= 160000
	List	   *perminfos = NIL;

	addRTEPermissionInfo(&perminfos, rte);
#if PG_VERSION_NUM >= 180000
	ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
#else
	ExecInitRangeTable(estate, list_make1(rte), perminfos);
#endif
#else
	ExecInitRangeTable(estate, list_make1(rte));
#endif
}

/*
 * A lock taken without waiting, not reported as a failure when it is not
 * free: 18 added logLockFailure (log_lock_failures).
 */
#if PG_VERSION_NUM >= 180000
#define uc_lock_acquire_nowait(tag, mode, session, report_memory) \
	LockAcquireExtended((tag), (mode), (session), true, (report_memory), NULL, false)
#else
#define uc_lock_acquire_nowait(tag, mode, session, report_memory) \
	LockAcquireExtended((tag), (mode), (session), true, (report_memory), NULL)
#endif

/* 17 takes the relation itself */
#if PG_VERSION_NUM >= 170000
#define uc_identity_sequence(rel, attnum) \
	getIdentitySequence((rel), (attnum), false)
#else
#define uc_identity_sequence(rel, attnum) \
	getIdentitySequence(RelationGetRelid(rel), (attnum), false)
#endif

#endif							/* UC_COMPAT_H */
