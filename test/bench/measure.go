package main

import (
	"log"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runbox/runbox/pkg/submission"
)

// pythonImage is the image both the baseline and Runbox run.
const pythonImage = "runbox/python:latest"

// latencies is a series of measured durations.
type latencies []time.Duration

// percentile returns the duration at the rounded index p/100*(n-1) of the
// n sorted durations, or 0 when there are none. p is from 0 to 100.
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	sorted := append(latencies(nil), l...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	index := int(p/100*float64(len(sorted)-1) + 0.5)
	return sorted[index]
}

// dockerRunOnce times one `docker run --rm` of a Python hello world.
func dockerRunOnce() (time.Duration, error) {
	start := time.Now()
	cmd := exec.Command("docker", "run", "--rm", "--network", "none", pythonImage,
		"python3", "-c", "print('hello')")
	err := cmd.Run()
	return time.Since(start), err
}

// measureBaseline times n runs of `docker run --rm` of the Python image, one
// at a time with a pause before each. A first, untimed run checks that the
// image exists.
func measureBaseline(n int, pause time.Duration) latencies {
	if _, err := dockerRunOnce(); err != nil {
		log.Fatalf("baseline docker run of %s: %v", pythonImage, err)
	}
	var out latencies
	for i := 0; i < n; i++ {
		time.Sleep(pause)
		d, err := dockerRunOnce()
		if err != nil {
			log.Fatalf("baseline docker run: %v", err)
		}
		out = append(out, d)
	}
	return out
}

// measureBaselineThroughput runs `docker run --rm` total times in parallel
// loops and returns the runs per second.
func measureBaselineThroughput(parallel, total int) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				if _, err := dockerRunOnce(); err != nil {
					log.Fatalf("baseline docker run: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// stageLatencies contains the durations from the POST to each stage.
type stageLatencies struct {
	Accepted, PickedUp, ContainerReady, Exited, Stored, Visible latencies
}

// measureSequential submits n hello worlds one at a time, with a pause before
// each. It returns the time from POST until the client sees the result, and
// the time from POST to each stage.
func (e *environment) measureSequential(n int, pause time.Duration) (latencies, stageLatencies) {
	var total latencies
	var stages stageLatencies
	for i := 0; i < n; i++ {
		time.Sleep(pause)
		start := time.Now()
		id, status, err := e.submit(helloRequest)
		if err != nil || id == "" {
			log.Fatalf("submit: status %d, %v", status, err)
		}
		accepted := time.Since(start)
		view, err := e.await(id)
		if err != nil {
			log.Fatalf("await %s: %v", id, err)
		}
		visible := time.Since(start)
		if view.Verdict != submission.VerdictOK {
			log.Fatalf("submission %s ended %s: %s", id, view.Verdict, view.Message)
		}
		total = append(total, visible)
		// The API and the worker run on this machine and share its clock,
		// so their stage timestamps are measured from the client's POST.
		stages.Accepted = append(stages.Accepted, accepted)
		if view.StartedAt != nil && view.FinishedAt != nil && view.Stages != nil {
			offset := func(t time.Time) time.Duration { return t.Sub(start) }
			stages.PickedUp = append(stages.PickedUp, offset(*view.StartedAt))
			stages.ContainerReady = append(stages.ContainerReady, offset(view.Stages.ContainerReadyAt))
			stages.Exited = append(stages.Exited, offset(view.Stages.ExitedAt))
			stages.Stored = append(stages.Stored, offset(*view.FinishedAt))
		}
		stages.Visible = append(stages.Visible, visible)
	}
	return total, stages
}

// rateResult is the outcome of one arrival rate.
type rateResult struct {
	Rate      float64
	Submitted int
	// Rejected counts the submissions that the API did not accept or that
	// could not be sent.
	Rejected int
	// Completed counts the accepted submissions that finished. An accepted
	// submission whose wait failed is in neither count.
	Completed  int
	Throughput float64
	P50, P99   time.Duration
}

// measureRate submits at a fixed rate for the duration, then waits for all
// accepted submissions to finish. Throughput divides the completed count by
// the time from the start of the series until every wait has ended.
func (e *environment) measureRate(rate float64, duration time.Duration) rateResult {
	interval := time.Duration(float64(time.Second) / rate)
	res := rateResult{Rate: rate}
	var mu sync.Mutex
	var lat latencies
	var wg sync.WaitGroup
	start := time.Now()
	ticker := time.NewTicker(interval)
	for time.Since(start) < duration {
		<-ticker.C
		res.Submitted++
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			id, _, err := e.submit(helloRequest)
			if err != nil || id == "" {
				mu.Lock()
				res.Rejected++
				mu.Unlock()
				return
			}
			if _, err := e.await(id); err != nil {
				return
			}
			mu.Lock()
			lat = append(lat, time.Since(t0))
			mu.Unlock()
		}()
	}
	ticker.Stop()
	wg.Wait()
	res.Completed = len(lat)
	res.Throughput = float64(res.Completed) / time.Since(start).Seconds()
	res.P50, res.P99 = lat.percentile(50), lat.percentile(99)
	return res
}

// burstResult is the outcome of the burst.
type burstResult struct {
	Sent, Accepted, Rejected, Failed, Completed int
	SubmitTime, DrainTime                       time.Duration
}

// measureBurst posts n submissions as fast as 64 clients can, then waits
// for every accepted one, with at most 128 waits at a time.
func (e *environment) measureBurst(n int) burstResult {
	res := burstResult{Sent: n}
	ids := make(chan string, n)
	var next atomic.Int64
	var accepted, rejected, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				id, status, err := e.submit(helloRequest)
				switch {
				case err != nil:
					failed.Add(1)
				case id != "":
					accepted.Add(1)
					ids <- id
				case status == 429 || status == 503:
					rejected.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	res.SubmitTime = time.Since(start)
	var completed atomic.Int64
	var waiters sync.WaitGroup
	slots := make(chan struct{}, 128)
	for id := range ids {
		waiters.Add(1)
		slots <- struct{}{}
		go func() {
			defer waiters.Done()
			defer func() { <-slots }()
			if view, err := e.await(id); err == nil && view.Status == submission.StatusDone {
				completed.Add(1)
			}
		}()
	}
	waiters.Wait()
	res.DrainTime = time.Since(start)
	res.Accepted, res.Rejected = int(accepted.Load()), int(rejected.Load())
	res.Failed, res.Completed = int(failed.Load()), int(completed.Load())
	return res
}
