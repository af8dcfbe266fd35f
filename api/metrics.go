package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// metricsContentType is the Prometheus text exposition format, version
// 0.0.4, which Prometheus servers scrape.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// queueMetrics is the state of the submission queue that GET /metrics
// reports.
type queueMetrics struct {
	// Tasks counts the queue's tasks by Asynq state: pending, active,
	// scheduled, retry, archived and completed.
	Tasks map[string]int
	// Latency is how long the oldest pending task has waited.
	Latency time.Duration
	// Workers counts the live workers, and WorkersWithEngine those that
	// reached their Docker engine at their last heartbeat.
	Workers           int
	WorkersWithEngine int
}

// depth is the number of unfinished tasks: pending, active, scheduled and
// waiting for a retry. The admission cap (RUNBOX_QUEUE_CAP) counts the same.
func (m queueMetrics) depth() int {
	return m.Tasks["pending"] + m.Tasks["active"] + m.Tasks["scheduled"] + m.Tasks["retry"]
}

// metrics serves GET /metrics for Prometheus. It reads the queue and the
// worker records on every request and returns 503 when Redis cannot be
// read, so a scrape fails instead of reporting an empty queue.
func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	m, err := s.readQueueMetrics(ctx)
	if err != nil {
		s.log.Error("read metrics failed", "error", err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "metrics unavailable: %v\n", err)
		return
	}
	w.Header().Set("Content-Type", metricsContentType)
	w.Header().Set("Cache-Control", "no-store")
	writeMetrics(w, m)
}

// readQueueMetrics reads the submission queue from Asynq and counts the
// live workers.
func (s *server) readQueueMetrics(ctx context.Context) (queueMetrics, error) {
	m := queueMetrics{Tasks: map[string]int{}}
	info, err := readQueueInfo(s.admission.inspector)
	if err != nil {
		return m, err
	}
	m.Tasks["pending"] = info.Pending
	m.Tasks["active"] = info.Active
	m.Tasks["scheduled"] = info.Scheduled
	m.Tasks["retry"] = info.Retry
	m.Tasks["archived"] = info.Archived
	m.Tasks["completed"] = info.Completed
	m.Latency = info.Latency

	workers, err := s.store.Workers(ctx)
	if err != nil {
		return m, err
	}
	m.Workers = len(workers)
	for _, worker := range workers {
		if worker.EngineOK {
			m.WorkersWithEngine++
		}
	}
	return m, nil
}

// writeMetrics writes m in the Prometheus text format.
func writeMetrics(w io.Writer, m queueMetrics) {
	var b strings.Builder
	gauge := func(name, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	gauge("runbox_queue_depth", "Unfinished submission tasks: pending, active, scheduled and waiting for a retry.")
	fmt.Fprintf(&b, "runbox_queue_depth %d\n", m.depth())
	gauge("runbox_queue_tasks", "Submission tasks in the queue by Asynq state.")
	for _, state := range []string{"pending", "active", "scheduled", "retry", "archived", "completed"} {
		fmt.Fprintf(&b, "runbox_queue_tasks{state=%q} %d\n", state, m.Tasks[state])
	}
	gauge("runbox_queue_latency_seconds", "How long the oldest pending submission task has waited.")
	fmt.Fprintf(&b, "runbox_queue_latency_seconds %g\n", m.Latency.Seconds())
	gauge("runbox_workers", "Live workers, by their heartbeat.")
	fmt.Fprintf(&b, "runbox_workers %d\n", m.Workers)
	gauge("runbox_workers_with_engine", "Live workers that reached their Docker engine at their last heartbeat.")
	fmt.Fprintf(&b, "runbox_workers_with_engine %d\n", m.WorkersWithEngine)
	_, _ = io.WriteString(w, b.String())
}
