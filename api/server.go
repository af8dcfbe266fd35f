package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
	"github.com/runbox/runbox/web"
)

// maxWait caps the wait parameter of a long poll.
const maxWait = 30 * time.Second

type server struct {
	store     *store.Store
	queue     *asynq.Client
	admission *admission
	languages *catalog.Catalog
	policy    submission.Policy
	waiters   *waiters
	log       *slog.Logger
}

func newServer(s *store.Store, q *asynq.Client, admission *admission, languages *catalog.Catalog, policy submission.Policy, log *slog.Logger) *server {
	return &server{
		store:     s,
		queue:     q,
		admission: admission,
		languages: languages,
		policy:    policy.WithDefaults(),
		waiters:   newWaiters(),
		log:       log,
	}
}

func (s *server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(middleware.Recoverer)
	r.Use(s.accessLog)
	r.Get("/healthz", s.health)
	r.Get("/metrics", s.metrics)
	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/languages", s.listLanguages)
		r.Post("/submissions", s.createSubmission)
		r.Get("/submissions/{id}", s.getSubmission)
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, &submission.RequestError{Status: http.StatusMethodNotAllowed,
				Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path})
		})
		r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, &submission.RequestError{Status: http.StatusNotFound,
				Code: "not_found", Message: "no such API endpoint"})
		})
	})
	r.Handle("/*", web.Handler())
	return r
}

// accessLog logs every request at debug level and writes at info level.
func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		level := slog.LevelDebug
		if r.Method != http.MethodGet || ww.Status() >= 500 {
			level = slog.LevelInfo
		}
		s.log.Log(r.Context(), level, "http request", "method", r.Method, "path", r.URL.Path,
			"status", ww.Status(), "bytes", ww.BytesWritten(),
			"duration", time.Since(start).Round(time.Microsecond).String(),
			"request_id", middleware.GetReqID(r.Context()))
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body)
}

func writeError(w http.ResponseWriter, e *submission.RequestError) {
	writeJSON(w, e.Status, map[string]any{"error": e})
}

func unavailable(w http.ResponseWriter, message string) {
	w.Header().Set("Retry-After", "5")
	writeError(w, &submission.RequestError{Status: http.StatusServiceUnavailable,
		Code: "unavailable", Message: message})
}

func (s *server) createSubmission(w http.ResponseWriter, r *http.Request) {
	if !submission.IsJSONContentType(r.Header.Get("Content-Type")) {
		writeError(w, &submission.RequestError{
			Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "Content-Type must be application/json, not " +
				strconv.Quote(r.Header.Get("Content-Type")),
		})
		return
	}
	if r.ContentLength > s.policy.MaxBodyBytes {
		writeError(w, &submission.RequestError{
			Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: "the request body must be at most " +
				strconv.FormatInt(s.policy.MaxBodyBytes, 10) + " bytes",
		})
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.policy.MaxBodyBytes)
	req, reqErr := s.policy.Decode(body)
	if reqErr != nil {
		writeError(w, reqErr)
		return
	}
	limits, reqErr := s.policy.Validate(req, s.languages)
	if reqErr != nil {
		writeError(w, reqErr)
		return
	}
	// Admission runs before the language check, which reads Redis on every
	// request. Admission caches its read, so while Redis is unreachable it
	// also rejects requests without waiting for Redis each time.
	if !s.admit(w) {
		return
	}
	enqueued := false
	defer func() {
		if enqueued {
			s.admission.confirm()
		} else {
			s.admission.release()
		}
	}()
	if reason := s.languageOutOfService(r.Context(), req.Language); reason != "" {
		w.Header().Set("Retry-After", "30")
		writeError(w, &submission.RequestError{Status: http.StatusServiceUnavailable,
			Code: "language_unavailable", Field: "language", Message: reason})
		return
	}

	sub := &submission.Submission{
		ID:        uuid.NewString(),
		Language:  req.Language,
		Source:    req.Source,
		Stdin:     req.Stdin,
		Args:      req.Args,
		Limits:    limits,
		Status:    submission.StatusQueued,
		CreatedAt: time.Now().UTC(),
	}
	if err := s.store.Create(r.Context(), sub); err != nil {
		s.log.Error("store submission", "submission", sub.ID, "error", err)
		unavailable(w, "the submission could not be stored; try again shortly")
		return
	}
	if err := queue.Enqueue(r.Context(), s.queue, sub.ID, queue.TaskTimeout); err != nil {
		s.log.Error("enqueue submission", "submission", sub.ID, "error", err)
		s.failUnqueued(sub.ID, err)
		unavailable(w, "the submission could not be queued; try again shortly")
		return
	}
	enqueued = true
	w.Header().Set("Location", "/api/v1/submissions/"+sub.ID)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": sub.ID, "status": string(sub.Status)})
}

