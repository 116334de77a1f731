#!/usr/bin/env bash
# Run a command with the lab's environment, bringing the lab up first when it
# is not running and taking it down afterwards only if this script started it:
# the lab is left as it was found.
#
#   with-lab.sh [--offer-to-keep] command...
#
# --offer-to-keep (make demo): when this script started the lab, ask whether
# to keep it up afterwards, to try `spotrescue simulate` by hand. KEEP_LAB=1
# keeps it and KEEP_LAB=0 does not, without asking; without a terminal to ask
# on, the lab is taken down.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB_DIR:-/tmp/spotrescue-lab}

offer=0
if [[ ${1:-} == --offer-to-keep ]]; then
	offer=1
	shift
fi

running() { [[ -f $LAB/lab.env && -f $LAB/run/slurmctld.pid ]] && kill -0 "$(cat "$LAB/run/slurmctld.pid")" 2>/dev/null; }

keep() {
	case ${KEEP_LAB:-} in
	1) return 0 ;;
	0) return 1 ;;
	esac
	[[ -t 0 && -t 1 ]] || return 1
	local answer
	read -r -p "Keep the lab up to try \`spotrescue simulate\` by hand? [y/N] " answer
	[[ $answer == [yY]* ]]
}

finish() {
	if ((offer)) && keep; then
		# shellcheck disable=SC2016 # printed for the reader to run, not expanded
		printf 'lab: still up. Try: eval "$(make -s lab-env)"; sbatch --wrap "sleep 300"; bin/spotrescue simulate --node <its node>\nlab: make lab-down when done\n' >&2
		return
	fi
	"$here/down.sh"
}

started=0
if ! running; then
	"$here/up.sh"
	started=1
fi
if ((started)); then
	trap finish EXIT
fi
# shellcheck source=/dev/null
source "$LAB/lab.env"
"$@"
