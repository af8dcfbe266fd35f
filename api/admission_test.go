package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/queue"
)

func TestAdmissionCountsUpToCap(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Redis container")
	}
	rdb := testenv.StartRedis(t).Client(t)
	inspector := asynq.NewInspectorFromRedisClient(rdb)

	// Before the first task, the queue does not exist and counts as empty.
	// The backlog is read once and then counted locally.
	a := newAdmission(inspector, 3, time.Hour)
	for i := 1; i <= 3; i++ {
		backlog, err := a.reserve()
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
		if backlog != i {
			t.Fatalf("reserve %d: backlog = %d, want %d", i, backlog, i)
		}
	}
	backlog, err := a.reserve()
	if !errors.Is(err, errQueueFull) {
		t.Fatalf("reserve at the cap: error = %v, want queue full", err)
	}
	if backlog != 3 {
		t.Fatalf("reserve at the cap: backlog = %d, want 3", backlog)
	}
	a.release()
	if _, err := a.reserve(); err != nil {
		t.Fatalf("reserve after a release: %v", err)
	}
	a.confirm()
	if _, err := a.reserve(); !errors.Is(err, errQueueFull) {
		t.Fatalf("reserve after a confirm: error = %v, want queue full", err)
	}

	// A new read counts the tasks in the queue.
	client := asynq.NewClientFromRedisClient(rdb)
	for range 2 {
		if err := queue.Enqueue(context.Background(), client, uuid.NewString(), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	fresh := newAdmission(inspector, 3, time.Hour)
	backlog, err = fresh.reserve()
	if err != nil {
		t.Fatalf("reserve beside 2 queued tasks: %v", err)
	}
	if backlog != 3 {
		t.Fatalf("reserve beside 2 queued tasks: backlog = %d, want 3", backlog)
	}
	if _, err := fresh.reserve(); !errors.Is(err, errQueueFull) {
		t.Fatalf("reserve beside 2 queued tasks and 1 reserved: error = %v, want queue full", err)
	}
}

func TestAdmissionFailsWithoutRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	a := newAdmission(asynq.NewInspectorFromRedisClient(rdb), 10, time.Hour)

	_, err := a.reserve()
	if err == nil {
		t.Fatal("reserve with Redis unreachable succeeded, want a connection error")
	}
	if errors.Is(err, errQueueFull) {
		t.Fatalf("reserve with Redis unreachable = %v, want a connection error", err)
	}
	if _, again := a.reserve(); again == nil {
		t.Error("second reserve within the refresh interval succeeded, want the cached error")
	}
}
