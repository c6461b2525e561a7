/*-------------------------------------------------------------------------
 *
 * upsert_counter.h
 *	  The map of the upsert_counter sources, and what the entry points
 *	  share.
 *
 * The extension turns a call such as
 *
 *		upsert_increment('ab_hourly', '{"id":7,"hour":13}', '{"n":1}')
 *
 * into an execution of a cached INSERT ... ON CONFLICT DO UPDATE plan.
 * Layers, each with its header, each using only those beneath it:
 *
 *	upsert_counter.h	entry points
 *		upsert_counter.c	module set-up, the settings, the SQL-callable
 *							functions, the one transaction callback
 *		fastpath.c	the planner hook that runs a FROM-less call of the
 *					aggregate as a plain function call
 *	background.h	background mode
 *		deltalog.c	the log a call appends its rows to, reading it back,
 *					upsert_counter_read()
 *		fold.c		the fold: a target's logged rows merged and written,
 *					exactly once; the background worker; upsert_counter_fold()
 *	buffer.h		commit mode
 *		buffer.c	the per-transaction buffer of upsert_counter.flush =
 *					'commit', its owners (user, security context,
 *					subtransaction), and its write just before commit
 *	batch.h			accumulation
 *		batch.c		the aggregate's state: merging rows with equal keys
 *					and writing them sorted, in chunks
 *		rows.c		the typed input: rows as records whose field names
 *					are column names (upsert_increment_rows)
 *	write.h			writing
 *		execute.c	running the statements, one row or sorted chunks of a
 *					batch, and counting what they did
 *	cache.h			the cache
 *		cache.c		the per-backend cache of shapes and their SPI plans:
 *					the one acquire/release pair, invalidation, eviction
 *	sqlgen.h		statements
 *		sqlgen.c	the text of the generated statements
 *	citus.h			Citus
 *		citus.c		Citus tables and shards, from Citus' catalogs
 *	shape.h			shape and catalog resolution
 *		shape.c		resolving names against the catalogs into a UcShape:
 *					attributes, types and the arbiter index (the rules of
 *					core's infer_arbiter_indexes())
 *		values.c	converting JSON values to Datums of the column types
 *	args.h			the call and its arguments
 *		args.c		reading the jsonb arguments into a UcArgs (column
 *					names per role, their values, the exact cache key)
 *	compat.h		the differences between PostgreSQL 15, 16, 17 and 18
 *
 * Words: "flush" is only the setting upsert_counter.flush and the
 * SQL function upsert_counter_flush(); the buffer is "written".  A "ref" is
 * a counted reference to a cache entry.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UPSERT_COUNTER_H
#define UPSERT_COUNTER_H

#include "background.h"

/* fastpath.c */
extern void uc_fastpath_init(void);
extern void uc_fastpath_check_call(Oid called_as);

#endif							/* UPSERT_COUNTER_H */
