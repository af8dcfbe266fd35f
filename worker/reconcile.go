package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

// reconcileSettings configure the reconciler.
type reconcileSettings struct {
	// interval is the time between two passes across all workers.
	interval time.Duration
	// minAge spares submissions younger than this, whose task the API may
	// not have enqueued yet.
	minAge time.Duration
	// maxAge is the age at which an unfinished submission is failed,
	// whatever its task's state.
	maxAge time.Duration
}

// reconcileLock is the lock that lets one worker per interval reconcile.
const reconcileLock = "reconcile"

// reconcilePage is how many submission ids one read of the pending set
// returns.
const reconcilePage = 200

// reconciler repairs unfinished submissions that no queue task will
// finish. It enqueues a new task when the old one is gone. It stores an
// internal error when the queue gave up on the task or the submission is
// older than maxAge. Each worker runs one, and a Redis lock lets one of
// them do a pass per interval. Every repair is safe to repeat, because
// Finish stores only the first result and Enqueue accepts an existing task.
type reconciler struct {
	store     *store.Store
	client    *asynq.Client
	inspector *asynq.Inspector
	owner     string
	settings  reconcileSettings
	log       *slog.Logger
}

func newReconciler(s *store.Store, rdb redis.UniversalClient, owner string, settings reconcileSettings, log *slog.Logger) *reconciler {
	return &reconciler{
		store:     s,
		client:    asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
		owner:     owner,
		settings:  settings,
		log:       log,
	}
}

// run does a pass at start and then every interval until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	ticker := time.NewTicker(r.settings.interval)
	defer ticker.Stop()
	for {
		r.passIfLocked(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (r *reconciler) passIfLocked(ctx context.Context) {
	taken, err := r.store.TryLock(ctx, reconcileLock, r.owner, r.settings.interval)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reconcile pass skipped: taking its lock failed", "error", err)
		}
		return
	}
	if !taken {
		return
	}
	checked, repaired, err := r.pass(ctx, time.Now())
	if err != nil && ctx.Err() == nil {
		r.log.Warn("reconcile pass stopped early", "checked", checked, "repaired", repaired, "error", err)
		return
	}
	if repaired > 0 {
		r.log.Info("reconcile pass done", "checked", checked, "repaired", repaired)
	}
}

// pass checks every unfinished submission older than minAge and returns
// how many it checked and repaired.
func (r *reconciler) pass(ctx context.Context, now time.Time) (checked, repaired int, err error) {
	before := now.Add(-r.settings.minAge)
	for offset := int64(0); ; offset += reconcilePage {
		ids, err := r.store.Pending(ctx, before, offset, reconcilePage)
		if err != nil {
			return checked, repaired, err
		}
		for _, id := range ids {
			fixed, err := r.check(ctx, id, now)
			if err != nil {
				return checked, repaired, err
			}
			checked++
			if fixed {
				repaired++
			}
		}
		if len(ids) < reconcilePage {
			return checked, repaired, nil
		}
	}
}

// check repairs one submission if it needs it and reports whether it did.
// An error means Redis could not be read and ends the pass.
func (r *reconciler) check(ctx context.Context, id string, now time.Time) (bool, error) {
	log := r.log.With("submission", id)
	sub, err := r.store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		log.Info("forget expired submission in the pending set")
		return false, r.store.ForgetPending(ctx, id)
	}
	if err != nil {
		return false, err
	}
	if sub.Status == submission.StatusDone {
		return false, r.store.ForgetPending(ctx, id)
	}
	log = log.With("status", sub.Status, "attempts", sub.Attempts,
		"age", now.Sub(sub.CreatedAt).Round(time.Second).String())

	info, err := r.inspector.GetTaskInfo(queue.Name, id)
	lost := errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
	if err != nil && !lost {
		return false, fmt.Errorf("read task of submission %s: %w", id, err)
	}
	overdue := now.Sub(sub.CreatedAt) > r.settings.maxAge

	switch {
	case overdue:
		state := "missing"
		if info != nil {
			state = info.State.String()
		}
		return r.fail(ctx, log, sub, fmt.Sprintf(
			"the submission did not finish within %s of its creation (queue task %s)",
			r.settings.maxAge, state), info)
	case lost:
		return r.enqueueAgain(ctx, log, sub, "its queue task was lost")
	case info.State == asynq.TaskStateArchived:
		reason := fmt.Sprintf("the queue gave up on this submission (attempts started: %d)", sub.Attempts)
		if info.LastErr != "" {
			reason += "; the last attempt failed with: " + info.LastErr
		}
		return r.fail(ctx, log, sub, reason, info)
	case info.State == asynq.TaskStateCompleted:
		return r.fail(ctx, log, sub, "its queue task completed without storing a result", info)
	}
	return false, nil
}

func (r *reconciler) enqueueAgain(ctx context.Context, log *slog.Logger, sub *submission.Submission, reason string) (bool, error) {
	if err := queue.Enqueue(ctx, r.client, sub.ID, queue.TaskTimeout); err != nil {
		return false, err
	}
	if sub.Status == submission.StatusRunning {
		if err := r.store.Requeue(ctx, sub.ID, sub.Attempts); err != nil {
			log.Warn("set submission back to queued", "error", err)
		}
	}
	log.Warn("repaired submission: enqueued it again", "reason", reason)
	return true, nil
}

// fail stores an internal error as the final result. A task that is still
// waiting is deleted first, so no worker starts it for nothing. An active
// task is left to end, and its result is then not stored.
func (r *reconciler) fail(ctx context.Context, log *slog.Logger, sub *submission.Submission, reason string, info *asynq.TaskInfo) (bool, error) {
	if info != nil && (info.State == asynq.TaskStatePending || info.State == asynq.TaskStateScheduled ||
		info.State == asynq.TaskStateRetry) {
		if err := r.inspector.DeleteTask(queue.Name, sub.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			log.Warn("failed to delete the queue task of a failed submission, so a worker will take it and skip it",
				"error", err)
		}
	}
	stored, err := r.store.Finish(ctx, sub.ID, &submission.Result{
		Verdict: submission.VerdictInternalError,
		Message: reason,
		Worker:  r.owner,
	}, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !stored {
		return false, nil
	}
	log.Warn("repaired submission: stored an internal error", "reason", reason)
	return true, nil
}
