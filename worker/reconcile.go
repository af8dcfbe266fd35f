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
	// interval is the time between two passes, counted across all workers.
	interval time.Duration
	// minAge is the age below which a submission is not checked, because
	// the API may not have enqueued its task yet.
	minAge time.Duration
	// maxAge is the age at which an unfinished submission is failed,
	// whatever the state of its task.
	maxAge time.Duration
}

// reconcileLock is the name of the lock that lets one worker per interval
// run a pass.
const reconcileLock = "reconcile"

// reconcilePage is the max number of submission ids that one read of the
// pending set returns.
const reconcilePage = 200

// checkOutcome is the result of checking one submission.
type checkOutcome int

const (
	// outcomeUnchanged means that the submission needed no repair, or that
	// another worker stored its result first.
	outcomeUnchanged checkOutcome = iota
	// outcomeForgotten means that the submission was done or expired, and
	// its id was removed from the pending set.
	outcomeForgotten
	// outcomeRequeued means that a new task was enqueued. The id stays in
	// the pending set.
	outcomeRequeued
	// outcomeFailed means that an internal error was stored as the result,
	// which removed the id from the pending set.
	outcomeFailed
)

// reconciler repairs unfinished submissions that no queue task will
// finish. It enqueues a new task when the old one is gone. It stores an
// internal error when the queue gave up on the task or the submission is
// older than maxAge. Each worker runs one, and a Redis lock lets one of
// them run a pass per interval. Every repair is safe to repeat, because
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

// run runs a pass at start and then every interval until ctx ends.
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

// passIfLocked runs a pass if this worker gets the reconcile lock.
func (r *reconciler) passIfLocked(ctx context.Context) {
	acquired, err := r.store.TryLock(ctx, reconcileLock, r.owner, r.settings.interval)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reconcile pass skipped: acquiring its lock failed", "error", err)
		}
		return
	}
	if !acquired {
		return
	}

	checked, repaired, err := r.pass(ctx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reconcile pass stopped early", "checked", checked, "repaired", repaired, "error", err)
		}
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
	// offset counts only the checked ids that are still in the pending set,
	// so the ids that this pass removes do not make it skip others.
	// Submissions that other workers finish during the pass can still make
	// it skip a few, which the next pass checks.
	var offset int64
	for {
		ids, err := r.store.Pending(ctx, before, offset, reconcilePage)
		if err != nil {
			return checked, repaired, err
		}
		for _, id := range ids {
			outcome, err := r.check(ctx, id, now)
			if err != nil {
				return checked, repaired, err
			}
			checked++
			if outcome == outcomeRequeued || outcome == outcomeFailed {
				repaired++
			}
			if outcome == outcomeUnchanged || outcome == outcomeRequeued {
				offset++
			}
		}
		if len(ids) < reconcilePage {
			return checked, repaired, nil
		}
	}
}

// check repairs one submission if it needs a repair. An error means Redis
// could not be read or written, and it ends the pass.
func (r *reconciler) check(ctx context.Context, id string, now time.Time) (checkOutcome, error) {
	log := r.log.With("submission", id)
	sub, err := r.store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		log.Info("removing expired submission from the pending set")
		return outcomeForgotten, r.store.ForgetPending(ctx, id)
	}
	if err != nil {
		return outcomeUnchanged, err
	}
	if sub.Status == submission.StatusDone {
		return outcomeForgotten, r.store.ForgetPending(ctx, id)
	}
	log = log.With("status", sub.Status, "attempts", sub.Attempts,
		"age", now.Sub(sub.CreatedAt).Round(time.Second).String())

	info, err := r.inspector.GetTaskInfo(queue.Name, id)
	lost := errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
	if err != nil && !lost {
		return outcomeUnchanged, fmt.Errorf("read task of submission %s: %w", id, err)
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
		reason := fmt.Sprintf("the queue gave up on this submission after %d started attempts", sub.Attempts)
		if info.LastErr != "" {
			reason += ". The last attempt failed with: " + info.LastErr
		}
		return r.fail(ctx, log, sub, reason, info)
	case info.State == asynq.TaskStateCompleted:
		return r.fail(ctx, log, sub, "its queue task completed without storing a result", info)
	}
	return outcomeUnchanged, nil
}

// enqueueAgain enqueues a new task for a submission whose task was lost,
// and sets a running submission back to queued.
func (r *reconciler) enqueueAgain(ctx context.Context, log *slog.Logger, sub *submission.Submission, reason string) (checkOutcome, error) {
	if err := queue.Enqueue(ctx, r.client, sub.ID, queue.TaskTimeout); err != nil {
		return outcomeUnchanged, err
	}
	if sub.Status == submission.StatusRunning {
		if err := r.store.Requeue(ctx, sub.ID, sub.Attempts); err != nil {
			log.Warn("set submission back to queued failed", "error", err)
		}
	}
	log.Warn("repaired submission: enqueued it again", "reason", reason)
	return outcomeRequeued, nil
}

// fail stores an internal error as the final result. A task that is still
// waiting is deleted first, so that no worker starts it for nothing. An
// active task is left to end, and its result is then not stored.
func (r *reconciler) fail(ctx context.Context, log *slog.Logger, sub *submission.Submission, reason string, info *asynq.TaskInfo) (checkOutcome, error) {
	if info != nil && (info.State == asynq.TaskStatePending || info.State == asynq.TaskStateScheduled ||
		info.State == asynq.TaskStateRetry) {
		if err := r.inspector.DeleteTask(queue.Name, sub.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			log.Warn("delete queue task of failed submission failed, so a worker will take the task and skip it",
				"error", err)
		}
	}

	stored, err := r.store.Finish(ctx, sub.ID, &submission.Result{
		Verdict: submission.VerdictInternalError,
		Message: reason,
		Worker:  r.owner,
	}, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		// The submission expired, and Finish removed its id from the
		// pending set.
		return outcomeForgotten, nil
	}
	if err != nil {
		return outcomeUnchanged, err
	}
	if !stored {
		return outcomeUnchanged, nil
	}
	log.Warn("repaired submission: stored an internal error", "reason", reason)
	return outcomeFailed, nil
}
