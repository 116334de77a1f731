#!/usr/bin/env bash
# Install spotrescue on a ParallelCluster head node.
#
# Run by ParallelCluster as the head node's OnNodeConfigured (and
# OnNodeUpdated) custom action, as root, with the Args of
# deploy/parallelcluster/cluster-config.yaml; it can be run again by hand at
# any time. It is idempotent: files are replaced only when their content
# changes, and the controller is restarted only when its binary, its
# configuration or its unit changed.
#
# What it installs (InstallDir is NFS-shared with every compute node):
#   <InstallDir>/bin/spotrescue                    the binary (controller, agent, hooks)
#   /etc/spotrescue/config.yaml                    the controller's configuration
#   <InstallDir>/config.yaml                       the same, for the agent and the hooks
#   <InstallDir>/taskprolog.sh                     Slurm TaskProlog (CustomSlurmSettings)
#   /opt/slurm/etc/scripts/prolog.d/90-spotrescue.sh   Slurm Prolog (/opt/slurm is shared too)
#   /etc/systemd/system/spotrescue.service         the controller, enabled and started
#   /var/log/spotrescue/                           log directory
#
# Compute nodes need nothing of their own: the Prolog runs from prolog.d on
# the shared /opt/slurm and creates its own log directory, and the binary,
# configuration and TaskProlog are on the shared InstallDir.
#
# For tests: ROOT installs below another directory (file contents still name
# the real paths), SYSTEMCTL replaces systemctl (e.g. SYSTEMCTL=true).
set -euo pipefail

ROOT=${ROOT:-}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
CLUSTERMGTD_CONF=/etc/parallelcluster/slurm_plugin/parallelcluster_clustermgtd.conf
SLURM_PROLOG_DIR=/opt/slurm/etc/scripts/prolog.d
SLURM_BIN_DIR=/opt/slurm/bin
PROLOG_LOG=/var/log/spotrescue/prolog.log
UNIT=spotrescue.service

prog=${0##*/}

usage() {
	cat <<EOF
usage: $prog --release LOCATION --queue-url URL --state-table NAME --bucket NAME
          --document NAME [--prefix PREFIX] [--install-dir DIR]
          [--cluster NAME] [--region REGION] [--extra-config LOCATION]

Install or upgrade spotrescue on a ParallelCluster head node. The values come
from the outputs of the spotrescue CloudFormation stack (InstallerArgs).

  --release LOCATION      s3://bucket/path/, https://host/path/ or a directory holding
                          spotrescue (the binary for the cluster's architecture) and
                          deploy/ (slurm/prolog.sh, slurm/taskprolog.sh, systemd/spotrescue.service)
  --queue-url URL         stack output QueueUrl
  --state-table NAME      stack output StateTable
  --bucket NAME           stack output BucketName
  --document NAME         stack output DocumentName
  --prefix PREFIX         stack output Prefix (default spotrescue)
  --install-dir DIR       stack output InstallDir (default /opt/parallelcluster/shared/spotrescue)
  --cluster NAME          default: cluster_name in $CLUSTERMGTD_CONF
  --region REGION         default: region in $CLUSTERMGTD_CONF
  --extra-config LOCATION a YAML file (s3://, https:// or a path) appended to the
                          configuration: any other setting (scratch.path_template,
                          rescue.checkpoint_signal, fallback.*), never one set above
  -h, --help              this help

Environment: ROOT (install below this directory), SYSTEMCTL (systemctl command).
EOF
}

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
usage_error() {
	log "error: $*"
	usage >&2
	exit 2
}

release="" queue_url="" state_table="" bucket="" document="" prefix=spotrescue
install_dir=/opt/parallelcluster/shared/spotrescue cluster="" region="" extra_config=""

while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--release | --queue-url | --state-table | --bucket | --document | --prefix | --install-dir | --cluster | --region | --extra-config)
		(($# >= 2)) || usage_error "$1 needs a value"
		case $1 in
		--release) release=$2 ;;
		--queue-url) queue_url=$2 ;;
		--state-table) state_table=$2 ;;
		--bucket) bucket=$2 ;;
		--document) document=$2 ;;
		--prefix) prefix=$2 ;;
		--install-dir) install_dir=$2 ;;
		--cluster) cluster=$2 ;;
		--region) region=$2 ;;
		--extra-config) extra_config=$2 ;;
		esac
		shift 2
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
done

