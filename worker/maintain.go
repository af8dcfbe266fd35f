package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/sandbox"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

const (
	heartbeatInterval = 5 * time.Second
	heartbeatTTL      = 3 * heartbeatInterval
	sweepInterval     = time.Minute
	// selfTestParallelism is how many languages are tested at once.
	selfTestParallelism = 2
	// selfTestStdin is fed to every sample, which must then print
	// selfTestGreeting.
	selfTestStdin    = "Runbox\n"
	selfTestGreeting = "Hello, Runbox!"
)

// languageStatuses is the worker's view of which languages it can run.
type languageStatuses struct {
	mu       sync.Mutex
	statuses map[string]store.LanguageStatus
}

func newLanguageStatuses(languages *catalog.Catalog) *languageStatuses {
	s := &languageStatuses{statuses: make(map[string]store.LanguageStatus)}
	for _, id := range languages.IDs() {
		s.statuses[id] = store.LanguageStatus{State: store.LanguagePending}
	}
	return s
}

func (s *languageStatuses) set(id string, status store.LanguageStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[id] = status
}

func (s *languageStatuses) snapshot() map[string]store.LanguageStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]store.LanguageStatus, len(s.statuses))
	for id, status := range s.statuses {
		out[id] = status
	}
	return out
}

// maintain sends heartbeats, runs the self-test once and sweeps leftover
// containers until ctx ends.
func (w *worker) maintain(ctx context.Context, selfTest bool) {
	started := time.Now().UTC()
	beat := func() { w.heartbeat(ctx, started) }
	beat()
	var selfTests sync.WaitGroup
	// The self-test's containers must be removed before the worker exits.
	defer selfTests.Wait()
	if selfTest {
		selfTests.Add(1)
		go func() {
			defer selfTests.Done()
			w.selfTest(ctx, beat)
		}()
	} else {
		for _, id := range w.languages.IDs() {
			w.statuses.set(id, store.LanguageStatus{State: store.LanguageOK})
		}
		beat()
	}
	heartbeats := time.NewTicker(heartbeatInterval)
	defer heartbeats.Stop()
	sweeps := time.NewTicker(sweepInterval)
	defer sweeps.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeats.C:
			beat()
		case <-sweeps.C:
			w.sweep(ctx)
			w.runner.TrimPool()
		}
	}
}

func (w *worker) heartbeat(ctx context.Context, started time.Time) {
	info := &store.WorkerInfo{
		Name:      w.name,
		StartedAt: started,
		EngineOK:  true,
		Languages: w.statuses.snapshot(),
		SeenAt:    time.Now().UTC(),
	}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := w.runner.Ping(pingCtx); err != nil {
		info.EngineOK = false
		info.EngineError = err.Error()
		w.log.Warn("docker engine not reachable", "error", err)
	}
	if err := w.store.Heartbeat(ctx, info, heartbeatTTL); err != nil && ctx.Err() == nil {
		w.log.Warn("send heartbeat", "error", err)
	}
}

// sweep removes sandbox containers older than the longest possible task,
// which only a crashed worker can have left behind.
func (w *worker) sweep(ctx context.Context) {
	removed, err := w.runner.Sweep(ctx, queue.TaskTimeout+time.Minute)
	if err != nil && ctx.Err() == nil {
		w.log.Warn("sweep leftover containers", "error", err)
		return
	}
	if removed > 0 {
		w.log.Info("swept leftover containers", "count", removed)
	}
}

// selfTest checks every language: its image exists, its version command
// works, and its sample greets the self-test stdin. Only languages that
// pass are advertised as available.
func (w *worker) selfTest(ctx context.Context, beat func()) {
	start := time.Now()
	ids := w.languages.IDs()
	work := make(chan string)
	var wg sync.WaitGroup
	for range selfTestParallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				lang, _ := w.languages.Get(id)
				status := w.testLanguage(ctx, lang)
				w.statuses.set(id, status)
				if status.State == store.LanguageOK {
					w.log.Info("language ready", "language", id, "version", status.Version)
				} else {
					w.log.Warn("language out of service", "language", id, "reason", status.Reason)
				}
				beat()
			}
		}()
	}
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	w.log.Info("self-test finished", "languages", len(ids),
		"duration", time.Since(start).Round(time.Millisecond).String())
}

func (w *worker) testLanguage(ctx context.Context, lang *catalog.Language) store.LanguageStatus {
	failed := func(format string, args ...any) store.LanguageStatus {
		return store.LanguageStatus{State: store.LanguageFailed, Reason: fmt.Sprintf(format, args...)}
	}

	exists, err := w.runner.ImageExists(ctx, lang)
	if err != nil {
		return failed("inspect image %s failed: %v", sandbox.ImageRef(lang), err)
	}
	if !exists {
		return failed("image %s is missing; build it with `make images LANGUAGES=%s`",
			sandbox.ImageRef(lang), lang.ID)
	}

	version, err := w.runner.Version(ctx, lang)
	if err != nil {
		return failed("version check failed: %s", truncate(err.Error(), 300))
	}

	limits := submission.DefaultLimits
	limits.TimeMS = max(lang.Limits.TimeMS, 10_000)
	limits.CPUTimeMS = limits.TimeMS
	limits.MemoryMB = max(lang.Limits.MemoryMB, limits.MemoryMB)
	result, err := w.runner.Run(ctx, sandbox.Job{
		ID:       "selftest-" + lang.ID,
		Language: lang,
		Source:   lang.Sample,
		Stdin:    selfTestStdin,
		Limits:   limits,
		NoPool:   true,
	})
	if err != nil {
		return failed("sample run failed: %v", err)
	}

	if result.Verdict != submission.VerdictOK {
		detail := string(result.CompileOutput) + string(result.Stderr)
		return failed("sample ended with %s (%s): %s", result.Verdict, result.Message,
			truncate(strings.TrimSpace(detail), 300))
	}
	if !strings.Contains(string(result.Stdout), selfTestGreeting) {
		return failed("sample printed %q, not %q", truncate(string(result.Stdout), 100), selfTestGreeting)
	}
	return store.LanguageStatus{State: store.LanguageOK, Version: version}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
