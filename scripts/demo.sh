#!/usr/bin/env bash
# make demo: the worked example of demo/demo.sql against a throwaway cluster.
source "$(dirname "$0")/pgenv.sh"

uc_ensure_packages
uc_build_install
uc_start_cluster
uc_as_postgres createdb demo
uc_as_postgres psql -X -q -e -d demo -f - <"$UC_REPO/demo/demo.sql"