for required in release queue_url state_table bucket document; do
	[[ -n ${!required} ]] || usage_error "--${required//_/-} is required"
done
[[ -n $ROOT || $(id -u) == 0 ]] || die "run as root: it installs a systemd unit and Slurm's Prolog"

# clustermgtd_value KEY: the value of "KEY = value" in ParallelCluster's
# clustermgtd configuration, the same source the controller reads at runtime.
clustermgtd_value() {
	local conf=$ROOT$CLUSTERMGTD_CONF
	[[ -r $conf ]] || return 0
	awk -v want="$1" '{
		key = $0; sub(/=.*/, "", key); gsub(/[[:space:]]/, "", key)
		if (key == want && index($0, "=")) {
			v = substr($0, index($0, "=") + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v)
			print v; exit
		}
	}' "$conf"
}
[[ -n $cluster ]] || cluster=$(clustermgtd_value cluster_name)
[[ -n $region ]] || region=$(clustermgtd_value region)
[[ -n $cluster ]] || die "no --cluster and no cluster_name in $ROOT$CLUSTERMGTD_CONF: is this a ParallelCluster head node?"
[[ -n $region ]] || die "no --region and no region in $ROOT$CLUSTERMGTD_CONF"

# Values are checked before they reach sed, YAML or a unit file; the binary's
# `config validate` below is the authority on their meaning. None of these
# patterns admits a quote, a backslash, whitespace, '#' or '&'.
check() { # name value regex
	[[ $2 =~ $3 ]] || die "$1 \"$2\" is not valid (want $3)"
}
check --queue-url "$queue_url" '^https?://[A-Za-z0-9.:-]+/[0-9]+/[A-Za-z0-9_-]{1,80}$'
check --state-table "$state_table" '^[a-zA-Z0-9_.-]{3,255}$'
check --bucket "$bucket" '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'
check --document "$document" '^[a-zA-Z0-9_.-]{3,128}$'
check --prefix "$prefix" '^[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+)*$'
check --install-dir "$install_dir" '^(/[A-Za-z0-9._-]+)+$'
check --cluster "$cluster" '^[a-zA-Z][a-zA-Z0-9-]{0,59}$'
check --region "$region" '^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$'

# fetch SOURCE DEST: copy one file from S3 (the head node's instance profile,
# or HeadNode/Iam/S3Access), HTTPS, or the local filesystem.
fetch() {
	case $1 in
	s3://*) aws s3 cp --only-show-errors --region "$region" "$1" "$2" ;;
	https://* | http://*) curl -fsSL --retry 3 -o "$2" "$1" ;;
	*) cp "$1" "$2" ;;
	esac || die "cannot fetch $1"
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# 1. Fetch and check everything before touching the installation, so a bad
# release or a bad argument leaves a working install as it was.
release=${release%/}
fetch "$release/spotrescue" "$stage/spotrescue"
chmod 0755 "$stage/spotrescue"
mkdir -p "$stage/deploy"
for f in slurm/prolog.sh slurm/taskprolog.sh systemd/spotrescue.service; do
	fetch "$release/deploy/$f" "$stage/deploy/${f##*/}"
done
version=$("$stage/spotrescue" version 2>&1) || die "the release's spotrescue does not run here (built for another architecture?): $version"
version=${version%%$'\n'*}
if [[ -n $extra_config ]]; then
	fetch "$extra_config" "$stage/extra.yaml"
fi

bin=$install_dir/bin/spotrescue
head_config=/etc/spotrescue/config.yaml
node_config=$install_dir/config.yaml

{
	cat <<EOF
# Written by $prog ($version); rerun it to change these values, or pass
# --extra-config for other settings. cluster and region are here for the
# compute nodes, which have no clustermgtd configuration to read them from;
# node_table comes from that configuration on the head node.
cluster: "$cluster"
region: "$region"
queue_url: "$queue_url"
state_table: "$state_table"
bucket: "$bucket"
prefix: "$prefix"
spool_dir: "$install_dir"
ssm:
  document: "$document"
EOF
	if [[ -n $extra_config ]]; then
		printf '# From --extra-config %s:\n' "${extra_config//[[:cntrl:]]/ }"
		cat "$stage/extra.yaml"
	fi
} >"$stage/config.yaml"