// admit reserves a slot in the queue for a new submission and reports
// whether it got one. Otherwise it writes 429 for a full queue, or 503 when
// the queue size cannot be read.
func (s *server) admit(w http.ResponseWriter) bool {
	backlog, err := s.admission.reserve()
	if errors.Is(err, errQueueFull) {
		w.Header().Set("Retry-After", queueFullRetryAfter)
		writeError(w, &submission.RequestError{Status: http.StatusTooManyRequests, Code: "queue_full",
			Message: fmt.Sprintf("the queue is full (%d unfinished submissions, limit %d), try again in %s seconds",
				backlog, s.admission.capacity, queueFullRetryAfter)})
		return false
	}
	if err != nil {
		s.log.Error("read queue size failed", "error", err)
		unavailable(w, "the queue size could not be read; try again shortly")
		return false
	}
	return true
}

// failUnqueued ends a stored submission that never reached the queue, so
// it does not stay queued forever.
func (s *server) failUnqueued(id string, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.store.Finish(ctx, id, &submission.Result{
		Verdict: submission.VerdictInternalError,
		Message: "the submission could not be queued: " + cause.Error(),
	}, time.Now())
	if err != nil {
		s.log.Error("mark unqueued submission failed", "submission", id, "error", err)
	}
}

func (s *server) getSubmission(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if _, err := uuid.Parse(id); err != nil {
		// A long id is cut, so the error does not echo a large request.
		displayID := id
		if len(displayID) > 64 {
			displayID = displayID[:64] + "..."
		}
		writeError(w, &submission.RequestError{Status: http.StatusNotFound, Code: "not_found",
			Message: "no submission has the id " + strconv.Quote(displayID) + "; submission ids are UUIDs"})
		return
	}
	wait, reqErr := parseWait(r.URL.Query().Get("wait"))
	if reqErr != nil {
		writeError(w, reqErr)
		return
	}
	seen := submission.Status(r.URL.Query().Get("status"))
	sub, err := s.awaitChange(r.Context(), id, seen, wait)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, &submission.RequestError{Status: http.StatusNotFound, Code: "not_found",
			Message: "no submission has the id " + strconv.Quote(id) + "; results are kept for a limited time"})
		return
	}
	if err != nil {
		s.log.Error("read submission", "submission", id, "error", err)
		unavailable(w, "the submission could not be read; try again shortly")
		return
	}
	writeJSON(w, http.StatusOK, sub.View())
}

// parseWait reads the wait parameter: seconds as an integer or a Go
// duration such as "1500ms", at most maxWait.
func parseWait(raw string) (time.Duration, *submission.RequestError) {
	if raw == "" {
		return 0, nil
	}
	wait, err := time.ParseDuration(raw)
	if seconds, convErr := strconv.Atoi(raw); convErr == nil {
		wait, err = time.Duration(seconds)*time.Second, nil
	}
	if err != nil || wait < 0 || wait > maxWait {
		return 0, &submission.RequestError{Status: http.StatusBadRequest, Code: "invalid_parameter",
			Field: "wait", Message: "wait must be a number of seconds from 0 to 30, or a duration such as 1500ms"}
	}
	return wait, nil
}

// awaitChange returns the submission once its status differs from seen
// (or, when seen is empty, once it is done), or when wait has passed.
func (s *server) awaitChange(ctx context.Context, id string, seen submission.Status, wait time.Duration) (*submission.Submission, error) {
	changed := func(sub *submission.Submission) bool {
		if seen == "" {
			return sub.Status == submission.StatusDone
		}
		return sub.Status != seen
	}
	sub, err := s.store.Get(ctx, id)
	if err != nil || wait == 0 || changed(sub) {
		return sub, err
	}
	wake, remove := s.waiters.add(id)
	defer remove()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	recheck := time.NewTicker(waitRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return sub, nil
		case <-deadline.C:
			return s.store.Get(ctx, id)
		case <-wake:
		case <-recheck.C:
		}
		if sub, err = s.store.Get(ctx, id); err != nil || changed(sub) {
			return sub, err
		}
	}
}

// languageOutOfService returns why a language cannot run, when every live
// worker has tested it and found it broken; otherwise "".
func (s *server) languageOutOfService(ctx context.Context, id string) string {
	workers, err := s.store.Workers(ctx)
	if err != nil || len(workers) == 0 {
		return ""
	}
	var reasons []string
	for _, worker := range workers {
		status, ok := worker.Languages[id]
		if !ok || status.State != store.LanguageFailed {
			return ""
		}
		reasons = append(reasons, worker.Name+": "+status.Reason)
	}
	return "language " + strconv.Quote(id) + " is out of service on every worker (" +
		strings.Join(reasons, "; ") + ")"
}
