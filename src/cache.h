/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  The per-backend cache of shapes and their prepared statements
 *	  (cache.c), and the one protocol for using an entry:
 *
 *		entry = uc_cache_acquire(&args, &ref);	lock, look up or build
 *		... uc_entry_shape(entry), uc_cache_execute(entry, form, ...)
 *			(or its two halves, uc_cache_begin_execute() and _end) ...
 *		uc_cache_release(&ref);
 *
 * An entry's fields are the cache's own.
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_CACHE_H
#define UC_CACHE_H

#include "sqlgen.h"

#include "executor/spi.h"
#include "fmgr.h"

typedef struct UcCacheEntry UcCacheEntry;

/*
 * A holder's counted reference to an entry: taken by uc_cache_acquire()
 * or uc_cache_addref(), given back by uc_cache_release() exactly once (a
 * second release is a no-op).  An entry is never freed while referenced.
 */
typedef struct UcRef
{
	UcCacheEntry *entry;
} UcRef;

/* upsert_counter.cache_size */
extern int	uc_cache_size;

extern void uc_cache_init(void);
extern UcCacheEntry *uc_cache_acquire(const UcArgs *args, UcRef *ref);
extern void uc_cache_release(UcRef *ref);
extern void uc_cache_addref(const UcRef *held, UcRef *ref);

extern UcShape *uc_entry_shape(const UcCacheEntry *entry);
extern bool uc_entry_is_for(const UcCacheEntry *entry, const UcArgs *args);
extern void uc_entry_args(const UcCacheEntry *entry, UcArgs *args);
extern int	uc_entry_compare(const UcCacheEntry *a, const UcCacheEntry *b);

extern int	uc_cache_execute(UcCacheEntry *entry, UcForm form, Datum *values,
							 const char *nulls, bool read_only);
extern SPIPlanPtr uc_cache_begin_execute(UcCacheEntry *entry, UcForm form);
extern void uc_cache_end_execute(UcCacheEntry *entry);

extern void uc_cache_count_call(UcCacheEntry *entry, UcForm form);
extern void uc_cache_reset(void);
extern Datum uc_cache_report(FunctionCallInfo fcinfo);

#endif							/* UC_CACHE_H */
