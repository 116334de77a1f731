#!/usr/bin/env bash
# Install what a make target needs and this machine lacks, saying what it
# installs (and nothing when everything is there). One list per purpose:
#
#   hack/deps.sh lab    the lab: Debian's Slurm and munge, AEMM
#   hack/deps.sh test   make test: the lab, plus promtool and Prometheus,
#                       systemd-analyze, shellcheck, staticcheck
#   hack/deps.sh bench  make bench: SeaweedFS's `weed`, the S3 that is not
#                       the bottleneck (built once from its Go module, about
#                       8 minutes on 2 cores, then cached), moto_server, aws
#   hack/deps.sh slurm-24.11
#                       a Debian trixie root holding Slurm 24.11 and munge
#                       (debootstrap, about a minute, then cached), for a lab
#                       on a second Slurm version (hack/lab/up.sh, SLURM=24.11)
#
# Debian packages need root (the lab does too); Go tools go to $(go env GOPATH)/bin.
set -euo pipefail

log() { printf 'deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

purpose=${1:-test}
case $purpose in
lab) packages=(slurmctld slurmd slurm-client munge) ;;
bench) packages=() ;;
test) packages=(slurmctld slurmd slurm-client munge prometheus systemd shellcheck debootstrap) ;;
slurm-24.11) packages=(debootstrap) ;;
*) die "usage: $0 lab|test|bench|slurm-24.11" ;;
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

# slurm_root ROOT: Debian trixie's Slurm (24.11) in a root of its own. This
# machine's libc is bookworm's, older than trixie's binaries need, so they
# cannot be installed here; hack/lab/up.sh runs them with the root's /usr
# mounted over /usr in a mount namespace of their own. Built aside and
# renamed into place, so an interrupted build is never taken for one.
slurm_root() {
	local root=$1
	[[ -x $root/usr/sbin/slurmctld ]] && return 0
	[[ $(id -u) == 0 ]] || die "building the Slurm 24.11 root needs root"
	local mirror
	mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
	mirror=${mirror:-http://deb.debian.org/debian}
	log "building a Debian trixie root with Slurm 24.11 in $root (once; about a minute, from $mirror)"
	rm -rf "$root.tmp"
	mkdir -p "$(dirname "$root")"
	debootstrap --variant=minbase --include=slurmctld,slurmd,slurm-client,munge trixie "$root.tmp" "$mirror" >"$root.log" 2>&1 ||
		die "debootstrap failed; see $root.log"
	mv "$root.tmp" "$root"
}
# make test builds it in lab-test-24.11, beside the unit tests.
if [[ $purpose == slurm-24.11 ]]; then
	slurm_root "${SPOTRESCUE_CACHE:-$HOME/.cache/spotrescue}/slurm-24.11"
fi

gobin=$(go env GOPATH)/bin
gotool() { # name module@version
	command -v "$1" >/dev/null && return 0
	[[ -x $gobin/$1 ]] && return 0
	log "installing $1 ($2)"
	GOFLAGS=-mod=mod go install "$2"
}
[[ $purpose == bench ]] || gotool ec2-metadata-mock github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0
if [[ $purpose == test ]]; then
	gotool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

# weed is built from its module's own directory: its go.mod has replace
# directives, so `go install module@version` refuses it.
weed_version=v0.0.0-20261109003541-7506e5f91cd6
weed_bin=${SPOTRESCUE_CACHE:-$HOME/.cache/spotrescue}/weed-$weed_version
if [[ $purpose == bench && ! -x $weed_bin ]]; then
	log "building SeaweedFS weed $weed_version into $weed_bin (once; about 8 minutes on 2 cores)"
	mod=$(GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$weed_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[[ -d $mod ]] || die "go mod download of github.com/seaweedfs/seaweedfs@$weed_version gave no directory"
	src=$(mktemp -d)
	trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
	cp -r "$mod/." "$src"
	chmod -R u+w "$src"
	mkdir -p "$(dirname "$weed_bin")"
	(cd "$src" && go build -trimpath -o "$weed_bin.tmp" ./weed) && mv "$weed_bin.tmp" "$weed_bin"
fi

command -v moto_server >/dev/null || die "moto_server is missing: it ships in this machine image's Python (pip install 'moto[server]==5.2.1')"
command -v aws >/dev/null || die "the aws CLI is missing: it ships in this machine image's Python (pip install 'awscli==1.45.11')"
