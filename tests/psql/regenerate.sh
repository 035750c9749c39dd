#!/usr/bin/env bash
# Regenerate expected.out from a real PostgreSQL 15 server: apply schema.sql to a fresh
# database and record what psql prints for each line of commands.txt.
# Usage: bash tests/psql/regenerate.sh "host=127.0.0.1 port=5433 user=root"
set -euo pipefail
cd "$(dirname "$0")"
conn="$1"
psql -X "$conn dbname=postgres" -q -c "DROP DATABASE IF EXISTS psql_golden" -c "CREATE DATABASE psql_golden"
psql -X "$conn dbname=psql_golden" -q -v ON_ERROR_STOP=1 -f schema.sql
while IFS= read -r cmd; do
  echo "== $cmd"
  psql -X "$conn dbname=psql_golden" -c "$cmd"
done < commands.txt > expected.out
