#!/usr/bin/env bash
# spelling-exp: a real single-node Ray cluster (head node only) on loopback, for the Ray launcher
# tests and for trying hydra/launcher=ray on one machine. Idempotent: a head node this script
# started and that is still alive is left alone.
#   RAY_PORT (default 6390): the GCS port; not Ray's default 6379, so a cluster of your own is never touched.
#   RAY_NUM_CPUS (default: all cores): CPUs the head node offers to jobs.
# Processes are started in their own session; its id is recorded in $RAY_STATE/pgid, and
# stop_ray.sh ends exactly that process group (never `ray stop`, which ends every Ray on the machine).
# Needs the Ray extra in the venv: bash scripts/setup.sh (or pip install -e ".[ray]").
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${RAY_STATE:-/tmp/spelling_exp_ray}
PORT=${RAY_PORT:-6390}
RAY=${RAY_BIN:-.venv/bin/ray}
mkdir -p "$STATE"
[ -x "$RAY" ] || { echo "start_ray.sh: $RAY not found; install the Ray extra (bash scripts/setup.sh)" >&2; exit 1; }
# Everything on 127.0.0.1: Ray otherwise advertises the machine's routable address even for a local head.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
if [ -s "$STATE/pgid" ] && kill -0 -- "-$(cat "$STATE/pgid")" 2>/dev/null &&
   timeout 20 "$RAY" status --address "127.0.0.1:$PORT" >/dev/null 2>&1; then
  echo "start_ray: head node already running (process group $(cat "$STATE/pgid"), 127.0.0.1:$PORT)"
  exit 0
fi
T0=$(date +%s.%N)
# setsid: a new session and process group (its id is the pid of `ray start`), inherited by the GCS,
# the raylet and every worker the raylet starts.
setsid "$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="${RAY_NUM_CPUS:-$(nproc)}" \
  --include-dashboard=false --disable-usage-stats --object-store-memory=200000000 \
  >"$STATE/start.log" 2>&1 &
PGID=$!
echo "$PGID" >"$STATE/pgid"
wait "$PGID" || { tail -20 "$STATE/start.log" >&2; echo "start_ray.sh: ray start failed (log: $STATE/start.log)" >&2; exit 1; }
for _ in $(seq 1 60); do
  timeout 20 "$RAY" status --address "127.0.0.1:$PORT" >/dev/null 2>&1 && break
  sleep 0.5
done
timeout 20 "$RAY" status --address "127.0.0.1:$PORT" >/dev/null 2>&1 ||
  { echo "start_ray.sh: head node not answering on 127.0.0.1:$PORT (log: $STATE/start.log)" >&2; exit 1; }
echo "start_ray: head node up on 127.0.0.1:$PORT in $(printf %.1f "$(echo "$(date +%s.%N) - $T0" | bc)") s" \
  "(process group $PGID; connect with address=auto or RAY_ADDRESS=127.0.0.1:$PORT)"
