// Package deploy holds what an operator installs (the systemd unit, the SSM
// document, the Slurm hooks, the CloudFormation stack and the
// ParallelCluster recipe). It has no code: its tests check those files the
// way systemd, SSM and CloudFormation would.
package deploy
