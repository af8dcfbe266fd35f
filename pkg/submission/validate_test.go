package submission

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/runbox/runbox/pkg/catalog"
)

// check decodes and validates a body the way the API does.
func check(t *testing.T, policy Policy, body string) (Limits, *RequestError) {
	t.Helper()
	policy = policy.WithDefaults()
	reader := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), policy.MaxBodyBytes)
	req, err := policy.Decode(reader)
	if err != nil {
		return Limits{}, err
	}
	return policy.Validate(req, catalog.Embedded())
}

func TestValidateRejects(t *testing.T) {
	policy := Policy{}.WithDefaults()
	big := strings.Repeat("x", policy.MaxSourceBytes+1)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantField  string
		wantInMsg  string
	}{
		{"empty body", ``, 400, "", "empty"},
		{"array body", `[]`, 400, "", "JSON object"},
		{"string body", `"python"`, 400, "", "JSON object"},
		{"malformed json", `{"language": "python",`, 400, "", "ends in the middle"},
		{"syntax error", `{"language" "python"}`, 400, "", "not valid JSON"},
		{"trailing garbage", `{"language":"python","source":"print(1)"} trailing`, 400, "", "more data"},
		{"two objects", `{"language":"python","source":"1"}{"language":"c"}`, 400, "", "more data"},
		{"unknown field", `{"language":"python","source":"1","timeout":5}`, 400, "timeout", "unknown field"},
		{"missing language", `{"source":"print(1)"}`, 422, "language", "python"},
		{"unknown language", `{"language":"brainfuck","source":"+"}`, 422, "language", "python"},
		{"language not a string", `{"language":7,"source":"1"}`, 422, "language", "a string"},
		{"missing source", `{"language":"python"}`, 422, "source", "empty"},
		{"whitespace source", `{"language":"python","source":" \n\t "}`, 422, "source", "empty"},
		{"source too large", `{"language":"python","source":"` + big + `"}`, 413, "source", "65536"},
		{"args not strings", `{"language":"python","source":"1","args":[1]}`, 422, "args", "string"},
		{"zero time", `{"language":"python","source":"1","limits":{"time_ms":0}}`, 422, "limits.time_ms", "from 1 to 20000"},
		{"negative time", `{"language":"python","source":"1","limits":{"time_ms":-5}}`, 422, "limits.time_ms", "from 1 to 20000"},
		{"time above max", `{"language":"python","source":"1","limits":{"time_ms":20001}}`, 422, "limits.time_ms", "from 1 to 20000"},
		{"time as string", `{"language":"python","source":"1","limits":{"time_ms":"5"}}`, 422, "limits.time_ms", "from 1 to 20000"},
		{"time fractional", `{"language":"python","source":"1","limits":{"time_ms":1.5}}`, 422, "limits.time_ms", "integer"},
		{"memory zero", `{"language":"python","source":"1","limits":{"memory_mb":0}}`, 422, "limits.memory_mb", "from 16 to 1024"},
		{"memory above max", `{"language":"python","source":"1","limits":{"memory_mb":4096}}`, 422, "limits.memory_mb", "from 16 to 1024"},
		{"processes above max", `{"language":"python","source":"1","limits":{"processes":100000}}`, 422, "limits.processes", "from 8 to 512"},
		{"output zero", `{"language":"python","source":"1","limits":{"output_kb":0}}`, 422, "limits.output_kb", "from 1 to 1024"},
		{"file size negative", `{"language":"python","source":"1","limits":{"file_size_kb":-1}}`, 422, "limits.file_size_kb", "from 1 to 65536"},
		{"open files string", `{"language":"python","source":"1","limits":{"open_files":"many"}}`, 422, "limits.open_files", "from 16 to 4096"},
		{"unknown limit", `{"language":"python","source":"1","limits":{"disk_mb":5}}`, 400, "limits.disk_mb", "unknown field"},
		{"limits not object", `{"language":"python","source":"1","limits":5}`, 422, "limits", "object"},
		{"nul in argument", `{"language":"python","source":"1","args":["a\u0000b"]}`, 422, "args[0]", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := check(t, Policy{}, tt.body)
			if err == nil {
				t.Fatalf("accepted %s", tt.body[:min(len(tt.body), 80)])
			}
			if err.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", err.Status, tt.wantStatus, err.Message)
			}
			if err.Field != tt.wantField {
				t.Errorf("field = %q, want %q (%s)", err.Field, tt.wantField, err.Message)
			}
			if !strings.Contains(err.Message, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", err.Message, tt.wantInMsg)
			}
		})
	}
}

