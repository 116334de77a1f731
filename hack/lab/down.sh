#!/usr/bin/env bash
# Stop everything hack/lab/up.sh started (by the PIDs it recorded) and remove the lab dir.
set -uo pipefail
LAB=${LAB_DIR:-/tmp/spotrescue-lab}
[[ -d $LAB ]] || exit 0

pids=()
for f in "$LAB"/run/*.pid; do
	[[ -f $f ]] || continue
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null && kill "$pid" 2>/dev/null && pids+=("$pid")
done
# Slurm daemons take ~2 s to exit; give everything 10 s, then insist.
for _ in $(seq 100); do
	alive=0
	for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
	((alive)) || break
	sleep 0.1
done
for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
# Job steps outlive slurmd when it is killed; they are ours if they run from the lab.
pkill -9 -f "slurmstepd.*$LAB" 2>/dev/null
rm -rf "$LAB"
echo "lab: down" >&2
