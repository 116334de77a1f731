#!/bin/sh
# Slurm Prolog (runs as root on each node before a job starts): restore the
# scratch data of a rescued job. A failed restore must never keep the job from
# running (a failing Prolog drains the node), so this always exits 0; the
# agent logs what went wrong and SPOT_RESCUE_STATUS tells the job.
log='@PROLOG_LOG@'
# Compute nodes get no install step of their own (this file and the binary are
# on shared filesystems): make the log directory here, or the redirection
# below would fail and the restore would never run.
mkdir -p "${log%/*}" 2>/dev/null
'@SPOTRESCUE_BIN@' agent restore --config '@SPOTRESCUE_CONFIG@' >>"$log" 2>&1
exit 0
