#!/usr/bin/env bash
# Bring the spotrescue lab up on 127.0.0.1: real Slurm (slurmctld + 4 slurmd),
# moto_server (SQS, DynamoDB, S3), AEMM (IMDSv2) and hack/ssmlocal.
# Idempotent: a component that is already running is left alone.
# Everything lives under $LAB_DIR (default /tmp/spotrescue-lab); down.sh removes it.
#
# SLURM=22.05 (the default) runs this machine's Debian Slurm; SLURM=24.11
# runs Debian trixie's, from a root that hack/deps.sh builds, on addresses
# and ports of its own, so that a 24.11 lab (give it its own LAB_DIR) can
# run beside a 22.05 one.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
SLURM=${SLURM:-22.05}
case $SLURM in
22.05) BASE=0 ;;
24.11) BASE=100 ;;
*) echo "lab: SLURM=$SLURM: use 22.05 or 24.11" >&2 && exit 2 ;;
esac
LAB=${LAB_DIR:-/tmp/spotrescue-lab}
BIN=${LAB_BIN:-$repo/bin}
NODES=${LAB_NODES:-4}
CTLD_PORT=$((16817 + BASE)) MOTO_PORT=$((4570 + BASE)) FAULT_PORT=$((4575 + BASE)) SSM_PORT=$((4580 + BASE)) IMDS_PORT=$((4590 + BASE))
ADDR=$((10 + BASE)) PORT=$((17000 + BASE)) # node i listens on 127.0.0.(ADDR+i):(PORT+i)
ROOT=${SPOTRESCUE_CACHE:-$HOME/.cache/spotrescue}/slurm-24.11
REGION=us-east-1 CLUSTER=lab
# Besides compute-1..N (partitions spot and ondemand), two nodes named as
# ParallelCluster names them, <queue>-dy-<compute resource>-<n>: queue "pc"
# with compute resources c5 and m5, for steering a requeue off a reclaimed
# compute resource. m5 weighs more, so Slurm fills c5 first.
PC_NODES=(pc-dy-c5-1 pc-dy-m5-1)

