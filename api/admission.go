package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/runbox/runbox/pkg/queue"
)

// queueFullRetryAfter is the Retry-After of a 429 for a full queue, in
// seconds.
const queueFullRetryAfter = "5"

// admission rejects new submissions while the queue's backlog is at its
// cap. It reads the backlog from Asynq at most once per refresh interval
// and adds the submissions that this process admitted since, so one API
// process alone never pushes the backlog past the cap.
//
// NOTE: several API processes share the queue but not their counts, so
// together they can exceed the cap by up to what each admits within one
// refresh interval.
type admission struct {
	inspector *asynq.Inspector
	capacity  int
	refresh   time.Duration
	now       func() time.Time

	mu sync.Mutex
	// queued is the backlog at the last read.
	queued int
	// enqueued counts the submissions enqueued since the last read.
	enqueued int
	// reserved counts the submissions admitted but not yet enqueued.
	reserved int
	// err is the error of the last read, returned until the next one.
	err       error
	refreshed time.Time
}

func newAdmission(inspector *asynq.Inspector, capacity int, refresh time.Duration) *admission {
	return &admission{inspector: inspector, capacity: capacity, refresh: refresh, now: time.Now}
}

// errQueueFull is returned by reserve when the backlog is at the cap.
var errQueueFull = errors.New("queue full")

// reserve reserves a slot in the backlog and returns the backlog counted
// with it. When the backlog is at the cap, it returns the backlog and
// errQueueFull. A failed read of the backlog returns its error. The caller
// must hand a reserved slot back with confirm once the submission is
// enqueued, or with release if it is not.
func (a *admission) reserve() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()

	if a.now().Sub(a.refreshed) >= a.refresh {
		a.queued, a.err = a.readBacklog()
		a.enqueued = 0
		a.refreshed = a.now()
	}
	if a.err != nil {
		return 0, a.err
	}

	backlog := a.queued + a.enqueued + a.reserved
	if backlog >= a.capacity {
		return backlog, errQueueFull
	}
	a.reserved++
	return backlog + 1, nil
}

// confirm counts a slot taken by reserve as an enqueued submission.
func (a *admission) confirm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved--
	a.enqueued++
}

// release frees a slot taken by reserve.
func (a *admission) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved--
}

// readBacklog returns the number of unfinished tasks in the submission
// queue: pending, active, scheduled and waiting for a retry.
func (a *admission) readBacklog() (int, error) {
	info, err := readQueueInfo(a.inspector)
	if err != nil {
		return 0, err
	}
	return info.Pending + info.Active + info.Scheduled + info.Retry, nil
}

// readQueueInfo returns the state of the submission queue. A queue that
// Asynq has not registered yet is returned as empty.
func readQueueInfo(inspector *asynq.Inspector) (*asynq.QueueInfo, error) {
	info, err := inspector.GetQueueInfo(queue.Name)
	if err == nil {
		return info, nil
	}

	var netErr net.Error
	if errors.As(err, &netErr) {
		return nil, fmt.Errorf("read queue %s: %w", queue.Name, err)
	}
	// Asynq registers the queue with its first task. Before that,
	// GetQueueInfo fails with an error that Asynq v0.26 does not export,
	// so the queue list is checked instead.
	names, listErr := inspector.Queues()
	if listErr != nil || slices.Contains(names, queue.Name) {
		return nil, fmt.Errorf("read queue %s: %w", queue.Name, err)
	}
	return &asynq.QueueInfo{Queue: queue.Name}, nil
}
