/*-------------------------------------------------------------------------
 *
 * sqlgen.h
 *	  The statements prepared for a shape, one per form, and their text
 *	  (sqlgen.c).
 *
 * Copyright (c) 2026, the upsert_counter authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef UC_SQLGEN_H
#define UC_SQLGEN_H

#include "shape.h"

/*
 * The statement forms we prepare for one shape.  Each is a separate SPI
 * plan in the cache entry.
 */
typedef enum UcForm
{
	UC_FORM_SINGLE = 0,			/* one row, VALUES ($1, ...) */
	UC_FORM_BATCH,				/* many rows, unnest($1::t[], ...) */
	UC_FORM_RETURNING,			/* one row, RETURNING the whole row */
	UC_FORM_LOOKUP,				/* SELECT the row by key (get-or-create) */
	UC_NFORMS
} UcForm;

extern const char *const uc_form_names[UC_NFORMS];

extern Oid	uc_extension_schema(bool missing_ok);
extern char *uc_sql_build(const UcShape *shape, UcForm form, Oid *argtypes,
						  int *nargs);
extern char *uc_sql_build_rows(const UcShape *shape, int nrows, Oid *argtypes);

#endif							/* UC_SQLGEN_H */
