package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/pkg/submission"
)

func TestPythonHelloEndToEnd(t *testing.T) {
	s := startStack(t, stackOptions{})
	start := time.Now()
	view := s.run(t, submission.Request{Language: "python", Source: "print('hello')\n"})
	t.Logf("python hello: POST to done in %s", time.Since(start).Round(time.Millisecond))

	if view.Verdict != submission.VerdictOK {
		t.Fatalf("verdict = %s (%s), want ok", view.Verdict, view.Message)
	}
	if got := text(view.Stdout); got != "hello\n" {
		t.Errorf("stdout = %q, want %q", got, "hello\n")
	}
	if got := deref(view.ExitCode); got != 0 {
		t.Errorf("exit_code = %v, want 0", got)
	}
	if view.TimeMS == nil {
		t.Error("time_ms is missing")
	}
	if view.StartedAt == nil || view.FinishedAt == nil {
		t.Fatalf("started_at = %v, finished_at = %v; want both set", view.StartedAt, view.FinishedAt)
	}
	if view.StartedAt.Before(view.CreatedAt.Add(-time.Second)) || view.FinishedAt.Before(*view.StartedAt) {
		t.Errorf("timestamps out of order: created %s, started %s, finished %s",
			view.CreatedAt, view.StartedAt, view.FinishedAt)
	}
	if view.Worker != s.workerName {
		t.Errorf("worker = %q, want %q", view.Worker, s.workerName)
	}
}

func TestSubmissionStatesAndLongPoll(t *testing.T) {
	s := startStack(t, stackOptions{})
	id := s.submit(t, submission.Request{Language: "python",
		Source: "import time\ntime.sleep(1)\nprint('slept')\n"})

	resp := s.do(t, http.MethodGet, "/api/v1/submissions/"+id, "", nil)
	var first submission.View
	if err := json.Unmarshal(resp.Body, &first); err != nil {
		t.Fatalf("decode %s: %v", resp.Body, err)
	}
	if first.Status == submission.StatusDone {
		t.Fatalf("status = done right after submitting a 1 s program")
	}
	if first.Verdict != "" || first.Stdout != nil {
		t.Errorf("unfinished submission shows result fields: %s", resp.Body)
	}

	view := s.result(t, id, time.Minute)
	if got := text(view.Stdout); got != "slept\n" {
		t.Errorf("stdout = %q, want %q", got, "slept\n")
	}
}

func TestUnknownSubmissionIs404(t *testing.T) {
	s := startStack(t, stackOptions{})
	for _, id := range []string{"00000000-0000-4000-8000-000000000000", "not-a-uuid"} {
		resp := s.do(t, http.MethodGet, "/api/v1/submissions/"+id, "", nil)
		if resp.Status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", id, resp.Status)
		}
	}
}

func TestLanguagesAfterSelfTest(t *testing.T) {
	s := startStack(t, stackOptions{SelfTest: true})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp := s.do(t, http.MethodGet, "/api/v1/languages", "", nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET /api/v1/languages = %d %s", resp.Status, resp.Body)
		}
		var langs []struct {
			ID, Name, Version, Sample, Reason string
			Available                         bool
		}
		if err := json.Unmarshal(resp.Body, &langs); err != nil {
			t.Fatalf("decode %s: %v", resp.Body, err)
		}
		byID := map[string]int{}
		for i, lang := range langs {
			byID[lang.ID] = i
		}
		python, ok := byID["python"]
		if !ok {
			t.Fatalf("python missing from %s", resp.Body)
		}
		if langs[python].Available {
			if langs[python].Version == "" {
				t.Errorf("python is available but has no version")
			}
			if !strings.Contains(langs[python].Sample, "input") {
				t.Errorf("python sample %q does not read stdin", langs[python].Sample)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("python not available after the self-test: %s", resp.Body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestHealthFollowsRedis(t *testing.T) {
	s := startStack(t, stackOptions{})
	if resp := s.do(t, http.MethodGet, "/healthz", "", nil); resp.Status != http.StatusOK {
		t.Fatalf("healthz = %d %s before stopping redis, want 200", resp.Status, resp.Body)
	}
	ctx := context.Background()
	timeout := 5 * time.Second
	if err := s.Redis.Container.Stop(ctx, &timeout); err != nil {
		t.Fatalf("stop redis: %v", err)
	}
	resp := s.do(t, http.MethodGet, "/healthz", "", nil)
	if resp.Status != http.StatusServiceUnavailable {
		t.Errorf("healthz = %d %s with redis stopped, want 503", resp.Status, resp.Body)
	}
	post := s.do(t, http.MethodPost, "/api/v1/submissions", "application/json",
		strings.NewReader(`{"language":"python","source":"print(1)"}`))
	if post.Status != http.StatusServiceUnavailable {
		t.Errorf("POST with redis stopped = %d %s, want 503", post.Status, post.Body)
	}
	if post.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}