log() { printf 'lab: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

instance_of() { printf 'i-0c0ffee%010x' "$1"; } # node number -> a valid 17-digit instance id

# all_nodes lists every lab node, compute-1..N then the PC_NODES, one per
# line; a node's line number is its number (address, port, instance).
all_nodes() {
	local i
	for ((i = 1; i <= NODES; i++)); do echo "compute-$i"; done
	printf '%s\n' "${PC_NODES[@]}"
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() { # port seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on 127.0.0.1:$1 after $2 s (see $LAB/log)"
}

# start name pidfile cmd...: run cmd in the background unless pidfile is alive.
start() {
	local name=$1 pidfile=$2
	shift 2
	if alive "$pidfile"; then
		log "$name already running (pid $(cat "$pidfile"))"
		return 0
	fi
	log "starting $name"
	nohup "$@" >"$LAB/log/$name.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
}

render() { # template output: fill in the @TOKENS@
	sed -e "s#@LAB@#$LAB#g" -e "s#@CTLD_PORT@#$CTLD_PORT#g" \
		-e "s#@SPOTRESCUE_BIN@#$BIN/spotrescue#g" -e "s#@SPOTRESCUE_CONFIG@#$LAB/etc/spotrescue.yaml#g" \
		-e "s#@PROLOG_LOG@#$LAB/log/prolog.log#g" "$1" >"$2"
}

layout() {
	mkdir -p "$LAB"/{etc,run,log,state,munge,shared/spotrescue,ssm-documents}
	chmod 700 "$LAB/munge"
	local node
	for node in $(all_nodes); do
		mkdir -p "$LAB/nodes/$node/scratch" "$LAB/spool/$node"
	done
	render "$repo/hack/lab/slurm.conf.in" "$LAB/etc/slurm.conf"
	sed -i "s#compute-\[1-4\]#compute-[1-$NODES]#g; s#127.0.0.\[11-14\]#127.0.0.[$((ADDR + 1))-$((ADDR + NODES))]#; s#Port=\[17001-17004\]#Port=[$((PORT + 1))-$((PORT + NODES))]#" "$LAB/etc/slurm.conf"
	if [[ $SLURM == 24.11 ]]; then
		# 24.11 has no switch/none plugin (no SwitchType means the same),
		# and its slurmd needs cgroups off: this machine mounts no cgroup fs.
		sed -i '/^SwitchType=/d' "$LAB/etc/slurm.conf"
		echo "CgroupPlugin=disabled" >"$LAB/etc/cgroup.conf"
	fi
	local i=$NODES weight=1
	for node in "${PC_NODES[@]}"; do
		i=$((i + 1))
		echo "NodeName=$node NodeHostname=$node NodeAddr=127.0.0.$((ADDR + i)) Port=$((PORT + i)) CPUs=4 RealMemory=1000 Weight=$weight State=UNKNOWN" >>"$LAB/etc/slurm.conf"
		weight=$((weight + 1))
	done
	echo "PartitionName=pc Nodes=$(IFS=,; echo "${PC_NODES[*]}") MaxTime=INFINITE State=UP" >>"$LAB/etc/slurm.conf"
	render "$repo/deploy/slurm/prolog.sh" "$LAB/etc/spotrescue-prolog.sh"
	# slurmd gives the Prolog a bare environment; on EC2 the instance profile
	# needs none, in the lab the agent needs the emulators' endpoints.
	printf '#!/bin/sh\n. %s/lab.env\nexec %s/etc/spotrescue-prolog.sh\n' "$LAB" "$LAB" >"$LAB/etc/prolog.sh"
	render "$repo/deploy/slurm/taskprolog.sh" "$LAB/etc/taskprolog.sh"
	render "$repo/deploy/ssm/spotrescue-rescue.yaml" "$LAB/ssm-documents/SpotRescue-Rescue.yaml"
	chmod 755 "$LAB/etc/prolog.sh" "$LAB/etc/spotrescue-prolog.sh" "$LAB/etc/taskprolog.sh"
	# TaskProlog runs as the job's user: the lab dir must be traversable.
	chmod 755 "$LAB" "$LAB/etc"
}

# lab_users makes the unprivileged users that the node-side security tests
# play (a job's owner and another user of the cluster): they must be real
# users, as the kernel's checks are what those tests exercise.
lab_users() {
	local u
	for u in spotrescue-alice spotrescue-mallory; do
		id "$u" >/dev/null 2>&1 && continue
		[[ $(id -u) == 0 ]] || die "user $u is missing; run as root to make it"
		log "adding user $u"
		useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$u"
	done
}

# slurm_wrappers makes $LAB/slurm-bin for SLURM=24.11: each Slurm and munge
# command as a script that runs the trixie root's binary with the root's
# /usr (and its loader cache) mounted over ours, in a mount namespace of
# its own that ends with it. Every other path is this machine's, so the
# lab's, the tests' and the jobs' paths are the same inside and out, and
# nothing is left mounted. slurmd's jobs, Prolog and TaskProlog inherit
# its namespace. The directory goes first on PATH (lab.env).
slurm_wrappers() {
	[[ $SLURM == 24.11 ]] || return 0
	"$repo/hack/deps.sh" slurm-24.11
	local dir=$LAB/slurm-bin name path
	mkdir -p "$dir"
	for name in squeue sinfo scontrol sbatch scancel srun sprio slurmctld slurmd munged; do
		path=/usr/bin/$name
		[[ $name == slurmctld || $name == slurmd || $name == munged ]] && path=/usr/sbin/$name
		cat >"$dir/$name" <<SCRIPT
#!/bin/sh
# $name of Slurm 24.11 from $ROOT (written by hack/lab/up.sh)
exec unshare --mount --propagation private /bin/sh -c 'mount --bind "\$0/usr" /usr && mount --bind "\$0/etc/ld.so.cache" /etc/ld.so.cache && exec "\$@"' "$ROOT" $path "\$@"
SCRIPT
		chmod 755 "$dir/$name"
	done
	export PATH=$dir:$PATH
}

start_munge() {
	[[ -f $LAB/munge/munge.key ]] || { dd if=/dev/urandom of="$LAB/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$LAB/munge/munge.key"; }
	alive "$LAB/run/munged.pid" && return 0
	log "starting munged"
	munged --force --socket="$LAB/munge/munge.sock" --key-file="$LAB/munge/munge.key" \
		--pid-file="$LAB/run/munged.pid" --log-file="$LAB/log/munged.log" --seed-file="$LAB/munge/seed"
}

start_slurm() {
	export SLURM_CONF=$LAB/etc/slurm.conf
	if ! alive "$LAB/run/slurmctld.pid"; then
		log "starting slurmctld"
		slurmctld -c -i # -c: fresh state each lab
	fi
	local i node total
	total=$(all_nodes | wc -l)
	for node in $(all_nodes); do
		alive "$LAB/run/slurmd-$node.pid" && continue
		log "starting slurmd $node"
		slurmd -N "$node"
	done
	for ((i = 0; i < 150; i++)); do
		if [[ $(sinfo -h -N -o '%N %t' -t idle,mix,alloc 2>/dev/null | sort -u | wc -l) -ge $total ]]; then
			return 0
		fi
		sleep 0.2
	done
	sinfo >&2 || true
	die "Slurm nodes did not come up (see $LAB/log/slurmctld.log)"
}

aws_env() {
	cat <<ENV
export AWS_ACCESS_KEY_ID=lab
export AWS_SECRET_ACCESS_KEY=lab
export AWS_REGION=$REGION
export AWS_DEFAULT_REGION=$REGION
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_SSM=http://127.0.0.1:$SSM_PORT
export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$IMDS_PORT
ENV
}

start_aws() {
	start moto "$LAB/run/moto.pid" moto_server -H 127.0.0.1 -p "$MOTO_PORT"
	wait_port "$MOTO_PORT" 30
	local aemm
	aemm=$(command -v ec2-metadata-mock || echo "$(go env GOPATH)/bin/ec2-metadata-mock")
	start aemm "$LAB/run/aemm.pid" "$aemm" -n 127.0.0.1 -p "$IMDS_PORT" -I spot
	wait_port "$IMDS_PORT" 30

	local pairs="" i=0 node
	for node in $(all_nodes); do
		i=$((i + 1))
		pairs+="${pairs:+,}$node=$(instance_of "$i")"
	done
	local outputs
	outputs=$(eval "$(aws_env)" && "$BIN/labinit" -cluster "$CLUSTER" -nodes "$pairs")
	eval "$outputs"
	write_config
	write_env
	write_instances
	start faultproxy "$LAB/run/faultproxy.pid" "$BIN/faultproxy" -listen "127.0.0.1:$FAULT_PORT" \
		-upstream "http://127.0.0.1:$MOTO_PORT" -ssm-upstream "http://127.0.0.1:$SSM_PORT"
	wait_port "$FAULT_PORT" 30
	start ssmlocal "$LAB/run/ssmlocal.pid" env -i PATH="$PATH" HOME="$HOME" bash -c \
		"source '$LAB/lab.env' && exec '$BIN/ssmlocal' -listen 127.0.0.1:$SSM_PORT -instances '$LAB/etc/instances.json' -documents '$LAB/ssm-documents' -region $REGION -events-queue-url \"\$LAB_QUEUE_URL\""
	wait_port "$SSM_PORT" 30
}

write_config() {
	cat >"$LAB/etc/spotrescue.yaml" <<YAML
# spotrescue configuration for the lab (written by hack/lab/up.sh)
cluster: $CLUSTER
region: $REGION
queue_url: $LAB_QUEUE_URL
state_table: spotrescue-lab
bucket: spotrescue-lab
prefix: spotrescue
spool_dir: $LAB/shared/spotrescue
scratch:
  root: $LAB/nodes/{node}/scratch
  path_template: $LAB/nodes/{node}/scratch/{job_id}
slurm:
  bin_dir: $(dirname "$(command -v scontrol)")
ssm:
  document: SpotRescue-Rescue
metrics:
  listen: 127.0.0.1:$((9464 + BASE))
YAML
	chmod 644 "$LAB/etc/spotrescue.yaml"
}

write_env() {
	{
		echo "# source me: exports for using the spotrescue lab (written by hack/lab/up.sh)"
		echo "export LAB_DIR=$LAB"
		echo "export SLURM_CONF=$LAB/etc/slurm.conf"
		echo "export SPOTRESCUE_CONFIG=$LAB/etc/spotrescue.yaml"
		echo "export LAB_QUEUE_URL=$LAB_QUEUE_URL"
		echo "export LAB_DLQ_URL=$LAB_DLQ_URL"
		echo "export LAB_BIN=$BIN"
		echo "export LAB_NODES=$NODES"
		echo "export LAB_SLURM=$SLURM"
		[[ $SLURM == 22.05 ]] || echo "export PATH=$PATH"
		echo "export LAB_FAULTPROXY_URL=http://127.0.0.1:$FAULT_PORT"
		aws_env
	} >"$LAB/lab.env.tmp"
	mv "$LAB/lab.env.tmp" "$LAB/lab.env"
}

# write_instances maps each fake instance to its lab node for ssmlocal: the
# agent runs with that node's name and the lab's endpoints, as SSM would run
# it on the node itself. Its AWS traffic goes through faultproxy, the lab's
# stand-in for the network between a node and AWS (no faults unless a test
# asks for them).
write_instances() {
	local i=0 node sep="" env
	env=$(aws_env | sed -e "s#^export AWS_ENDPOINT_URL=.*#export AWS_ENDPOINT_URL=http://127.0.0.1:$FAULT_PORT#" |
		sed -E 's/^export ([A-Z0-9_]+)=(.*)$/"\1":"\2",/' | tr -d '\n')
	{
		printf '{"instances":['
		for node in $(all_nodes); do
			i=$((i + 1))
			printf '%s{"id":"%s","node":"%s","workdir":"%s","env":{%s"SLURM_CONF":"%s","SLURMD_NODENAME":"%s"}}' \
				"$sep" "$(instance_of "$i")" "$node" "$LAB/nodes/$node" "$env" "$LAB/etc/slurm.conf" "$node"
			sep=,
		done
		printf ']}\n'
	} >"$LAB/etc/instances.json"
}

[[ -x $BIN/spotrescue && -x $BIN/ssmlocal && -x $BIN/labinit && -x $BIN/faultproxy && -x $BIN/hostile ]] || die "build first: make build (looked in $BIN)"
"$repo/hack/deps.sh" lab
lab_users
layout
slurm_wrappers
start_munge
start_slurm
start_aws
log "up: source $LAB/lab.env (or eval \"\$(make -s lab-env)\")"
