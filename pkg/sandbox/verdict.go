package sandbox

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runbox/runbox/pkg/submission"
)

// outcome is the runner's record of how one step ended.
type outcome struct {
	ExitCode int
	// TimedOut is set when the runner killed the step at its time limit.
	TimedOut bool
	// OutputExceeded is set when the runner killed the step because stdout
	// or stderr passed its cap.
	OutputExceeded bool
	// CPUTimeExceeded is set when the runner killed the step because the
	// container's CPU usage passed the limit.
	CPUTimeExceeded bool
	// OOMKilled is the engine's report that the kernel's OOM killer ended a
	// process of the container.
	OOMKilled bool
}

// signalFromExitCode returns the signal that ended the program when the
// exit code has the 128+N form the engine reports for a signalled process.
// A program that calls exit(128+N) itself is indistinguishable.
func signalFromExitCode(code int) (syscall.Signal, bool) {
	if code <= 128 || code > 128+64 {
		return 0, false
	}
	return syscall.Signal(code - 128), true
}

func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return fmt.Sprintf("signal %d", int(sig))
}

const cpuTimeMessage = "the program used more CPU time than its limit and was stopped"

// runVerdict maps the outcome of the run step to a verdict, a message and
// the signal name. The runner's own kills come first, since they also
// make the process exit with SIGKILL.
func runVerdict(o outcome, timeLimit time.Duration, memoryMB, outputLimit int) (submission.Verdict, string, string) {
	switch {
	case o.OutputExceeded:
		return submission.VerdictOutputLimitExceeded,
			fmt.Sprintf("the program wrote more than %d bytes to stdout or stderr and was stopped", outputLimit), ""
	case o.CPUTimeExceeded:
		return submission.VerdictTimeLimitExceeded, cpuTimeMessage, ""
	case o.TimedOut:
		return submission.VerdictTimeLimitExceeded,
			fmt.Sprintf("the program ran longer than the time limit of %s and was stopped", timeLimit), ""
	case o.OOMKilled:
		return submission.VerdictMemoryLimitExceeded,
			fmt.Sprintf("the program used more than the memory limit of %d MiB and was killed by the kernel", memoryMB), "SIGKILL"
	case o.ExitCode == 0:
		return submission.VerdictOK, "", ""
	}
	if sig, ok := signalFromExitCode(o.ExitCode); ok {
		name := signalName(sig)
		if sig == unix.SIGXCPU {
			return submission.VerdictTimeLimitExceeded, cpuTimeMessage, name
		}
		return submission.VerdictRuntimeError,
			fmt.Sprintf("the program was terminated by %s", name), name
	}
	return submission.VerdictRuntimeError,
		fmt.Sprintf("the program exited with status %d", o.ExitCode), ""
}

// compileVerdict returns a compile error message for a failed compile step,
// or "" when the compile step succeeded.
func compileVerdict(o outcome, timeLimit time.Duration, memoryMB int) string {
	switch {
	case o.TimedOut:
		return fmt.Sprintf("compilation took longer than the limit of %s and was stopped", timeLimit)
	case o.OOMKilled:
		return fmt.Sprintf("the compiler used more than its memory limit of %d MiB", memoryMB)
	case o.OutputExceeded:
		return "the compiler wrote more output than the limit and was stopped"
	case o.ExitCode != 0:
		return fmt.Sprintf("compilation failed with exit status %d", o.ExitCode)
	}
	return ""
}
