package main

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/runbox/runbox/pkg/store"
)

// languageView is one entry of GET /api/v1/languages.
type languageView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	Extension string `json:"extension,omitempty"`
	Sample    string `json:"sample"`
	// Available is true when at least one live worker passed the language's
	// self-test.
	Available bool `json:"available"`
	// Reason explains why the language is not available.
	Reason string `json:"reason,omitempty"`
}

func (s *server) listLanguages(w http.ResponseWriter, r *http.Request) {
	workers, err := s.store.Workers(r.Context())
	if err != nil {
		s.log.Error("list workers", "error", err)
		unavailable(w, "the language list could not be read; try again shortly")
		return
	}
	views := make([]languageView, 0, len(s.languages.IDs()))
	for _, lang := range s.languages.All() {
		view := languageView{ID: lang.ID, Name: lang.Name, Extension: lang.Extension, Sample: lang.Sample}
		view.Available, view.Version, view.Reason = availability(lang.ID, workers)
		views = append(views, view)
	}
	writeJSON(w, http.StatusOK, views)
}

// availability merges the workers' self-test results for one language: it
// is available when any worker passed it, and its version is that worker's.
func availability(id string, workers []store.WorkerInfo) (bool, string, string) {
	if len(workers) == 0 {
		return false, "", "no worker is running"
	}
	var pending bool
	var reasons []string
	for _, worker := range workers {
		status := worker.Languages[id]
		switch status.State {
		case store.LanguageOK:
			return true, status.Version, ""
		case store.LanguageFailed:
			reasons = append(reasons, status.Reason)
		default:
			pending = true
		}
	}
	if pending {
		return false, "", "the workers are still testing this language"
	}
	return false, "", strings.Join(reasons, "; ")
}

// health returns 200 while Redis is reachable and at least one live worker
// reaches its Docker engine, and 503 with the reasons otherwise.
func (s *server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	report := map[string]any{"redis": "ok"}
	var problems []string
	workers, err := s.store.Workers(ctx)
	if err != nil {
		report["redis"] = err.Error()
		problems = append(problems, "redis is not reachable")
	}
	engines := 0
	for _, worker := range workers {
		if worker.EngineOK {
			engines++
		}
	}
	report["workers"] = len(workers)
	report["workers_with_engine"] = engines
	if err == nil && engines == 0 {
		problems = append(problems, "no live worker reaches a docker engine")
	}
	status := http.StatusOK
	report["status"] = "ok"
	if len(problems) > 0 {
		status = http.StatusServiceUnavailable
		report["status"] = "unavailable"
		report["problems"] = problems
	}
	writeJSON(w, status, report)
}
