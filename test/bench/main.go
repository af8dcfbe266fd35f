// Command bench measures Runbox against plain `docker run --rm` of the same
// image in the same run, and writes docs/benchmarks.md.
//
// It builds the two programs, starts its own Redis (Debian's redis-server)
// on a free loopback port, one worker and the API, and then measures:
//
//   - the baseline: `docker run --rm runbox/python python3 -c ...`, one at a
//     time, and a loop of them at the worker's parallelism;
//   - Runbox end to end, one submission at a time, from POST to the result
//     being visible to a long-polling client, split by stage. The
//     baseline and this series pause before each run (-pause), because a
//     single user's latency is measured with a refilled pool. A second,
//     shorter series without pauses shows the cost of an empty pool;
//   - sustained throughput at increasing arrival rates;
//   - a burst of 1000 submissions.
//
// Every number is printed as a ratio to the baseline measured in this run.
// `make bench` runs it after `make setup images`.
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
	sequential := flag.Int("n", 100, "submissions measured one at a time")
	baselineRuns := flag.Int("baseline", 20, "docker run --rm repetitions of the baseline")
	parallel := flag.Int("parallel", 2, "worker concurrency and baseline loop parallelism")
	burst := flag.Int("burst", 1000, "submissions in the burst")
	pause := flag.Duration("pause", 500*time.Millisecond,
		"pause before each one-at-a-time run, baseline and Runbox alike, long enough for the pool to replace the container the last run used")
	rateSeconds := flag.Duration("rate-duration", 10*time.Second, "how long each arrival rate lasts")
	out := flag.String("out", "docs/benchmarks.md", "report file; empty prints only")
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
		log.Printf("runbox sustained: %.0f submissions/s for %s", rate, *rateSeconds)
		report.Rates = append(report.Rates, env.measureRate(rate, *rateSeconds))
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

// findRoot returns the repository root: the nearest parent with go.mod.
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
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
