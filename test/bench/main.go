// Command bench measures Runbox against plain `docker run --rm` of the same
// image in the same run, and writes docs/benchmarks.md.
//
// It builds the two programs, starts its own Redis (Debian's redis-server)
// on a free loopback port, one worker and the API, and then measures:
//
//   - The baseline: `docker run --rm runbox/python python3 -c ...`, one at a
//     time, and a loop of them at the worker's parallelism.
//   - Runbox end to end, one submission at a time, from POST until a
//     long-polling client sees the result, split by stage. The baseline and
//     this series pause before each run (-pause), so that each run measures
//     a single user's latency with a refilled pool. A second, shorter series
//     without pauses shows the cost of an empty pool.
//   - Sustained throughput at increasing arrival rates.
//   - A burst of submissions (-burst, 1000 by default).
//
// The main Runbox figures are also printed as ratios to the baseline
// measured in the same run. `make bench` runs it after `make setup images`.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

func main() {
	sequential := flag.Int("n", 100, "number of submissions measured one at a time")
	baselineRuns := flag.Int("baseline", 20, "number of timed docker run --rm runs in the baseline")
	parallel := flag.Int("parallel", 2, "worker concurrency and baseline loop parallelism")
	burst := flag.Int("burst", 1000, "number of submissions in the burst")
	pause := flag.Duration("pause", 500*time.Millisecond,
		"pause before each one-at-a-time run, baseline and Runbox alike, meant to be long enough for the pool to replace the container that the last run used")
	rateDuration := flag.Duration("rate-duration", 10*time.Second, "duration of each arrival rate")
	out := flag.String("out", "docs/benchmarks.md", "report file, relative to the repository root (empty: print the report only)")
	flag.Parse()

	root, err := findRoot()
	if err != nil {
		log.Fatal(err)
	}
	env, err := startEnvironment(root, *parallel)
	if err != nil {
		log.Fatal(err)
	}
	defer env.stop()

	report := &report{Parallel: *parallel, Pause: *pause, Started: time.Now().UTC()}
	report.describeMachine()

	log.Printf("baseline: %d x docker run --rm %s", *baselineRuns, pythonImage)
	report.Baseline = measureBaseline(*baselineRuns, *pause)
	report.BaselineThroughput = measureBaselineThroughput(*parallel, 10*(*parallel))

	log.Printf("warming up")
	env.warmUp(10)
	log.Printf("runbox sequential: %d submissions", *sequential)
	report.Sequential, report.Stages = env.measureSequential(*sequential, *pause)
	report.APIRSS, report.WorkerRSS = env.rss()
	log.Printf("runbox back to back: %d submissions without pauses", *sequential/2)
	report.BackToBack, _ = env.measureSequential(*sequential/2, 0)

	for _, rate := range []float64{2, 4, 8, 16} {
		log.Printf("runbox sustained: %.0f submissions/s for %s", rate, *rateDuration)
		report.Rates = append(report.Rates, env.measureRate(rate, *rateDuration))
	}
	log.Printf("runbox burst: %d submissions", *burst)
	report.Burst = env.measureBurst(*burst)

	text := report.markdown()
	fmt.Println(text)
	if *out != "" {
		if err := os.WriteFile(filepath.Join(root, *out), []byte(text), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", *out)
	}
}

// findRoot returns the repository root, the nearest directory at or above
// the working directory that contains go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod found in or above the working directory: run the benchmark inside the repository")
		}
		dir = parent
	}
}
