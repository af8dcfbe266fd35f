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
// cap. The backlog is read from Asynq at most once per refresh interval.
// Until the next read, the submissions this process enqueued since, and
// those it admitted but has not enqueued yet, are added to it, so a burst
// within one interval cannot overshoot the cap of a single API process.
//
// NOTE: several API processes share the queue but not their counts, so
// together they can overshoot the cap by up to what each admits within one
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
	reserved  int
	err       error
	refreshed time.Time
}

func newAdmission(inspector *asynq.Inspector, capacity int, refresh time.Duration) *admission {
	return &admission{inspector: inspector, capacity: capacity, refresh: refresh, now: time.Now}
}

// errQueueFull is returned by reserve when the backlog is at the cap.
var errQueueFull = errors.New("queue full")

// reserve takes a place in the backlog and returns the backlog it counts.
// It returns errQueueFull when the backlog is at the cap, or the error that
// kept the backlog from being read. A place taken must be given back with
// confirm once the submission is enqueued, or with release if it is not.
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

// confirm turns a place taken by reserve into an enqueued submission.
func (a *admission) confirm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved--
	a.enqueued++
}

// release gives back a place taken by reserve.
func (a *admission) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved--
}

// readBacklog returns the tasks of the submission queue that are not
// finished: pending, active, scheduled and waiting for a retry.
func (a *admission) readBacklog() (int, error) {
	info, err := a.inspector.GetQueueInfo(queue.Name)
	if err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) {
			return 0, fmt.Errorf("read size of queue %s: %w", queue.Name, err)
		}
		// Asynq registers the queue with its first task. Before that,
		// GetQueueInfo fails with an error that Asynq v0.26 does not
		// export, so the queue list is checked instead.
		if names, listErr := a.inspector.Queues(); listErr == nil && !slices.Contains(names, queue.Name) {
			return 0, nil
		}
		return 0, fmt.Errorf("read size of queue %s: %w", queue.Name, err)
	}
	return info.Pending + info.Active + info.Scheduled + info.Retry, nil
}
