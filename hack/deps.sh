#!/usr/bin/env bash
# Install what a make target needs and this machine lacks, saying what it
# installs (and nothing when everything is there). One list per purpose:
#
#   hack/deps.sh lab    the lab: Debian's Slurm and munge, AEMM
#   hack/deps.sh test   make test: the lab, plus promtool and Prometheus,
#                       systemd-analyze, shellcheck, staticcheck
#
# Debian packages need root (the lab does too); Go tools go to $(go env GOPATH)/bin.
set -euo pipefail

log() { printf 'deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

purpose=${1:-test}
case $purpose in
lab) packages=(slurmctld slurmd slurm-client munge) ;;
test) packages=(slurmctld slurmd slurm-client munge prometheus systemd shellcheck) ;;
*) die "usage: $0 lab|test" ;;
esac

missing=()
for pkg in "${packages[@]}"; do
	# Installed, not merely known: a removed package keeps its conffiles
	# and a dpkg status entry ("deinstall ok config-files").
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
	[[ $(id -u) == 0 ]] || die "missing Debian packages ${missing[*]}; run as root, or: apt-get install --no-install-recommends ${missing[*]}"
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq -o DPkg::Lock::Timeout=120
	apt-get install -y -qq -o DPkg::Lock::Timeout=120 --no-install-recommends "${missing[@]}" >/dev/null
fi

gobin=$(go env GOPATH)/bin
gotool() { # name module@version
	command -v "$1" >/dev/null && return 0
	[[ -x $gobin/$1 ]] && return 0
	log "installing $1 ($2)"
	GOFLAGS=-mod=mod go install "$2"
}
gotool ec2-metadata-mock github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0
if [[ $purpose == test ]]; then
	gotool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

command -v moto_server >/dev/null || die "moto_server is missing: it ships in this machine image's Python (pip install 'moto[server]==5.2.1')"
