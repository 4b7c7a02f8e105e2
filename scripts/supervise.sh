#!/usr/bin/env bash
# Keeps one process running: restarts it when it exits with an error (1 s, then doubling up to 30 s;
# back to 1 s after it ran for a minute), stops when it exits cleanly, and passes SIGTERM/SIGINT on.
#
#   scripts/supervise.sh NAME LOGFILE -- COMMAND [ARGS...]
#
# Used by `make up` for the shop's services (one supervisor per service, pid in .run/pids).
set -uo pipefail
name=${1:?usage: supervise.sh NAME LOGFILE -- COMMAND...}; log=${2:?}; shift 2
[ "${1:-}" = "--" ] && shift
child=
stopping=
stop() { stopping=1; [ -n "$child" ] && kill -TERM "$child" 2> /dev/null; }
trap stop TERM INT
delay=1
while :; do
  started=$(date +%s)
  "$@" >> "$log" 2>&1 &
  child=$!
  wait "$child"; status=$?
  # `wait` returns early when a trapped signal arrives: wait for the child itself to finish.
  while kill -0 "$child" 2> /dev/null; do wait "$child"; status=$?; done
  [ -n "$stopping" ] && exit 0
  [ "$status" -eq 0 ] && { echo "supervise: $name exited cleanly" >> "$log"; exit 0; }
  [ $(( $(date +%s) - started )) -ge 60 ] && delay=1
  echo "supervise: $name exited with status $status; restarting in ${delay}s" >> "$log"
  sleep "$delay" & wait $!
  [ -n "$stopping" ] && exit 0
  delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
