# upsert_counter: PGXS build, plus the two commands of the README.
#
#   make            build the module
#   make install    install it into the PostgreSQL found by PG_CONFIG
#   make test       set up everything (packages, build, install, a throwaway
#                   cluster) and run every test suite; what CI runs
#   make test-all   make test on PostgreSQL 17 and 18, each in a Debian chroot (scripts/matrix.sh)
#   make demo       the worked example against a throwaway cluster
#   make bench      pgbench comparisons against plain SQL, one hot key in background
#                   mode against plain appends (minutes; not in make test)
#   make stress     the long reliability run (minutes; make test runs short forms)
#   make installcheck   pg_regress + isolation against a running server
#                   (PGHOST/PGPORT), as PGXS defines it

MODULE_big = upsert_counter
OBJS = \
	src/upsert_counter.o \
	src/args.o \
	src/shape.o \
	src/citus.o \
	src/values.o \
	src/cache.o \
	src/sqlgen.o \
	src/fastpath.o \
	src/execute.o \
	src/rows.o \
	src/batch.o \
	src/buffer.o \
	src/deltalog.o \
	src/fold.o

EXTENSION = upsert_counter
DATA = upsert_counter--1.0.sql upsert_counter--1.0--1.1.sql upsert_counter--1.1--1.2.sql \
	upsert_counter--1.2--1.3.sql
PGFILEDESC = "upsert_counter - atomic increment upserts with cached plans"

REGRESS = install single_row batch assign_on_insert types errors cache citus \
	partitioned security hostile plpgsql wagtail flush safety statement rows background \
	background_worker
ISOLATION = concurrent_increment concurrent_insert batch_lock_order \
	isolation_levels ddl_cached_plan flush_hot_key flush_boundaries \
	commit_privileges update_waits shard_lock_order \
	checks_before_locks background_no_wait background_folds \
	background_drop
ISOLATION_OPTS = --load-extension=upsert_counter

PG_CPPFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare

# No JIT bitcode: it would need clang at build time and buys nothing here.
override with_llvm := no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# Tests of what a major version adds, from that version on
PG_MAJOR := $(shell $(PG_CONFIG) --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
ifeq ($(shell [ "$(PG_MAJOR)" -ge 18 ] 2>/dev/null && echo yes),yes)
REGRESS += pg18
endif
ifneq ($(PGXS),)
include $(PGXS)
endif

# PGXS tracks no header dependencies: every object depends on every header
$(OBJS): $(wildcard src/*.h)

.PHONY: test test-all demo bench stress
test:
	./scripts/test.sh

test-all:
	./scripts/matrix.sh

demo:
	./scripts/demo.sh

bench:
	./bench/run.sh

stress:
	./scripts/stress.sh
