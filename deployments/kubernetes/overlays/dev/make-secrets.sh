#!/usr/bin/env bash
# Creates the dev overlay's Secrets in the bazaar namespace: the access-token keys (Ed25519), the
# PostgreSQL superuser and one role per service with a random password, the init script that
# creates those roles and databases, and each service's libpq service file.
#   ./make-secrets.sh            create what is missing (existing Secrets are kept)
#   ./make-secrets.sh --print    print the Secrets as YAML instead of applying them
# Needs kubectl (pointing at the cluster) and openssl.
set -euo pipefail
PRINT=${1:-}
case "$PRINT" in ""|--print) ;; -h|--help) sed -n 2,7p "$0"; exit 0 ;; *) echo "usage: $0 [--print]" >&2; exit 2 ;; esac
NS=bazaar
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
password() { openssl rand -hex 24; }

exists() { [ -z "$PRINT" ] && kubectl -n "$NS" get secret "$1" > /dev/null 2>&1; }
emit() {  # emit NAME --from-file=... : apply (or print) one generic Secret
  local name=$1; shift
  if exists "$name"; then echo "make-secrets: $name exists, kept"; return; fi
  kubectl -n "$NS" create secret generic "$name" "$@" --dry-run=client -o yaml > "$work/$name.yaml"
  if [ -n "$PRINT" ]; then cat "$work/$name.yaml"; echo "---"; else kubectl apply -f "$work/$name.yaml" > /dev/null; echo "make-secrets: $name created"; fi
}

[ -n "$PRINT" ] || kubectl get namespace "$NS" > /dev/null 2>&1 || kubectl create namespace "$NS"

openssl genpkey -algorithm ed25519 -out "$work/jwt-key.pem" 2> /dev/null
openssl pkey -in "$work/jwt-key.pem" -pubout -out "$work/jwt-pub.pem"
emit bazaar-jwt --from-file=jwt-key.pem="$work/jwt-key.pem" --from-file=jwt-pub.pem="$work/jwt-pub.pem"

# The roles' passwords must agree between postgres-init and the service files, so both are
# written only when postgres-init is new.
if exists postgres-init; then
  echo "make-secrets: postgres-init exists: database Secrets kept as they are"
  exit 0
fi
password > "$work/password"
emit postgres-admin --from-file=password="$work/password"
: > "$work/init.sql"
for db in catalog accounts orders notifications; do
  pw=$(password)
  printf "CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n" "$db" "$pw" "$db" "$db" >> "$work/init.sql"
  printf "[%s]\nhost=postgres\nport=5432\ndbname=%s\nuser=%s\npassword=%s\nsslmode=disable\n" "$db" "$db" "$db" "$pw" > "$work/$db.conf"
  emit "$db-database" --from-file=pg_service.conf="$work/$db.conf"
done
cat "$work/catalog.conf" "$work/accounts.conf" > "$work/seed.conf"
emit seed-database --from-file=pg_service.conf="$work/seed.conf"
emit postgres-init --from-file=10-bazaar.sql="$work/init.sql"
