package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

func TestWriteMetricsFormat(t *testing.T) {
	var b strings.Builder
	writeMetrics(&b, queueMetrics{
		Tasks:             map[string]int{"pending": 3, "active": 2, "retry": 1, "completed": 7},
		Latency:           1500 * time.Millisecond,
		Workers:           2,
		WorkersWithEngine: 1,
	})
	out := b.String()
	for _, want := range []string{
		"# TYPE runbox_queue_depth gauge\n",
		"\nrunbox_queue_depth 6\n",
		"\nrunbox_queue_tasks{state=\"pending\"} 3\n",
		"\nrunbox_queue_tasks{state=\"completed\"} 7\n",
		"\nrunbox_queue_tasks{state=\"archived\"} 0\n",
		"\nrunbox_queue_latency_seconds 1.5\n",
		"\nrunbox_workers 2\n",
		"\nrunbox_workers_with_engine 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics output lacks %q:\n%s", want, out)
		}
	}
}

func TestMetricsEndpointCountsQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Redis container")
	}
	rdb := testenv.StartRedis(t).Client(t)
	languages, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	srv := newServer(store.New(rdb, time.Hour), client,
		newAdmission(asynq.NewInspectorFromRedisClient(rdb), 10, time.Millisecond),
		languages, submission.Policy{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	handler := srv.routes()

	scrape := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /metrics = %d %s, want 200", rec.Code, rec.Body)
		}
		if got := rec.Header().Get("Content-Type"); got != metricsContentType {
			t.Errorf("Content-Type = %q, want %q", got, metricsContentType)
		}
		return rec.Body.String()
	}

	// Asynq has not registered the queue before its first task.
	if out := scrape(); !strings.Contains(out, "\nrunbox_queue_depth 0\n") {
		t.Errorf("metrics of an unregistered queue lack runbox_queue_depth 0:\n%s", out)
	}
	for range 3 {
		if err := queue.Enqueue(context.Background(), client, uuid.NewString(), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	out := scrape()
	if !strings.Contains(out, "\nrunbox_queue_depth 3\n") {
		t.Errorf("metrics after 3 enqueued tasks lack runbox_queue_depth 3:\n%s", out)
	}
	if !strings.Contains(out, "\nrunbox_queue_tasks{state=\"pending\"} 3\n") {
		t.Errorf("metrics after 3 enqueued tasks lack 3 pending:\n%s", out)
	}
	if !strings.Contains(out, "\nrunbox_workers 0\n") {
		t.Errorf("metrics without workers lack runbox_workers 0:\n%s", out)
	}
}
