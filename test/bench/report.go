package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report contains every measurement of one benchmark run and a description
// of the machine it ran on.
type report struct {
	Started            time.Time
	Parallel           int
	Pause              time.Duration
	Machine            []string
	Baseline           latencies
	BaselineThroughput float64
	Sequential         latencies
	// BackToBack is the same series with no pause, which leaves the pool
	// no time to refill.
	BackToBack        latencies
	Stages            stageLatencies
	Rates             []rateResult
	Burst             burstResult
	APIRSS, WorkerRSS int
}

// commandOutput returns the first line of a command's output, or "unknown"
// when the command fails.
func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.Split(string(out), "\n")[0])
}

// describeMachine records the CPU, kernel, Docker, Go and Redis versions and
// the load average.
func (r *report) describeMachine() {
	cpu := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	r.Machine = []string{
		fmt.Sprintf("CPU: %s, %d cores", cpu, runtime.NumCPU()),
		"Kernel: " + commandOutput("uname", "-sr"),
		"Docker engine: " + commandOutput("docker", "version", "-f", "{{.Server.Version}}"),
		"Go: " + runtime.Version(),
		"Redis: " + commandOutput("redis-server", "--version"),
		"Load average at the start (1, 5, 15 min): " + loadAverage(),
	}
}

// loadAverage returns the 1, 5 and 15 minute load averages from
// /proc/loadavg. The report records them because other work on the machine
// skews every figure.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], ", ")
}

// formatMS formats a duration in milliseconds with one decimal.
func formatMS(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000)
}

// formatRatio formats d/base with two decimals, or "n/a" when base is 0.
func formatRatio(d, base time.Duration) string {
	if base == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(d)/float64(base))
}

// writeLatencyRow writes one row of the one-at-a-time table, with the p50
// as a ratio to the baseline p50.
func writeLatencyRow(b *strings.Builder, name string, l latencies, base50 time.Duration) {
	fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s |\n", name, len(l),
		formatMS(l.percentile(50)), formatMS(l.percentile(90)), formatMS(l.percentile(99)),
		formatRatio(l.percentile(50), base50))
}

// markdown renders the report as the Markdown page docs/benchmarks.md.
func (r *report) markdown() string {
	var b strings.Builder
	base50 := r.Baseline.percentile(50)
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Recorded by `make bench` (test/bench) on %s. Every ratio divides a\n", r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Runbox figure by the `docker run --rm` baseline measured in the same run.\n\n")
	for _, line := range r.Machine {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	fmt.Fprintf(&b, "- Worker concurrency and baseline parallelism: %d\n\n", r.Parallel)

	fmt.Fprintf(&b, "## Python hello world, one at a time\n\n")
	fmt.Fprintf(&b, "Baseline: `docker run --rm --network none %s python3 -c \"print('hello')\"`.\n", pythonImage)
	fmt.Fprintf(&b, "Runbox: POST of `print('hello')` until a long-polling client sees the result.\n")
	fmt.Fprintf(&b, "The baseline and the first Runbox series pause %s before each run, so that the pool can refill as it would between a single user's runs.\n\n", r.Pause)
	fmt.Fprintf(&b, "| | runs | p50 ms | p90 ms | p99 ms | p50 / baseline p50 |\n|---|---|---|---|---|---|\n")
	writeLatencyRow(&b, "docker run --rm", r.Baseline, base50)
	writeLatencyRow(&b, "Runbox end to end", r.Sequential, base50)
	writeLatencyRow(&b, "Runbox end to end, back to back without the pause", r.BackToBack, base50)
	fmt.Fprintf(&b, "\nBack to back, a run can find the pool empty and wait for the container that the previous run's refill is still creating.\n\n")

	fmt.Fprintf(&b, "Time from POST until each stage (p50 / p99 ms):\n\n| stage | p50 | p99 |\n|---|---|---|\n")
	for _, stage := range []struct {
		name string
		l    latencies
	}{
		{"accepted (202 received)", r.Stages.Accepted},
		{"picked up by the worker", r.Stages.PickedUp},
		{"container ready", r.Stages.ContainerReady},
		{"program exited", r.Stages.Exited},
		{"result stored", r.Stages.Stored},
		{"result visible to the client", r.Stages.Visible},
	} {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", stage.name, formatMS(stage.l.percentile(50)), formatMS(stage.l.percentile(99)))
	}

	fmt.Fprintf(&b, "\n## Sustained throughput\n\n")
	fmt.Fprintf(&b, "Baseline: %d parallel `docker run --rm` loops: %.2f runs/s.\n\n", r.Parallel, r.BaselineThroughput)
	fmt.Fprintf(&b, "| arrival rate /s | submitted | rejected | completed | completed /s | / baseline | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|\n")
	for _, rate := range r.Rates {
		fmt.Fprintf(&b, "| %.0f | %d | %d | %d | %.2f | %.2f | %s | %s |\n", rate.Rate, rate.Submitted,
			rate.Rejected, rate.Completed, rate.Throughput, rate.Throughput/r.BaselineThroughput,
			formatMS(rate.P50), formatMS(rate.P99))
	}
	fmt.Fprintf(&b, "\nThe rejected column counts the submissions that the API did not accept or that could not be sent.\n")

	burst := r.Burst
	fmt.Fprintf(&b, "\n## Burst\n\n%d submissions posted by 64 clients at once: %d accepted, %d rejected with 429/503, %d failed. ",
		burst.Sent, burst.Accepted, burst.Rejected, burst.Failed)
	fmt.Fprintf(&b, "%d of the accepted finished. Posting took %s, and the last result came %s after the first POST",
		burst.Completed, burst.SubmitTime.Round(time.Millisecond), burst.DrainTime.Round(time.Millisecond))
	if burst.DrainTime > 0 {
		completedPerSecond := float64(burst.Completed) / burst.DrainTime.Seconds()
		fmt.Fprintf(&b, " (%.2f completed/s, %.2f × the baseline loop)", completedPerSecond,
			completedPerSecond/r.BaselineThroughput)
	}
	fmt.Fprintf(&b, ".\n")

	fmt.Fprintf(&b, "\n## Memory\n\nResident memory after the sequential run: API %.1f MiB, worker %.1f MiB (the pooled containers are separate processes).\n",
		float64(r.APIRSS)/1024, float64(r.WorkerRSS)/1024)
	fmt.Fprintf(&b, "\n## How to rerun\n\n```sh\nmake setup images\nmake bench\n```\n\n")
	fmt.Fprintf(&b, "Flags: `go run ./test/bench -h` (number of runs, parallelism, burst size, report file).\n")
	return b.String()
}
