#!/usr/bin/env bash
# Stops only the daemons recorded by start_slurm.sh in $BASE/run/started/*.pid
# (after cancelling jobs still in the queue, so no slurmstepd/job processes linger).
set -uo pipefail
BASE=${SLURM_BASE:-/tmp/spelling_exp_slurm}
MINE=$BASE/run/started
log() { echo "[stop_slurm] $*"; }
ours() { # ours NAME -> prints pid if the recorded pid is alive and is that program
  local f=$MINE/$1.pid p
  [ -s "$f" ] || return 1
  p=$(cat "$f")
  kill -0 "$p" 2>/dev/null && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$1" ] && echo "$p"
}
if ours slurmctld >/dev/null; then
  JOBS=$(timeout 10 squeue -h -o %A 2>/dev/null | xargs)
  if [ -n "$JOBS" ]; then
    log "cancelling jobs: $JOBS"
    # shellcheck disable=SC2086
    timeout 10 scancel $JOBS
    for ((i = 0; i < 150; i++)); do [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
for d in slurmd slurmctld slurmdbd mariadbd munged; do
  [ -e "$MINE/$d.pid" ] || continue
  if p=$(ours "$d"); then
    kill -TERM "$p"
    for ((i = 0; i < 150; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then log "$d ($p) ignored SIGTERM -> SIGKILL"; kill -KILL "$p"; fi
    log "stopped $d (pid $p)"
  else
    log "$d (pid $(cat "$MINE/$d.pid")) was not running"
  fi
  rm -f "$MINE/$d.pid"
done
