package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/submission"
)

// languageView is one entry of GET /api/v1/languages.
type languageView struct {
	ID, Name, Version, Reason string
	Available                 bool
}

// waitForLanguages polls the language list until no language is still
// being tested, and returns it by id.
func (s *stack) waitForLanguages(t *testing.T, timeout time.Duration) map[string]languageView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp := s.do(t, http.MethodGet, "/api/v1/languages", "", nil)
		var list []languageView
		if err := json.Unmarshal(resp.Body, &list); err != nil {
			t.Fatalf("decode languages %s: %v", resp.Body, err)
		}
		byID := map[string]languageView{}
		pending := 0
		for _, lang := range list {
			byID[lang.ID] = lang
			if !lang.Available && strings.Contains(lang.Reason, "still testing") {
				pending++
			}
		}
		if pending == 0 {
			return byID
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d languages still in the self-test after %s", pending, timeout)
		}
		time.Sleep(time.Second)
	}
}

// program reads a test program of pkg/catalog/testdata.
func program(t *testing.T, lang catalog.Language, name string) string {
	t.Helper()
	path := filepath.Join("..", "..", "pkg", "catalog", "testdata", lang.ID, name+"."+lang.Extension)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read test program: %v", err)
	}
	return string(data)
}

// TestEveryLanguage checks each catalogue language through the API. The
// self-test passes and reports a version, and a program echoes a line of
// stdin. A broken program gets the compiler's or interpreter's message, and
// a non-zero exit is a runtime error with its status. It runs under each
// sandbox runtime that the hostile suite uses.
func TestEveryLanguage(t *testing.T) {
	for _, runtime := range sandboxRuntimes(t) {
		t.Run(runtimeName(runtime), func(t *testing.T) {
			testEveryLanguage(t, runtime)
		})
	}
}

func testEveryLanguage(t *testing.T, runtime string) {
	s := startStack(t, stackOptions{SelfTest: true,
		Env: []string{"RUNBOX_CONCURRENCY=2", "RUNBOX_RUNTIME=" + runtime}})
	available := s.waitForLanguages(t, 10*time.Minute)
	languages := catalog.Embedded().All()

	type outcome struct {
		lang catalog.Language
		name string
		view submission.View
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for _, lang := range languages {
		status := available[lang.ID]
		if !status.Available {
			t.Errorf("%s: not available after the self-test: %s", lang.ID, status.Reason)
			continue
		}
		if status.Version == "" {
			t.Errorf("%s: available without a version", lang.ID)
		}
		for _, name := range []string{"echo", "compile_error", "exit_code"} {
			req := submission.Request{Language: lang.ID, Source: program(t, lang, name),
				Stdin: "hello from stdin\n"}
			id := s.submit(t, req)
			wg.Add(1)
			go func() {
				defer wg.Done()
				view := s.result(t, id, 10*time.Minute)
				mu.Lock()
				outcomes = append(outcomes, outcome{lang, name, view})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()

	for _, o := range outcomes {
		t.Run(o.lang.ID+"/"+o.name, func(t *testing.T) {
			checkLanguageOutcome(t, o.lang, o.name, o.view)
		})
	}
}

func checkLanguageOutcome(t *testing.T, lang catalog.Language, name string, view submission.View) {
	detail := "stdout " + text(view.Stdout) + "\nstderr " + text(view.Stderr) +
		"\ncompile " + text(view.CompileOutput)
	switch name {
	case "echo":
		if view.Verdict != submission.VerdictOK {
			t.Fatalf("verdict = %s (%s), want ok\n%s", view.Verdict, view.Message, detail)
		}
		if got := text(view.Stdout); got != "hello from stdin\n" {
			t.Errorf("stdout = %q, want the stdin line back", got)
		}
	case "compile_error":
		want := submission.VerdictRuntimeError
		message := text(view.Stderr)
		if lang.Compile != "" {
			want = submission.VerdictCompileError
			message = text(view.CompileOutput)
		}
		if view.Verdict != want {
			t.Fatalf("verdict = %s (%s), want %s\n%s", view.Verdict, view.Message, want, detail)
		}
		if strings.TrimSpace(message) == "" {
			t.Errorf("no compiler or interpreter message\n%s", detail)
		}
	case "exit_code":
		if view.Verdict != submission.VerdictRuntimeError {
			t.Fatalf("verdict = %s (%s), want runtime_error\n%s", view.Verdict, view.Message, detail)
		}
		if got := deref(view.ExitCode); got != 3 {
			t.Errorf("exit_code = %v, want 3", got)
		}
		if got := text(view.Stdout); got != "bye\n" {
			t.Errorf("stdout = %q, want %q", got, "bye\n")
		}
	}
}
