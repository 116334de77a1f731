#!/bin/sh
# Slurm TaskProlog (runs as the job's user before each task): the
# `export NAME=value` lines it prints become the task's environment.
# Never fail the task because of spotrescue.
'@SPOTRESCUE_BIN@' taskprolog --config '@SPOTRESCUE_CONFIG@' 2>/dev/null
exit 0
