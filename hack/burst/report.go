package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

func report(w io.Writer, o options, c *cluster, r, base *result) {
	fmt.Fprintf(w, "\nburst: %d interruptions, %d jobs (%d per node), mode %s, %d CPUs, %s\n\n", len(c.nodes), c.jobs, o.jobsPerNode, o.mode, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "receipt -> dispatch\tdispatched\tp50\tp95\tp99\tmax\tlast dispatch (from burst)\tAWS calls/interruption\tCPU s\tpeak RSS MiB\tmoto CPU s\t")
	for _, x := range []*result{r, base} {
		if x == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%.1f\t\n", x.name, x.dispatched,
			ms(percentile(x.latencies, .5)), ms(percentile(x.latencies, .95)), ms(percentile(x.latencies, .99)), ms(percentile(x.latencies, 1)),
			ms(x.last), sum(x.awsCalls)/float64(x.interrupted), x.cpuSeconds, float64(x.peakRSS)/(1<<20), sum(x.emulatorCPU))
	}
	tw.Flush()
	if r.expired > 0 {
		fmt.Fprintf(w, "\n%d warnings were reached only after their two minutes and were ignored as expired\n", r.expired)
	}
	if r.last > 0 && len(r.emulatorCPU) > 0 {
		fmt.Fprintf(w, "\nemulators' CPU to the last dispatch (spotrescue): %s", busy(r.emulatorCPU, r.last))
		if base != nil && base.last > 0 {
			fmt.Fprintf(w, "\n  (baseline): %s", busy(base.emulatorCPU, base.last))
		}
		fmt.Fprintln(w, "\nan emulator near 100% is one Python process at its limit: it, not the controller, sets the pace")
	}
	if base != nil && r.last > 0 {
		fmt.Fprintf(w, "\nlast dispatch: spotrescue %.1fx faster than the baseline (same run)\n", base.last.Seconds()/r.last.Seconds())
	}
	fmt.Fprintf(w, "\nAWS calls by operation (spotrescue, counted at the SDK middleware, warning to last dispatch):\n")
	fmt.Fprintf(w, "  %-40s %6s  %14s  %s\n", "operation", "calls", "/interruption", "mean latency")
	for _, k := range sortedKeys(r.awsCalls) {
		n := r.awsCalls[k]
		fmt.Fprintf(w, "  %-40s %6.0f  %14.3f  %.1fms\n", label(k), n, n/float64(r.interrupted), 1000*r.awsSeconds[label(k)]/n)
	}
	if base != nil {
		fmt.Fprintf(w, "AWS calls by operation, per interruption (baseline):\n")
		for _, k := range sortedKeys(base.awsCalls) {
			fmt.Fprintf(w, "  %-40s %6.0f  %14.3f\n", k, base.awsCalls[k], base.awsCalls[k]/float64(base.interrupted))
		}
	}
	fmt.Fprintf(w, "Slurm commands for the whole burst (spotrescue): %.0f\n", sum(r.slurmCalls))
	for _, k := range sortedKeys(r.slurmCalls) {
		fmt.Fprintf(w, "  %-50s %.0f\n", label(k), r.slurmCalls[k])
	}
	fmt.Fprintf(w, "controller idle: RSS %.1f MiB, CPU %.3f s over 10 s\n", float64(r.idleRSS)/(1<<20), r.idleCPU)
}

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// label turns `name{a="x",b="y"}` into `x y`.
func label(series string) string {
	_, labels, ok := strings.Cut(series, "{")
	if !ok {
		return series
	}
	var parts []string
	for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
		_, v, _ := strings.Cut(kv, "=")
		parts = append(parts, strings.Trim(v, `"`))
	}
	return strings.Join(parts, " ")
}
