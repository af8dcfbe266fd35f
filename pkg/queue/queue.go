// Package queue defines the Asynq task that carries a submission from the
// API to a worker.
//
// The task holds only the submission id; the request itself lives in the
// store. Its Asynq task id is the submission id, so enqueueing the same
// submission twice while the first task exists is rejected by Asynq.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// TaskType names the Asynq task that runs one submission.
const TaskType = "submission:run"

// Name is the Asynq queue submissions go through.
const Name = "submissions"

// MaxRetry is how often a task is retried after a platform fault before the
// submission ends as an internal error.
const MaxRetry = 3

// TaskTimeout bounds one attempt of a task: longer than the longest
// compile step plus the longest run plus container start and removal.
const TaskTimeout = 3 * time.Minute

// Retention is how long Asynq keeps a completed task. While it is kept, the
// same submission id cannot be enqueued again, and the reconciler can tell
// a finished task from a lost one.
const Retention = time.Hour

// LeaseRecovery is the max time that Asynq v0.26 takes to retry the task
// of a worker that died. The lease lasts 30 s after the last heartbeat. The
// recoverer runs once a minute and skips leases that expired less than
// 30 s ago. Asynq fixes these values, so no setting changes them.
const LeaseRecovery = 2 * time.Minute

// Payload is the body of a submission task.
type Payload struct {
	ID string `json:"id"`
}

// NewTask returns the task for a submission. timeout bounds one attempt and
// must exceed the longest possible run, compile step included.
func NewTask(id string, timeout time.Duration) (*asynq.Task, error) {
	body, err := json.Marshal(Payload{ID: id})
	if err != nil {
		return nil, fmt.Errorf("encode task for submission %s: %w", id, err)
	}
	return asynq.NewTask(TaskType, body,
		asynq.TaskID(id),
		asynq.Queue(Name),
		asynq.MaxRetry(MaxRetry),
		asynq.Timeout(timeout),
		asynq.Retention(Retention),
	), nil
}

// ParsePayload decodes a task body.
func ParsePayload(task *asynq.Task) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(task.Payload(), &p); err != nil {
		return p, fmt.Errorf("decode task payload: %w", err)
	}
	if p.ID == "" {
		return p, errors.New("decode task payload: missing id")
	}
	return p, nil
}

// Enqueue puts the submission's task on the queue. A task that exists
// already counts as success, since the submission is then queued.
func Enqueue(ctx context.Context, client *asynq.Client, id string, timeout time.Duration) error {
	task, err := NewTask(id, timeout)
	if err != nil {
		return err
	}
	_, err = client.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue submission %s: %w", id, err)
	}
	return nil
}
