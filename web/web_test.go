package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

// serve sends one request to the handler and returns the recorded response.
func serve(t *testing.T, handler http.Handler, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for name, values := range header {
		req.Header[name] = values
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(data)
}

func TestHandlerServesFiles(t *testing.T) {
	handler := Handler()
	cases := []struct {
		path        string
		contentType string
		contains    string
	}{
		{"/", "text/html; charset=utf-8", `id="source"`},
		{"/index.html", "text/html; charset=utf-8", `id="source"`},
		{"/app.js", "text/javascript; charset=utf-8", `"api/v1"`},
		{"/style.css", "text/css; charset=utf-8", "prefers-color-scheme"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp := serve(t, handler, http.MethodGet, c.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", c.path, resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != c.contentType {
				t.Errorf("Content-Type = %q, want %q", got, c.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); !strings.Contains(got, "max-age=") {
				t.Errorf("Cache-Control = %q, want a max-age", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if got := readBody(t, resp); !strings.Contains(got, c.contains) {
				t.Errorf("body of %s does not contain %q", c.path, c.contains)
			}
		})
	}
}

func TestIndexHasPolicyAndElementIDs(t *testing.T) {
	resp := serve(t, Handler(), http.MethodGet, "/", nil)
	if got := resp.Header.Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q, want script-src 'self'", got)
	}
	page := readBody(t, resp)
	// app.js and test/e2e/browser_test.go look up the elements by these ids.
	for _, id := range []string{"language", "source", "stdin", "args", "run", "status",
		"verdict", "stdout", "stderr", "exit-code", "time", "memory", "compile-output"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("index.html has no element with id %q", id)
		}
	}
}

func TestIndexReferencesServedFiles(t *testing.T) {
	handler := Handler()
	page := readBody(t, serve(t, handler, http.MethodGet, "/", nil))
	references := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(references) == 0 {
		t.Fatal("index.html references no files")
	}
	for _, ref := range references {
		if strings.Contains(ref[1], ":") || strings.HasPrefix(ref[1], "#") {
			t.Errorf("index.html references %q, want a path relative to the page", ref[1])
			continue
		}
		target := path.Join("/", ref[1])
		resp := serve(t, handler, http.MethodGet, target, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("index.html references %s, and GET %s returns %d", ref[1], target, resp.StatusCode)
		}
	}
}

func TestHandlerRevalidatesWithETag(t *testing.T) {
	handler := Handler()
	first := serve(t, handler, http.MethodGet, "/app.js", nil)
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("GET /app.js has no ETag")
	}
	second := serve(t, handler, http.MethodGet, "/app.js", http.Header{"If-None-Match": {etag}})
	if second.StatusCode != http.StatusNotModified {
		t.Errorf("GET /app.js with If-None-Match %s = %d, want 304", etag, second.StatusCode)
	}
}

func TestHandlerRejectsUnknownPaths(t *testing.T) {
	handler := Handler()
	for _, target := range []string{"/missing.js", "/static/index.html", "/../web.go", "/web.go"} {
		if resp := serve(t, handler, http.MethodGet, target, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", target, resp.StatusCode)
		}
	}
}

func TestHandlerRejectsOtherMethods(t *testing.T) {
	resp := serve(t, Handler(), http.MethodPost, "/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
	if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("Allow = %q, want %q", got, "GET, HEAD")
	}
}

func TestHandlerServesHead(t *testing.T) {
	resp := serve(t, Handler(), http.MethodHead, "/style.css", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /style.css = %d, want 200", resp.StatusCode)
	}
	if got := readBody(t, resp); got != "" {
		t.Errorf("HEAD /style.css returned a body of %d bytes, want none", len(got))
	}
}
