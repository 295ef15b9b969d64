#!/usr/bin/env bash
# Install (from Debian's packages) and start a PostgreSQL server on 127.0.0.1:5432 with a
# database for the shared-Optuna-storage tests. Idempotent. The tests read
# TRADING_ENGINE_TEST_POSTGRES_URL (default below) and skip when no server answers.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p 5432" && break
  sleep 1
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='trading_engine'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE ROLE trading_engine LOGIN PASSWORD 'trading_engine'\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='optuna_test'\"" | grep -q 1 \
  || su postgres -c "createdb -O trading_engine optuna_test"
echo "PostgreSQL $version is up: postgresql://trading_engine:***@127.0.0.1:5432/optuna_test"
