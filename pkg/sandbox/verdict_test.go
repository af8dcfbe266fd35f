package sandbox

import (
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/pkg/submission"
)

func TestRunVerdict(t *testing.T) {
	tests := []struct {
		name        string
		outcome     outcome
		wantVerdict submission.Verdict
		wantSignal  string
		wantInMsg   string
	}{
		{"clean exit", outcome{ExitCode: 0}, submission.VerdictOK, "", ""},
		{"exit status", outcome{ExitCode: 3}, submission.VerdictRuntimeError, "", "status 3"},
		{"segfault", outcome{ExitCode: 139}, submission.VerdictRuntimeError, "SIGSEGV", "SIGSEGV"},
		{"divide by zero", outcome{ExitCode: 136}, submission.VerdictRuntimeError, "SIGFPE", "SIGFPE"},
		{"abort", outcome{ExitCode: 134}, submission.VerdictRuntimeError, "SIGABRT", "SIGABRT"},
		{"cpu limit", outcome{ExitCode: 152}, submission.VerdictTimeLimitExceeded, "SIGXCPU", "CPU time"},
		{"cpu usage read from the engine", outcome{ExitCode: 137, CPUTimeExceeded: true}, submission.VerdictTimeLimitExceeded, "", "CPU time"},
		{"killed by runner at time limit", outcome{ExitCode: 137, TimedOut: true}, submission.VerdictTimeLimitExceeded, "", "2s"},
		{"oom", outcome{ExitCode: 137, OOMKilled: true}, submission.VerdictMemoryLimitExceeded, "SIGKILL", "64 MiB"},
		{"sigkill without oom", outcome{ExitCode: 137}, submission.VerdictRuntimeError, "SIGKILL", "SIGKILL"},
		{"output cap wins over timer", outcome{ExitCode: 137, OutputExceeded: true, TimedOut: true}, submission.VerdictOutputLimitExceeded, "", "1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict, message, signal := runVerdict(tt.outcome, 2*time.Second, 64, 1024)
			if verdict != tt.wantVerdict {
				t.Errorf("verdict = %s, want %s", verdict, tt.wantVerdict)
			}
			if signal != tt.wantSignal {
				t.Errorf("signal = %q, want %q", signal, tt.wantSignal)
			}
			if !strings.Contains(message, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", message, tt.wantInMsg)
			}
		})
	}
}

func TestCompileVerdict(t *testing.T) {
	if msg := compileVerdict(outcome{ExitCode: 0}, time.Second, 512); msg != "" {
		t.Errorf("successful compile gave %q, want no message", msg)
	}
	if msg := compileVerdict(outcome{ExitCode: 1}, time.Second, 512); !strings.Contains(msg, "status 1") {
		t.Errorf("failed compile message %q does not give the status", msg)
	}
	if msg := compileVerdict(outcome{ExitCode: 137, TimedOut: true}, 15*time.Second, 512); !strings.Contains(msg, "15s") {
		t.Errorf("compile timeout message %q does not name the limit", msg)
	}
	if msg := compileVerdict(outcome{ExitCode: 137, OOMKilled: true}, time.Second, 512); !strings.Contains(msg, "512 MiB") {
		t.Errorf("compile OOM message %q does not name the limit", msg)
	}
}

func TestCappedBuffer(t *testing.T) {
	fired := 0
	b := newCappedBuffer(5, func() { fired++ })
	b.Write([]byte("abc"))
	b.Write([]byte("de"))
	if data, over := b.Bytes(); string(data) != "abcde" || over {
		t.Fatalf("at the cap: %q overflowed=%t, want abcde and false", data, over)
	}
	b.Write([]byte("f"))
	b.Write([]byte("gh"))
	data, over := b.Bytes()
	if string(data) != "abcde" || !over {
		t.Errorf("past the cap: %q overflowed=%t, want abcde and true", data, over)
	}
	if fired != 1 {
		t.Errorf("overflow callback ran %d times, want once", fired)
	}
}
