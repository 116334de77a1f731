#!/usr/bin/env bash
# Run a command with the lab's environment, bringing the lab up first when it
# is not running and taking it down afterwards only if this script started it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB_DIR:-/tmp/spotrescue-lab}

running() { [[ -f $LAB/lab.env && -f $LAB/run/slurmctld.pid ]] && kill -0 "$(cat "$LAB/run/slurmctld.pid")" 2>/dev/null; }

started=0
if ! running; then
	"$here/up.sh"
	started=1
fi
if ((started)); then
	trap '"$here/down.sh"' EXIT
fi
# shellcheck source=/dev/null
source "$LAB/lab.env"
"$@"
