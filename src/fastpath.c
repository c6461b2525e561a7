/*-------------------------------------------------------------------------
 *
 * fastpath.c
 *	  The single-call entry: a FROM-less call of the aggregate planned as a
 *	  plain function call.
 *
 * "SELECT upsert_increment('t', '{...}', '{...}')" is an aggregate over the
 * one row of a FROM-less query: it costs an Agg node to plan and start,
 * a transition state and a copy of the arguments, although there is
 * exactly one row and nothing to merge.  This file owns a planner hook
 * that recognizes exactly that query shape and replaces the Aggref with a
 * call of upsert_increment_call(target, keys, deltas, assign, on_insert,
 * called_as), a plain function that does what the aggregate does for one
 * row (write it, or buffer it in commit mode) and returns the same result.
 *
 * called_as is the aggregate the query named.  The executor checks the
 * EXECUTE right on the functions a plan calls when it starts the plan, as
 * the user running it then, which need not be the user who planned it: so
 * the replaced plan calls a function whose EXECUTE right is no one's
 * business, and that function checks EXECUTE on called_as for the current
 * user on every call (uc_fastpath_check_call()), as ExecInitAgg() would
 * have for the aggregate.  A REVOKE on the aggregate refuses both forms.
 *
 * The shape, all of it required: a SELECT with no FROM, WHERE, GROUP BY,
 * HAVING, window, ORDER BY, DISTINCT, LIMIT, set operation, CTE, sublink,
 * set-returning function or locking clause; one target list entry whose
 * whole expression is a plain call (no FILTER, ORDER BY, DISTINCT or *) of
 * one of the extension's own upsert_increment aggregates, found by OID.
 * Anything else is planned as it is.  The hook exists once the module is
 * loaded (from the first call in a backend on), so the first call of a
 * session takes the aggregate; both give the same result.  EXPLAIN shows
 * the function.
 *
 * The OIDs are looked up in the extension's schema and kept per backend;
 * any change to pg_proc (a DROP or ALTER EXTENSION among them) forgets
 * them.  An extension not yet updated to 1.3 has no six-argument
 * upsert_increment_call() and is never rewritten.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "upsert_counter.h"

static planner_hook_type prev_planner_hook = NULL;

/* The extension's functions, by OID; valid until pg_proc changes */
static bool oids_known = false;
static Oid	agg_oids[3];		/* upsert_increment with 3, 4 and 5 arguments */
static Oid	call_oid = InvalidOid;	/* upsert_increment_call(..., called_as) */

static void
forget_oids(Datum arg, int cacheid, uint32 hashvalue)
{
	oids_known = false;
}

static void
learn_oids(void)
{
	Oid			nspoid = uc_extension_schema(true);
	Oid			argtypes[6] = {REGCLASSOID, JSONBOID, JSONBOID, JSONBOID, JSONBOID,
	REGPROCEDUREOID};
	char	   *nsp;
	List	   *aggname;

	memset(agg_oids, 0, sizeof(agg_oids));
	call_oid = InvalidOid;
	oids_known = true;
	if (!OidIsValid(nspoid) || (nsp = get_namespace_name(nspoid)) == NULL)
		return;
	aggname = list_make2(makeString(nsp), makeString("upsert_increment"));
	for (int n = 3; n <= 5; n++)
		agg_oids[n - 3] = LookupFuncName(aggname, n, argtypes, true);
	call_oid = LookupFuncName(list_make2(makeString(nsp),
										 makeString("upsert_increment_call")),
							  6, argtypes, true);
}

/* The single Aggref of a query of the shape above, or NULL */
static Aggref *
single_call(Query *parse, TargetEntry **tlep)
{
	TargetEntry *tle;
	Aggref	   *aggref;

	if (parse->commandType != CMD_SELECT || parse->utilityStmt != NULL ||
		!parse->hasAggs || parse->hasWindowFuncs || parse->hasTargetSRFs ||
		parse->hasSubLinks || parse->hasForUpdate || parse->rtable != NIL ||
		parse->jointree == NULL || parse->jointree->quals != NULL ||
		parse->groupClause != NIL || parse->groupingSets != NIL ||
		parse->havingQual != NULL || parse->windowClause != NIL ||
		parse->distinctClause != NIL || parse->sortClause != NIL ||
		parse->limitCount != NULL || parse->limitOffset != NULL ||
		parse->setOperations != NULL || parse->cteList != NIL ||
		parse->rowMarks != NIL || list_length(parse->targetList) != 1)
		return NULL;

	tle = linitial_node(TargetEntry, parse->targetList);
	if (tle->resjunk || !IsA(tle->expr, Aggref))
		return NULL;
	aggref = (Aggref *) tle->expr;
	if (aggref->agglevelsup != 0 || aggref->aggfilter != NULL ||
		aggref->aggorder != NIL || aggref->aggdistinct != NIL ||
		aggref->aggdirectargs != NIL || aggref->aggstar ||
		aggref->aggvariadic || aggref->aggkind != AGGKIND_NORMAL)
		return NULL;
	*tlep = tle;
	return aggref;
}

static PlannedStmt *
uc_planner(Query *parse, const char *query_string, int cursorOptions,
		   ParamListInfo boundParams)
{
	TargetEntry *tle;
	Aggref	   *aggref = single_call(parse, &tle);

	if (aggref != NULL)
	{
		if (!oids_known)
			learn_oids();
		if (OidIsValid(call_oid) &&
			(aggref->aggfnoid == agg_oids[0] || aggref->aggfnoid == agg_oids[1] ||
			 aggref->aggfnoid == agg_oids[2]))
		{
			List	   *args = NIL;
			ListCell   *lc;
			FuncExpr   *call;

			foreach(lc, aggref->args)
				args = lappend(args, lfirst_node(TargetEntry, lc)->expr);
			while (list_length(args) < 5)
				args = lappend(args, makeNullConst(JSONBOID, -1, InvalidOid));
			args = lappend(args, makeConst(REGPROCEDUREOID, -1, InvalidOid,
										   sizeof(Oid),
										   ObjectIdGetDatum(aggref->aggfnoid),
										   false, true));
			call = makeFuncExpr(call_oid, JSONBOID, args, InvalidOid,
								InvalidOid, COERCE_EXPLICIT_CALL);
			call->location = aggref->location;
			tle->expr = (Expr *) call;
			parse->hasAggs = false;
		}
	}

	if (prev_planner_hook)
		return prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

/*
 * upsert_increment_call(..., called_as): refuse a call whose called_as is
 * not one of our aggregates, or that the current user may not execute.
 */
void
uc_fastpath_check_call(Oid called_as)
{
	AclResult	aclresult;

	if (!oids_known)
		learn_oids();
	if (!OidIsValid(called_as) ||
		(called_as != agg_oids[0] && called_as != agg_oids[1] &&
		 called_as != agg_oids[2]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"called_as\" of upsert_increment_call() must be an upsert_increment() aggregate of this extension"),
				 errhint("Call upsert_increment_call() with five arguments.")));
	aclresult = uc_proc_aclcheck(called_as, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_AGGREGATE, get_func_name(called_as));
}

void
uc_fastpath_init(void)
{
	prev_planner_hook = planner_hook;
	planner_hook = uc_planner;
	CacheRegisterSyscacheCallback(PROCOID, forget_oids, (Datum) 0);
}
