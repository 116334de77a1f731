// Package slurm drives the Slurm command-line tools (squeue, sinfo, scontrol,
// scancel) for the spotrescue controller: it reads jobs and nodes and holds,
// drains, requeues, releases and signals them, and keeps pending jobs off
// nodes (SetExcludedNodes).
//
// Every command runs from a configured bin directory by exec with an argv;
// nothing is ever passed through a shell. Job ids, node names, partition and
// signal names are checked against strict patterns before they reach an argv,
// and free text (drain reasons, admin comments) always travels as one argv
// element.
//
// Commands run with a timeout and are retried with exponential backoff when
// slurmctld is briefly unreachable ("Socket timed out", "Unable to contact
// slurm controller", ...). Definitive answers ("Invalid job id specified",
// "Job is pending execution", ...) are never retried; they map to the
// sentinel errors of this package.
//
// # Slurm versions
//
// ParallelCluster ships Slurm 22.05, 23.02, 23.11 and 24.x, and their JSON
// differs (data_parser v0.0.38 to v0.0.41+): plain numbers become
// {"set","infinite","number"} objects, job and node states become arrays, and
// 22.05's squeue and sinfo ignore their filters with --json while its scontrol
// has no --json at all. Client.Version picks the reader; the JSON "meta"
// block is checked too, and every field decoder accepts each encoding any of
// these versions used, so a minor release that changed an encoding still
// reads right. When JSON is unavailable or does not parse, the plain-text
// output of squeue -O (fields delimited by ASCII unit separators) and of
// scontrol show (one field per key, free text on lines of its own) is read
// instead.
//
// # Array jobs
//
// The last task of a job array keeps the array's own job id: for array 6
// with tasks 6_1 (job id 9) and 6_2 (job id 6), "scontrol hold 6" holds the
// whole array, not just task 6_2. Commands therefore address an array task
// as "6_2" (see Job.Target), and a bare numeric id that Client knows, or
// finds out, to be such a task is rewritten to that form before it reaches
// scontrol or scancel.
package slurm
