/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The state of the upsert_increment() aggregate: merging and writing.
 *
 * This file owns what happens between the first input row of the aggregate
 * and its final function:
 *
 *	- The first row is only kept (its jsonb arguments copied).  If no second
 *	  row comes, the final function writes it through the single-row path,
 *	  so that "SELECT upsert_increment(...)" without FROM costs no more than
 *	  the function it reads like.
 *	- From the second row on, rows are grouped by shape (target and column
 *	  names per role).  Each group acquires its cache entry (cache.c) and
 *	  holds a reference to it as long as the state's memory context lives: a
 *	  memory context callback releases it, so a cursor that outlives a savepoint
 *	  keeps its entries, and a buffer dropped with its subtransaction
 *	  releases them.  Each group keeps a
 *	  red-black tree of distinct keys, ordered and compared by the arbiter
 *	  index's own btree comparators (its opfamilies, collations, ASC/DESC
 *	  and NULLS FIRST/LAST).  A row whose key is already in the tree is
 *	  merged into it: deltas are added with the column type's own addition
 *	  (so overflow is the type's out-of-range error), assign takes the later
 *	  row's value, on_insert keeps the earlier one.  Memory grows with
 *	  distinct keys, not input rows.
 *	- The final function writes each group in key order, in chunks of
 *	  upsert_counter.batch_size rows (execute.c, which acquires the current
 *	  entry for the group's call again, so the rows go to the target OID
 *	  under its current names).  Groups are written in the
 *	  order of target OID and shape (on a hash-distributed Citus table each
 *	  group in shard, then key order: execute.c), so that concurrent batches
 *	  take their row locks in one global order and cannot deadlock with each
 *	  other, and
 *	  no statement ever proposes one key twice ("ON CONFLICT DO UPDATE
 *	  command cannot affect row a second time").
 *
 * All state lives in the aggregate's memory context; per-row scratch lives
 * in the per-tuple context the executor resets between rows.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "lib/rbtree.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"

#include "batch.h"

typedef struct UcRowNode
{
	RBTNode		rbt;
	Datum	   *values;			/* ncols Datums, then ncols bools */
	bool	   *nulls;
} UcRowNode;

typedef struct UcGroup
{
	UcRef		ref;			/* released with the state's memory */
	UcCacheEntry *entry;		/* = ref.entry while referenced */
	UcShape    *shape;
	RBTree	   *tree;
	int64		nrows;			/* distinct keys */
	PGFunction *addfn;			/* per column; delta columns only */
	UcValueMemo *memo;			/* per column */
	MemoryContext cxt;
	struct UcGroup *next;
} UcGroup;

struct UcBatchState
{
	MemoryContext cxt;			/* the aggregate's (or buffer's) context */
	UcGroup    *groups;
	UcGroup    *last;			/* the previous row's group */
	int			ngroups;
	int64		nkeys;			/* distinct keys over all groups */
	bool		can_hold;		/* may keep a first row as given */
	bool		holding;		/* exactly one row so far, kept as given */
	Oid			held_relid;
	Jsonb	   *held[UC_NROLES];
	bool		written;		/* uc_batch_write() was called */
	bool		check_privileges;	/* commit mode: check at buffering */
	MemoryContextCallback release;	/* gives back every group's reference */
};

/* The addition of a delta column's (base) type */
PGFunction
uc_delta_add_fn(Oid basetypid)
{
	switch (basetypid)
	{
		case INT2OID:
			return int2pl;
		case INT4OID:
			return int4pl;
		case INT8OID:
			return int8pl;
		case NUMERICOID:
			return numeric_add;
		case FLOAT4OID:
			return float4pl;
		case FLOAT8OID:
			return float8pl;
	}
	elog(ERROR, "unexpected delta type %u", basetypid);
	return NULL;				/* keep compiler quiet */
}

/* rbtree callbacks; arg is the UcGroup */

static int
row_compare(const RBTNode *a, const RBTNode *b, void *arg)
{
	const UcRowNode *ra = (const UcRowNode *) a;
	const UcRowNode *rb = (const UcRowNode *) b;
	UcShape    *shape = ((UcGroup *) arg)->shape;

	for (int k = 0; k < shape->nkeys; k++)
	{
		int			i = shape->keyorder[k];
		int			c = ApplySortComparator(ra->values[i], ra->nulls[i],
											rb->values[i], rb->nulls[i],
											&shape->keysort[k]);

		if (c != 0)
			return c;
	}
	return 0;
}

static void
replace_value(UcGroup *g, UcRowNode *row, int i, Datum value, bool isnull)
{
	const UcColumn *col = &g->shape->cols[i];

	if (!col->typbyval && !row->nulls[i])
		pfree(DatumGetPointer(row->values[i]));
	row->nulls[i] = isnull;
	row->values[i] = isnull ? (Datum) 0 :
		datumCopy(value, col->typbyval, col->typlen);
}

static void
row_combine(RBTNode *existing, const RBTNode *newdata, void *arg)
{
	UcGroup    *g = (UcGroup *) arg;
	UcRowNode  *ex = (UcRowNode *) existing;
	const UcRowNode *nw = (const UcRowNode *) newdata;
	UcShape    *shape = g->shape;
	MemoryContext oldcxt;

	for (int i = shape->rolestart[UC_DELTA]; i < shape->rolestart[UC_ASSIGN]; i++)
	{
		/* computed in the per-row context, then kept in ours */
		Datum		sum = DirectFunctionCall2(g->addfn[i], ex->values[i], nw->values[i]);

		oldcxt = MemoryContextSwitchTo(g->cxt);
		replace_value(g, ex, i, sum, false);
		MemoryContextSwitchTo(oldcxt);
	}
	oldcxt = MemoryContextSwitchTo(g->cxt);
	for (int i = shape->rolestart[UC_ASSIGN]; i < shape->rolestart[UC_ON_INSERT]; i++)
		replace_value(g, ex, i, nw->values[i], nw->nulls[i]);
	MemoryContextSwitchTo(oldcxt);
	/* on_insert: the first row's values stand */
}

static RBTNode *
row_alloc(void *arg)
{
	return MemoryContextAlloc(((UcGroup *) arg)->cxt, sizeof(UcRowNode));
}

/* The state's memory context is going away: give back the groups' references */
static void
release_groups(void *arg)
{
	UcBatchState *state = (UcBatchState *) arg;

	for (UcGroup *g = state->groups; g != NULL; g = g->next)
	{
		uc_cache_release(&g->ref);
		g->entry = NULL;
	}
}

/*
 * A state in cxt.  An aggregate's state (can_hold) keeps a lone first row as
 * given; the commit-mode buffer (buffer.c) always merges at once, and checks
 * the caller's privileges on each shape it starts, since the write comes
 * later.
 */
UcBatchState *
uc_batch_create(MemoryContext cxt, bool can_hold, bool check_privileges)
{
	UcBatchState *state = MemoryContextAllocZero(cxt, sizeof(UcBatchState));

	state->cxt = cxt;
	state->can_hold = can_hold;
	state->check_privileges = check_privileges;
	state->release.func = release_groups;
	state->release.arg = state;
	MemoryContextRegisterResetCallback(cxt, &state->release);
	return state;
}

int64
uc_batch_nkeys(const UcBatchState *state)
{
	return state->nkeys + (state->holding ? 1 : 0);
}

/* A new, empty group whose reference the caller has just taken */
static UcGroup *
group_init(UcBatchState *state, UcGroup *g)
{
	MemoryContext oldcxt;

	g->entry = g->ref.entry;
	g->shape = uc_entry_shape(g->entry);
	g->cxt = state->cxt;
	g->addfn = MemoryContextAllocZero(state->cxt, Max(g->shape->ncols, 1) * sizeof(PGFunction));
	g->memo = MemoryContextAllocZero(state->cxt, Max(g->shape->ncols, 1) * sizeof(UcValueMemo));
	for (int i = g->shape->rolestart[UC_DELTA]; i < g->shape->rolestart[UC_ASSIGN]; i++)
		g->addfn[i] = uc_delta_add_fn(g->shape->cols[i].basetypid);
	/* rbt_create() allocates in the current context; that must be ours */
	oldcxt = MemoryContextSwitchTo(state->cxt);
	g->tree = rbt_create(sizeof(UcRowNode), row_compare, row_combine,
						 row_alloc, NULL, g);
	MemoryContextSwitchTo(oldcxt);
	return g;
}

/*
 * Link a group whose reference was just taken into the state, so that the
 * release callback sees it
 */
static void
group_link(UcBatchState *state, UcGroup *g)
{
	g->next = state->groups;
	state->groups = g;
	state->ngroups++;
}

/*
 * A new group for a call's shape: acquires its cache entry, referenced
 * until the state's memory goes (or the final function is done).
 */
static UcGroup *
new_group(UcBatchState *state, const UcArgs *args)
{
	UcGroup    *g = MemoryContextAllocZero(state->cxt, sizeof(UcGroup));

	uc_cache_acquire(args, &g->ref);
	group_link(state, g);
	if (state->check_privileges)
		uc_shape_check_privileges(uc_entry_shape(g->ref.entry), GetUserId());
	return group_init(state, g);
}

/*
 * A new group for the entry another state's group holds (merging): takes
 * another reference to it, with no look-up, so merging cannot fail on the catalogs.
 */
static UcGroup *
new_group_like(UcBatchState *state, const UcGroup *other)
{
	UcGroup    *g = MemoryContextAllocZero(state->cxt, sizeof(UcGroup));

	uc_cache_addref(&other->ref, &g->ref);
	group_link(state, g);
	return group_init(state, g);
}

static UcGroup *
find_group(UcBatchState *state, const UcArgs *args)
{
	UcGroup    *g = state->last;

	if (g != NULL && g->entry != NULL && uc_entry_is_for(g->entry, args))
		return g;
	for (g = state->groups; g != NULL; g = g->next)
		if (g->entry != NULL && uc_entry_is_for(g->entry, args))
			return state->last = g;

	return state->last = new_group(state, args);
}

/*
 * Insert or merge one row into a group.  tmp's values may live anywhere;
 * a new key's values are copied into the group's context.
 */
static void
insert_row(UcBatchState *state, UcGroup *g, const UcRowNode *tmp)
{
	const UcShape *shape = g->shape;
	bool		isnew;
	UcRowNode  *row = (UcRowNode *) rbt_insert(g->tree, &tmp->rbt, &isnew);

	if (isnew)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(g->cxt);

		row->values = palloc(Max(shape->ncols, 1) * (sizeof(Datum) + sizeof(bool)));
		row->nulls = (bool *) (row->values + shape->ncols);
		for (int i = 0; i < shape->ncols; i++)
		{
			const UcColumn *col = &shape->cols[i];

			row->nulls[i] = tmp->nulls[i];
			row->values[i] = tmp->nulls[i] ? (Datum) 0 :
				datumCopy(tmp->values[i], col->typbyval, col->typlen);
		}
		MemoryContextSwitchTo(oldcxt);
		g->nrows++;
		state->nkeys++;
	}
}

static void
add_row(UcBatchState *state, Oid relid, Jsonb *const *objs)
{
	UcArgs		args = {0};
	UcGroup    *g;
	UcShape    *shape;
	UcRowNode	tmp;

	uc_args_read(&args, relid, objs);
	g = find_group(state, &args);
	shape = g->shape;

	tmp.values = palloc(Max(shape->ncols, 1) * (sizeof(Datum) + sizeof(bool)));
	tmp.nulls = (bool *) (tmp.values + shape->ncols);
	for (int i = 0; i < shape->ncols; i++)
		tmp.values[i] = uc_value_to_datum(shape, i, &args.values[i], &tmp.nulls[i],
										   &g->memo[i]);

	insert_row(state, g, &tmp);
}

/*
 * Add one row whose values convert() fills in, column by column of the
 * call's shape, once its group (and so its shape) is known.
 */
void
uc_batch_add_with(UcBatchState *state, const UcArgs *args, UcConvertFn convert,
				  void *arg)
{
	UcGroup    *g;
	UcRowNode	tmp;

	if (state->written)
		elog(ERROR, "upsert_increment() state was already written");
	if (state->holding)
	{
		state->holding = false;
		add_row(state, state->held_relid, state->held);
	}
	g = find_group(state, args);
	tmp.values = palloc(Max(g->shape->ncols, 1) * (sizeof(Datum) + sizeof(bool)));
	tmp.nulls = (bool *) (tmp.values + g->shape->ncols);
	convert(g->shape, arg, tmp.values, tmp.nulls);
	insert_row(state, g, &tmp);
}

static Jsonb *
copy_jsonb(MemoryContext cxt, Jsonb *jb)
{
	Jsonb	   *copy;

	if (jb == NULL)
		return NULL;
	copy = MemoryContextAlloc(cxt, VARSIZE(jb));
	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}

/*
 * Add one input row.  objs are the jsonb arguments, valid for this call
 * only.
 */
void
uc_batch_add_jsonb(UcBatchState *state, Oid relid, Jsonb *const *objs)
{
	if (state->written)
		elog(ERROR, "upsert_increment() state was already written");

	if (state->can_hold && state->groups == NULL && !state->holding)
	{
		state->holding = true;
		state->held_relid = relid;
		for (int r = 0; r < UC_NROLES; r++)
			state->held[r] = copy_jsonb(state->cxt, objs[r]);
		return;
	}
	if (state->holding)
	{
		state->holding = false;
		add_row(state, state->held_relid, state->held);
	}
	add_row(state, relid, objs);
}

/*
 * Merge the rows of src into dst, src's rows counting as the later ones
 * (deltas summed, assign from src, on_insert from dst where both have the
 * key).  src is left as it was.
 */
void
uc_batch_merge(UcBatchState *dst, UcBatchState *src)
{
	if (src->holding)
	{
		src->holding = false;
		add_row(src, src->held_relid, src->held);
	}
	for (UcGroup *sg = src->groups; sg != NULL; sg = sg->next)
	{
		UcGroup    *dg;
		RBTreeIterator it;
		UcRowNode  *row;

		for (dg = dst->groups; dg != NULL; dg = dg->next)
			if (dg->entry == sg->entry)
				break;
		if (dg == NULL)
			dg = new_group_like(dst, sg);

		rbt_begin_iterate(sg->tree, LeftRightWalk, &it);
		while ((row = (UcRowNode *) rbt_iterate(&it)) != NULL)
			insert_row(dst, dg, row);
	}
}

/* Iterating a group's tree for uc_write_rows(); arg is an RBTreeIterator */
static void
next_row(void *arg, const Datum **values, const bool **isnull)
{
	UcRowNode  *row = (UcRowNode *) rbt_iterate((RBTreeIterator *) arg);

	if (row == NULL)
		elog(ERROR, "upsert_increment() batch ended early");
	*values = row->values;
	*isnull = row->nulls;
}

static int
group_order(const void *a, const void *b)
{
	return uc_entry_compare((*(UcGroup *const *) a)->entry,
							(*(UcGroup *const *) b)->entry);
}

/*
 * Hand every row the state holds to sink, group by group in the order
 * groups are written (target OID, then shape), each group's rows in key
 * order.  Called once per state; marks it written.
 */
void
uc_batch_drain(UcBatchState *state, UcRowsSink sink, void *arg)
{
	UcGroup   **order;
	int			n = 0;

	if (state->written)
		elog(ERROR, "upsert_increment() state was already written");
	state->written = true;

	if (state->holding)
	{
		state->holding = false;
		add_row(state, state->held_relid, state->held);
	}

	order = palloc(Max(state->ngroups, 1) * sizeof(UcGroup *));
	for (UcGroup *g = state->groups; g != NULL; g = g->next)
		order[n++] = g;
	qsort(order, n, sizeof(UcGroup *), group_order);

	for (int i = 0; i < n; i++)
	{
		UcGroup    *g = order[i];
		RBTreeIterator it;

		rbt_begin_iterate(g->tree, LeftRightWalk, &it);
		sink(g->entry, g->nrows, next_row, &it, arg);
	}
	release_groups(state);
}

typedef struct UcWriteCounts
{
	int64	   *inserted;
	int64	   *updated;
} UcWriteCounts;

static void
write_sink(const UcCacheEntry *entry, int64 n, UcRowIter next, void *iterarg,
		   void *arg)
{
	UcWriteCounts *counts = (UcWriteCounts *) arg;

	uc_write_rows(entry, n, next, iterarg, counts->inserted, counts->updated);
}

/*
 * Write everything the state holds.  Called once, by the final function
 * (or by whoever owns the state).  A lone row kept as given takes the
 * single-row path.
 */
void
uc_batch_write(UcBatchState *state, int64 *inserted, int64 *updated)
{
	UcWriteCounts counts = {inserted, updated};

	if (state->holding && !state->written)
	{
		UcArgs		args = {0};

		state->written = true;
		uc_args_read(&args, state->held_relid, state->held);
		uc_write_one(&args, UC_FORM_SINGLE, NULL, inserted, updated);
		return;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	uc_batch_drain(state, write_sink, &counts);
	SPI_finish();
}
