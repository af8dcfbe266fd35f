// Package submission holds the submission model and the JSON wire types that
// the API, the worker and the web page share.
package submission

import (
	"encoding/base64"
	"time"
	"unicode/utf8"
)

// Status is the stage of a submission: queued, running or done.
type Status string

const (
	StatusQueued  Status = "queued"
	StatusRunning Status = "running"
	StatusDone    Status = "done"
)

// Verdict is the outcome of a finished submission.
type Verdict string

const (
	VerdictOK                  Verdict = "ok"
	VerdictCompileError        Verdict = "compile_error"
	VerdictRuntimeError        Verdict = "runtime_error"
	VerdictTimeLimitExceeded   Verdict = "time_limit_exceeded"
	VerdictMemoryLimitExceeded Verdict = "memory_limit_exceeded"
	VerdictOutputLimitExceeded Verdict = "output_limit_exceeded"
	// VerdictInternalError means the platform failed, never the program.
	VerdictInternalError Verdict = "internal_error"
)

// Request is the body of POST /api/v1/submissions.
type Request struct {
	Language string         `json:"language"`
	Source   string         `json:"source"`
	Stdin    string         `json:"stdin,omitempty"`
	Args     []string       `json:"args,omitempty"`
	Limits   *RequestLimits `json:"limits,omitempty"`
}

// RequestLimits are the limits a request may set. A missing field takes the
// language's or the configured default; zero is rejected like any other
// value out of range.
type RequestLimits struct {
	TimeMS     *int `json:"time_ms,omitempty"`
	CPUTimeMS  *int `json:"cpu_time_ms,omitempty"`
	MemoryMB   *int `json:"memory_mb,omitempty"`
	Processes  *int `json:"processes,omitempty"`
	OutputKB   *int `json:"output_kb,omitempty"`
	FileSizeKB *int `json:"file_size_kb,omitempty"`
	OpenFiles  *int `json:"open_files,omitempty"`
}

// Limits are the effective resource limits of one run.
type Limits struct {
	// TimeMS is the wall-clock limit of the run, in milliseconds.
	TimeMS int `json:"time_ms"`
	// CPUTimeMS is the CPU time limit of each process of the run, in
	// milliseconds, enforced in whole seconds (rounded up).
	CPUTimeMS int `json:"cpu_time_ms"`
	// MemoryMB is the memory limit of the run, in MiB, without swap.
	MemoryMB int `json:"memory_mb"`
	// Processes caps the processes and threads of the sandbox.
	Processes int `json:"processes"`
	// OutputKB caps stdout and stderr, each, in KiB.
	OutputKB int `json:"output_kb"`
	// FileSizeKB caps the size of any file the program writes, in KiB.
	FileSizeKB int `json:"file_size_kb"`
	// OpenFiles caps the open file descriptors of each process.
	OpenFiles int `json:"open_files"`
}

// Submission is the stored record of one request: the request, its
// effective limits, its status and, once the worker is done, the result.
type Submission struct {
	ID       string   `json:"id"`
	Language string   `json:"language"`
	Source   string   `json:"source"`
	Stdin    string   `json:"stdin,omitempty"`
	Args     []string `json:"args,omitempty"`
	Limits   Limits   `json:"limits"`
	Status   Status   `json:"status"`
	// Attempts counts the times a worker started this submission.
	Attempts   int        `json:"attempts,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Result     *Result    `json:"result,omitempty"`
}

// Result is the outcome of a run, as the sandbox reports it.
type Result struct {
	Verdict Verdict `json:"verdict"`
	// Message explains the verdict in one sentence, such as which limit was
	// exceeded or why the platform failed.
	Message  string `json:"message,omitempty"`
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	ExitCode *int   `json:"exit_code"`
	// Signal is the name of the signal that ended the program, if any.
	Signal string `json:"signal,omitempty"`
	TimeMS int64  `json:"time_ms"`
	// MemoryKB is the peak memory of the run in KiB, when known.
	MemoryKB        *int64 `json:"memory_kb,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	CompileOutput   []byte `json:"compile_output,omitempty"`
	CompileTimeMS   int64  `json:"compile_time_ms,omitempty"`
	// Worker names the worker process that ran the submission.
	Worker string `json:"worker,omitempty"`
	// Stages are the times at which the sandbox reached each stage of the
	// run.
	Stages *Stages `json:"stages,omitempty"`
}

