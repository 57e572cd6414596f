#!/usr/bin/env bash
# Stops the Ray head node that start_ray.sh started, and only that: its process group (recorded in
# $RAY_STATE/pgid), SIGTERM first, SIGKILL after 5 s for what is left (the GCS and raylet may ignore SIGTERM). Safe to run twice.
set -uo pipefail
STATE=${RAY_STATE:-/tmp/spelling_exp_ray}
[ -s "$STATE/pgid" ] || { echo "stop_ray: nothing recorded in $STATE/pgid; nothing to stop"; exit 0; }
PGID=$(cat "$STATE/pgid")
alive() { pgrep -g "$PGID" >/dev/null 2>&1; }
if alive; then
  kill -TERM -- "-$PGID" 2>/dev/null
  for _ in $(seq 1 25); do alive || break; sleep 0.2; done
  alive && kill -KILL -- "-$PGID" 2>/dev/null
fi
rm -f "$STATE/pgid"
echo "stop_ray: stopped process group $PGID"
