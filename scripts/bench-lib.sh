# Sourced by the shop benchmarks (bench-gateway, bench-web, bench-connect) for what they all set
# up: release binaries, a work directory removed at exit together with every process the bench
# started, and a throwaway PostgreSQL whose catalog and accounts databases hold the demo data.
#   . scripts/bench-lib.sh NAME
# then: $B (the bazaar binary), $work, $conninfo (the server's, dbname=postgres), free_port,
# and `pids+=($!)` for each process started.
bench_name=$1
echo "$bench_name: building release binaries"
swift build -c release --product bazaar 2>&1 | grep -E 'error|Build' | tail -1
B=$PWD/.build/release/bazaar
work=$(mktemp -d "/tmp/bazaar-$bench_name.XXXXXX"); chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  bash scripts/postgres.sh stop "$work/pg" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
conninfo=$(bash scripts/postgres.sh start "$work/pg" "$(free_port)")
for db in catalog accounts; do psql "$conninfo" -qc "CREATE DATABASE bench_$db" > /dev/null; done
"$B" jwt keygen --dir "$work/jwt" > /dev/null
"$B" seed --catalog-db "${conninfo/dbname=postgres/dbname=bench_catalog}" --accounts-db "${conninfo/dbname=postgres/dbname=bench_accounts}" \
  --products 200 > /dev/null
