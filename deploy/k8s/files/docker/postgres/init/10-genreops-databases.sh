#!/bin/bash
# Databases of the Compose stack, run by the postgres image on the first start of an empty
# data volume (as POSTGRES_USER, over the local socket). Idempotent; never drops anything.
#   mlflow, prefect, monitoring  owned by POSTGRES_USER (the services' own user)
#   MONITORING_READER_USER       login role that may only read the monitoring tables (Grafana)
# A subshell, because the image sources (rather than runs) init scripts that lost their
# executable bit: our options and variables must not leak into its entrypoint.
(
set -euo pipefail

: "${POSTGRES_USER:?}" "${MONITORING_READER_PASSWORD:?set it in docker_env/secrets.env}"
reader="${MONITORING_READER_USER:-grafana_reader}"

run_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" "$@"
}

run_psql --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    -v owner="$POSTGRES_USER" -v reader="$reader" -v reader_password="$MONITORING_READER_PASSWORD" \
    <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', name, :'owner')
FROM unnest(ARRAY['mlflow', 'prefect', 'monitoring']) AS name
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = name)
\gexec

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'reader', :'reader_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader')
\gexec

-- Only the stack's own user connects to the tracking and orchestration databases.
REVOKE CONNECT ON DATABASE mlflow, prefect FROM PUBLIC;
GRANT CONNECT ON DATABASE monitoring TO :"reader";
SQL

# The monitoring store's tables are created later by the app (as POSTGRES_USER): SELECT on
# what exists now and, through default privileges, on everything that user creates later.
run_psql --dbname monitoring -v owner="$POSTGRES_USER" -v reader="$reader" <<'SQL'
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL
echo "genreops: databases mlflow, prefect, monitoring and role $reader are ready"
)
