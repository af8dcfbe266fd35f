package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// repeatReader returns a reader of prefix, n bytes of 'a' and suffix,
// without holding the n bytes in memory.
func repeatReader(prefix string, n int64, suffix string) io.Reader {
	return io.MultiReader(strings.NewReader(prefix),
		io.LimitReader(repeatByte('a'), n), strings.NewReader(suffix))
}

// repeatByte is an endless reader of one byte value.
type repeatByte byte

func (r repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// errorBody is the JSON body of a rejected request.
type errorBody struct {
	Error struct {
		Code    string   `json:"code"`
		Field   string   `json:"field"`
		Message string   `json:"message"`
		Allowed []string `json:"allowed"`
	} `json:"error"`
}

func decodeError(t *testing.T, resp response) errorBody {
	t.Helper()
	var body errorBody
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		t.Fatalf("error body is not JSON: %q (%v)", resp.Body, err)
	}
	if body.Error.Message == "" {
		t.Errorf("error body has no message: %s", resp.Body)
	}
	return body
}

// TestRejectedRequests sends malformed, oversized and out-of-range
// requests through the real API.
func TestRejectedRequests(t *testing.T) {
	s := startStack(t, stackOptions{})
	tests := []struct {
		name        string
		contentType string
		body        func() io.Reader
		wantStatus  int
		wantField   string
		wantInMsg   string
	}{
		{"20 MiB stdin", "application/json", func() io.Reader {
			return repeatReader(`{"language":"python","source":"print(1)","stdin":"`, 20<<20, `"}`)
		}, 413, "", "1048576"},
		{"50 MiB source", "application/json", func() io.Reader {
			return repeatReader(`{"language":"python","source":"`, 50<<20, `"}`)
		}, 413, "", "1048576"},
		{"empty source", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":""}`)
		}, 422, "source", "empty"},
		{"whitespace source", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"  \n\t"}`)
		}, 422, "source", "empty"},
		{"unknown language", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"klingon","source":"x"}`)
		}, 422, "language", "python"},
		{"malformed JSON", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python",`)
		}, 400, "", "JSON"},
		{"text/plain", "text/plain", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"print(1)"}`)
		}, 415, "", "application/json"},
		{"trailing garbage", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"print(1)"}garbage`)
		}, 400, "", "more data"},
		{"negative time", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"1","limits":{"time_ms":-1}}`)
		}, 422, "limits.time_ms", "from 1 to"},
		{"zero memory", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"1","limits":{"memory_mb":0}}`)
		}, 422, "limits.memory_mb", "from 16 to"},
		{"string time", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"1","limits":{"time_ms":"100"}}`)
		}, 422, "limits.time_ms", "from 1 to"},
		{"time above maximum", "application/json", func() io.Reader {
			return strings.NewReader(`{"language":"python","source":"1","limits":{"time_ms":999999}}`)
		}, 422, "limits.time_ms", "from 1 to 20000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.do(t, http.MethodPost, "/api/v1/submissions", tt.contentType, tt.body())
			if resp.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %.300s", resp.Status, tt.wantStatus, resp.Body)
			}
			body := decodeError(t, resp)
			if body.Error.Field != tt.wantField {
				t.Errorf("field = %q, want %q", body.Error.Field, tt.wantField)
			}
			if !strings.Contains(body.Error.Message, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", body.Error.Message, tt.wantInMsg)
			}
		})
	}
	if rss := processRSSKiB(t, s.api.cmd.Process.Pid); rss > 200<<10 {
		t.Errorf("api resident memory is %d KiB after the oversized requests, want at most %d KiB", rss, 200<<10)
	}
}

// TestChunkedBodyTooLarge sends an oversized body without Content-Length,
// so the limit must apply while reading.
func TestChunkedBodyTooLarge(t *testing.T) {
	s := startStack(t, stackOptions{})
	body := repeatReader(`{"language":"python","source":"`, 100<<20, `"}`)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/v1/submissions", io.NopCloser(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The server may close the connection once it has rejected the body,
		// before the client reads the response. The API's request log then
		// shows the status it sent.
		t.Logf("client error after rejection: %v", err)
		if countLinesSoon(s.api, "method=POST", "path=/api/v1/submissions", "status=413") != 1 {
			t.Errorf("the api logged no 413 response to the oversized POST\napi log:\n%s", s.api.log())
		}
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413: %.300s", resp.StatusCode, data)
	}
	if !bytes.Contains(data, []byte("1048576")) {
		t.Errorf("body %s does not name the 1048576-byte limit", data)
	}
}

// processRSSKiB returns the resident set size of a process in KiB, read
// from /proc/<pid>/status.
func processRSSKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read memory of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kib, _ := strconv.Atoi(strings.Fields(line)[1])
			return kib
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