# The controller runs under systemd with an empty environment: validate the
# same way, so a stray SPOTRESCUE_* variable here cannot hide a problem. The
# controller's validation also checks Slurm's commands; under ROOT they are
# looked for below ROOT, like everything else.
slurm_flag=()
[[ -z $ROOT ]] || slurm_flag=(--slurm-bin-dir "$ROOT$SLURM_BIN_DIR")
validate() { # role file
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$stage/spotrescue" config validate --role "$1" --config "$2" "${slurm_flag[@]}" >&2 ||
		die "the configuration is not valid for the $1 (see above); nothing was changed"
}
validate controller "$stage/config.yaml"
validate agent "$stage/config.yaml"

# render TEMPLATE OUT CONFIG: fill in the install-time placeholders.
render() {
	sed -e "s#@SPOTRESCUE_BIN@#$bin#g" -e "s#@SPOTRESCUE_CONFIG@#$3#g" \
		-e "s#@SPOTRESCUE_SPOOL@#$install_dir#g" -e "s#@PROLOG_LOG@#$PROLOG_LOG#g" "$1" >"$2"
	if grep -q '@[A-Z_]*@' "$2"; then
		die "$1 has a placeholder this installer does not know: $(grep -o '@[A-Z_]*@' "$2" | head -n 1)"
	fi
}
render "$stage/deploy/prolog.sh" "$stage/prolog.rendered" "$node_config"
render "$stage/deploy/taskprolog.sh" "$stage/taskprolog.rendered" "$node_config"
render "$stage/deploy/spotrescue.service" "$stage/unit.rendered" "$head_config"

# 2. Install. place SOURCE DEST MODE: replace DEST atomically (rename in the
# same directory, so a compute node never runs half a binary over NFS), only
# when its content or mode differs; returns 0 if it changed something.
place() {
	local dest=$ROOT$2
	if [[ -f $dest ]] && cmp -s "$1" "$dest" && [[ $(stat -c %a "$dest") == "${3#0}" ]]; then
		return 1
	fi
	# Called in a condition, where set -e does not apply: check each step.
	mkdir -p "${dest%/*}" || die "cannot create ${dest%/*}"
	if [[ $2 == "$bin" && -f $dest ]]; then
		# Keep the running binary's inode linked: an NFS client executing it
		# (an agent mid-rescue) would get ESTALE if the server freed it. It
		# is also the version to go back to.
		ln -f "$dest" "$dest.previous" || die "cannot keep $dest.previous"
	fi
	install -m "$3" "$1" "$dest.spotrescue-new" || die "cannot write $dest"
	mv -f "$dest.spotrescue-new" "$dest" || die "cannot replace $dest"
	log "installed $2"
	return 0
}

first_install=1
[[ -f $ROOT/etc/systemd/system/$UNIT ]] && first_install=0

mkdir -p "$ROOT$install_dir" "$ROOT/etc/spotrescue"
chmod 0755 "$ROOT$install_dir"
install -d -m 0755 "$ROOT/var/log/spotrescue"

restart=0 reload=0
place "$stage/spotrescue" "$bin" 0755 && restart=1
# Nothing in the configuration is secret, and the TaskProlog reads it as the
# job's user: world-readable.
place "$stage/config.yaml" "$head_config" 0644 && restart=1
place "$stage/config.yaml" "$node_config" 0644 || true
place "$stage/taskprolog.rendered" "$install_dir/taskprolog.sh" 0755 || true
place "$stage/prolog.rendered" "$SLURM_PROLOG_DIR/90-spotrescue.sh" 0755 || true
if place "$stage/unit.rendered" "/etc/systemd/system/$UNIT" 0644; then
	reload=1 restart=1
fi

# 3. Run the controller. enable --now starts it when it is not running (the
# first install, or after a failure); a running one is restarted only when
# something it reads changed.
if ((reload)); then
	"$SYSTEMCTL" daemon-reload
fi
"$SYSTEMCTL" enable --now "$UNIT"
if ((restart && !first_install)); then
	"$SYSTEMCTL" restart "$UNIT"
fi
log "spotrescue $version installed for cluster $cluster ($region); check: systemctl status spotrescue; curl -s 127.0.0.1:9464/readyz"