func TestValidateBodyTooLarge(t *testing.T) {
	policy := Policy{MaxBodyBytes: 1024}
	body := `{"language":"python","source":"` + strings.Repeat("x", 2000) + `"}`
	_, err := check(t, policy, body)
	if err == nil {
		t.Fatal("accepted a body over the limit")
	}
	if err.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", err.Status)
	}
	if !strings.Contains(err.Message, "1024") {
		t.Errorf("message %q does not name the limit", err.Message)
	}
}

func TestValidateStdinTooLarge(t *testing.T) {
	policy := Policy{MaxStdinBytes: 10}
	_, err := check(t, policy, `{"language":"python","source":"1","stdin":"01234567890"}`)
	if err == nil || err.Status != http.StatusRequestEntityTooLarge || err.Field != "stdin" {
		t.Fatalf("error = %+v, want 413 on stdin", err)
	}
}

func TestValidateUnknownLanguageListsSupported(t *testing.T) {
	_, err := check(t, Policy{}, `{"language":"cobol-85","source":"x"}`)
	if err == nil {
		t.Fatal("accepted an unknown language")
	}
	if len(err.Allowed) == 0 {
		t.Error("allowed is empty, want the supported languages")
	}
	for _, id := range catalog.Embedded().IDs() {
		if !strings.Contains(err.Message, id) {
			t.Errorf("message %q does not list %q", err.Message, id)
		}
	}
}

func TestValidateLimits(t *testing.T) {
	limits, err := check(t, Policy{}, `{"language":"python","source":"print(1)"}`)
	if err != nil {
		t.Fatalf("rejected a valid request: %s", err.Message)
	}
	if limits != DefaultLimits {
		t.Errorf("limits = %+v, want the defaults %+v", limits, DefaultLimits)
	}
	limits, err = check(t, Policy{},
		`{"language":"python","source":"print(1)","stdin":"x","args":["a"],"limits":{"time_ms":20000,"memory_mb":16}}`)
	if err != nil {
		t.Fatalf("rejected limits at the edges of the range: %s", err.Message)
	}
	if limits.TimeMS != 20000 || limits.MemoryMB != 16 {
		t.Errorf("limits = %+v, want the requested 20000 ms and 16 MiB", limits)
	}
	if limits.CPUTimeMS != 20000 {
		t.Errorf("cpu_time_ms = %d, want it to follow the raised time_ms", limits.CPUTimeMS)
	}
	limits, err = check(t, Policy{},
		`{"language":"python","source":"1","limits":{"processes":8,"output_kb":1,"file_size_kb":1,"open_files":16,"cpu_time_ms":300}}`)
	if err != nil {
		t.Fatalf("rejected limits at their minimums: %s", err.Message)
	}
	want := DefaultLimits
	want.Processes, want.OutputKB, want.FileSizeKB, want.OpenFiles, want.CPUTimeMS = 8, 1, 1, 16, 300
	if limits != want {
		t.Errorf("limits = %+v, want %+v", limits, want)
	}
}

func TestJSONContentType(t *testing.T) {
	for header, want := range map[string]bool{
		"application/json":                true,
		"Application/JSON; charset=utf-8": true,
		"text/plain":                      false,
		"":                                false,
		"application/jsonp":               false,
	} {
		if got := IsJSONContentType(header); got != want {
			t.Errorf("IsJSONContentType(%q) = %t, want %t", header, got, want)
		}
	}
}

func TestViewEncodesBinaryOutput(t *testing.T) {
	exit := 0
	sub := &Submission{Status: StatusDone, Result: &Result{
		Verdict: VerdictOK, ExitCode: &exit,
		Stdout: []byte{0xff, 0xfe, 'a'}, Stderr: []byte("esc \x1b nul \x00"),
	}}
	view := sub.View()
	if view.StdoutEncoding != EncodingBase64 || *view.Stdout != "//5h" {
		t.Errorf("stdout = %q (%q), want base64 //5h", *view.Stdout, view.StdoutEncoding)
	}
	if view.StderrEncoding != "" || *view.Stderr != "esc \x1b nul \x00" {
		t.Errorf("stderr = %q (%q), want the UTF-8 text unchanged", *view.Stderr, view.StderrEncoding)
	}
}

func TestViewOmitsTimeAfterCompileError(t *testing.T) {
	failed := (&Submission{Status: StatusDone, Result: &Result{Verdict: VerdictCompileError}}).View()
	if failed.TimeMS != nil {
		t.Errorf("time_ms = %d after a compile error, want it absent", *failed.TimeMS)
	}

	ran := (&Submission{Status: StatusDone, Result: &Result{Verdict: VerdictOK, TimeMS: 12}}).View()
	if ran.TimeMS == nil {
		t.Fatal("time_ms is absent after a run, want 12")
	}
	if *ran.TimeMS != 12 {
		t.Errorf("time_ms = %d after a run, want 12", *ran.TimeMS)
	}
}
