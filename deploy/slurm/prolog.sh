#!/bin/sh
# Slurm Prolog (runs as root on each node before a job starts): restore the
# scratch data of a rescued job. A failed restore must never keep the job from
# running (a failing Prolog drains the node), so this always exits 0; the
# agent logs what went wrong and SPOT_RESCUE_STATUS tells the job.
'@SPOTRESCUE_BIN@' agent restore --config '@SPOTRESCUE_CONFIG@' >>'@PROLOG_LOG@' 2>&1
exit 0