// Stages are the times at which a run reached each stage inside the
// worker. Together with created_at, started_at (picked up) and finished_at
// (stored), they split the latency of a submission into its parts.
type Stages struct {
	// ContainerReadyAt is when the container was started (or taken from
	// the pool) and the first step could begin.
	ContainerReadyAt time.Time `json:"container_ready_at,omitzero"`
	// ExitedAt is when the program's run step ended.
	ExitedAt time.Time `json:"exited_at,omitzero"`
}

// View is the JSON body of GET /api/v1/submissions/{id}. The result fields
// are present once the status is done.
type View struct {
	ID         string     `json:"id"`
	Language   string     `json:"language"`
	Status     Status     `json:"status"`
	Limits     Limits     `json:"limits"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`

	Verdict         Verdict `json:"verdict,omitempty"`
	Message         string  `json:"message,omitempty"`
	Stdout          *string `json:"stdout,omitempty"`
	StdoutEncoding  string  `json:"stdout_encoding,omitempty"`
	Stderr          *string `json:"stderr,omitempty"`
	StderrEncoding  string  `json:"stderr_encoding,omitempty"`
	ExitCode        *int    `json:"exit_code,omitempty"`
	Signal          string  `json:"signal,omitempty"`
	TimeMS          *int64  `json:"time_ms,omitempty"`
	MemoryKB        *int64  `json:"memory_kb,omitempty"`
	StdoutTruncated bool    `json:"stdout_truncated,omitempty"`
	StderrTruncated bool    `json:"stderr_truncated,omitempty"`
	CompileOutput   *string `json:"compile_output,omitempty"`
	CompileEncoding string  `json:"compile_output_encoding,omitempty"`
	CompileTimeMS   *int64  `json:"compile_time_ms,omitempty"`
	Worker          string  `json:"worker,omitempty"`
	Stages          *Stages `json:"stages,omitempty"`
}

// EncodingBase64 marks a field whose bytes are not valid UTF-8 and are
// therefore sent base64-encoded, so that no byte is lost.
const EncodingBase64 = "base64"

// View returns the public form of the submission.
func (s *Submission) View() View {
	v := View{
		ID:         s.ID,
		Language:   s.Language,
		Status:     s.Status,
		Limits:     s.Limits,
		CreatedAt:  s.CreatedAt,
		StartedAt:  s.StartedAt,
		FinishedAt: s.FinishedAt,
	}
	r := s.Result
	if s.Status != StatusDone || r == nil {
		return v
	}
	v.Verdict = r.Verdict
	v.Message = r.Message
	v.Stdout, v.StdoutEncoding = encodeOutput(r.Stdout)
	v.Stderr, v.StderrEncoding = encodeOutput(r.Stderr)
	v.ExitCode = r.ExitCode
	v.Signal = r.Signal
	// A program that failed to compile never ran, so it has no run time.
	if r.Verdict != VerdictCompileError {
		v.TimeMS = &r.TimeMS
	}
	v.MemoryKB = r.MemoryKB
	v.StdoutTruncated = r.StdoutTruncated
	v.StderrTruncated = r.StderrTruncated
	if r.CompileOutput != nil || r.CompileTimeMS > 0 {
		v.CompileOutput, v.CompileEncoding = encodeOutput(r.CompileOutput)
		v.CompileTimeMS = &r.CompileTimeMS
	}
	v.Worker = r.Worker
	v.Stages = r.Stages
	return v
}

// encodeOutput returns the bytes as a string when they are valid UTF-8 and
// as base64 with the encoding name otherwise. NUL and escape bytes are valid
// UTF-8, and encoding/json escapes them.
func encodeOutput(b []byte) (*string, string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, EncodingBase64
}
