package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/sandbox"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

// worker handles submission tasks.
type worker struct {
	name      string
	store     *store.Store
	runner    *sandbox.Runner
	languages *catalog.Catalog
	log       *slog.Logger
	statuses  *languageStatuses
	// handlers counts the ProcessTask calls in progress, so the worker can
	// wait for them to finish their cleanup before it exits.
	handlers *inflight
}

// errStopping is returned for a task that reaches the worker after it has
// begun to wait for its handlers at shutdown.
var errStopping = errors.New("the worker is stopping")

// ProcessTask runs one submission. It is idempotent by submission id: a
// submission that is done is not run again, and containers of an earlier
// attempt are removed before the next starts. Platform faults return an
// error, so Asynq retries them; after the last retry the submission ends as
// an internal error. Whatever the program does ends in a stored verdict.
func (w *worker) ProcessTask(ctx context.Context, task *asynq.Task) error {
	if !w.handlers.enter() {
		return errStopping
	}
	defer w.handlers.leave()
	payload, err := queue.ParsePayload(task)
	if err != nil {
		w.log.Error("drop malformed task", "error", err)
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	id := payload.ID
	log := w.log.With("submission", id)

	sub, err := w.store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		log.Error("drop task of unknown or expired submission")
		return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
	}
	if err != nil {
		return err
	}
	if sub.Status == submission.StatusDone {
		log.Info("skip submission that is already done")
		return nil
	}

	attempt, err := w.store.Start(ctx, id, time.Now())
	if err != nil {
		return err
	}
	if attempt == 0 {
		return nil
	}
	log = log.With("attempt", attempt, "language", sub.Language)
	if attempt > 1 {
		w.removeEarlierContainers(ctx, log, id)
	}

	started := time.Now()
	result, runErr := w.execute(ctx, sub)
	if runErr != nil {
		result, err = w.handlePlatformError(ctx, log, id, attempt, runErr)
		if err != nil {
			return err
		}
	}
	result.Worker = w.name
	if err := w.finish(ctx, id, result); err != nil {
		log.Error("store result", "error", err)
		return err
	}
	log.Info("submission done", "verdict", result.Verdict, "time_ms", result.TimeMS,
		"duration", time.Since(started).Round(time.Millisecond).String())
	return nil
}

// removeEarlierContainers removes what an earlier attempt of the submission
// left, such as the container of a worker that was killed mid-run.
func (w *worker) removeEarlierContainers(ctx context.Context, log *slog.Logger, id string) {
	removed, err := w.runner.RemoveSubmissionContainers(ctx, id)
	if err != nil {
		log.Warn("remove containers of earlier attempts", "error", err)
	} else if removed > 0 {
		log.Info("removed containers of an earlier attempt", "count", removed)
	}
}

func (w *worker) execute(ctx context.Context, sub *submission.Submission) (*submission.Result, error) {
	lang, ok := w.languages.Get(sub.Language)
	if !ok {
		return &submission.Result{
			Verdict: submission.VerdictInternalError,
			Message: fmt.Sprintf("this worker's catalogue has no language %q", sub.Language),
		}, nil
	}
	return w.runner.Run(ctx, sandbox.Job{
		ID:       sub.ID,
		Language: lang,
		Source:   sub.Source,
		Stdin:    sub.Stdin,
		Args:     sub.Args,
		Limits:   sub.Limits,
	})
}

// handlePlatformError decides between a retry (returned as an error) and
// a final internal error once the retries are used up. For a retry, the
// submission is set back to queued. A run interrupted by a cancelled
// context (the worker is stopping or lost its lease) returns its error to
// Asynq even after the last retry, so this worker stores no result for it.
// A run that hit the task's deadline counts as a platform fault.
func (w *worker) handlePlatformError(ctx context.Context, log *slog.Logger, id string, attempt int, runErr error) (*submission.Result, error) {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	interrupted := errors.Is(ctx.Err(), context.Canceled)
	if interrupted || retried < maxRetry {
		if interrupted {
			log.Warn("run interrupted; the submission goes back to the queue", "error", runErr)
		} else {
			log.Warn("run failed on a platform fault; it will be retried",
				"error", runErr, "retried", retried, "max_retry", maxRetry)
		}
		requeueCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := w.store.Requeue(requeueCtx, id, attempt); err != nil {
			log.Warn("set submission back to queued", "error", err)
		}
		return nil, runErr
	}
	log.Error("run failed on a platform fault after every retry", "error", runErr,
		"retried", retried)
	return &submission.Result{
		Verdict: submission.VerdictInternalError,
		Message: fmt.Sprintf("the platform failed %d times to run this submission: %v",
			retried+1, runErr),
	}, nil
}

// finish stores the result, retrying a failed Redis write a few times so
// that a short Redis outage does not make the program run again.
func (w *worker) finish(ctx context.Context, id string, result *submission.Result) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var stored bool
		stored, err = w.store.Finish(context.WithoutCancel(ctx), id, result, time.Now())
		if err == nil {
			if !stored {
				w.log.Warn("result not stored: the submission was already done", "submission", id)
			}
			return nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %v", asynq.SkipRetry, err)
		}
		delay := time.Duration(200<<attempt) * time.Millisecond
		w.log.Warn("store result failed; retrying", "submission", id, "error", err,
			"retry_in", delay.String())
		time.Sleep(delay)
	}
	return err
}

// inflight counts the calls in progress. Once drain has begun, it admits no
// new calls.
type inflight struct {
	mu      sync.Mutex
	count   int
	closing bool
	drained chan struct{}
}

func newInflight() *inflight {
	return &inflight{drained: make(chan struct{})}
}

// enter counts a new call. It returns false, and counts nothing, once drain
// has begun.
func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.count++
	return true
}

// leave ends a call counted by enter.
func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count--
	if f.closing && f.count == 0 {
		close(f.drained)
	}
}

// drain stops admitting calls and waits up to timeout for the running ones
// to end. It returns the number still running.
func (f *inflight) drain(timeout time.Duration) int {
	f.mu.Lock()
	if !f.closing {
		f.closing = true
		if f.count == 0 {
			close(f.drained)
		}
	}
	f.mu.Unlock()
	select {
	case <-f.drained:
	case <-time.After(timeout):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}
