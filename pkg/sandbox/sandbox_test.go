package sandbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/sandbox"
	"github.com/runbox/runbox/pkg/submission"
)

// newRunner returns a runner on the local Docker engine and checks after
// the test that no sandbox container is left.
func newRunner(t *testing.T) *sandbox.Runner {
	t.Helper()
	return newRunnerWith(t, sandbox.Config{})
}

func newRunnerWith(t *testing.T, config sandbox.Config) *sandbox.Runner {
	t.Helper()
	docker := testenv.Docker(t)
	worker := fmt.Sprintf("sandbox-test-%d", time.Now().UnixNano())
	config.WorkerName = worker
	runner := sandbox.NewRunner(docker, config, nil)
	t.Cleanup(func() {
		runner.Close()
		n, err := runner.CountContainers(context.Background(), worker)
		if err != nil {
			t.Errorf("count sandbox containers: %v", err)
		}
		if n != 0 {
			t.Errorf("%d sandbox containers left after the test", n)
		}
	})
	return runner
}

func language(t *testing.T, id string) *catalog.Language {
	t.Helper()
	lang, ok := catalog.Embedded().Get(id)
	if !ok {
		t.Fatalf("language %q is not in the catalogue", id)
	}
	return lang
}

func run(t *testing.T, runner *sandbox.Runner, job sandbox.Job) *submission.Result {
	t.Helper()
	if job.ID == "" {
		job.ID = "test-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	}
	if job.Limits == (submission.Limits{}) {
		job.Limits = submission.DefaultLimits
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	result, err := runner.Run(ctx, job)
	if err != nil {
		t.Fatalf("run %s: platform error: %v", job.Language.ID, err)
	}
	return result
}

func TestRunPythonHello(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "python"), Source: "print('hello')\n"})
	if res.Verdict != submission.VerdictOK {
		t.Fatalf("verdict = %s (%s), stderr %q; want ok", res.Verdict, res.Message, res.Stderr)
	}
	if got := string(res.Stdout); got != "hello\n" {
		t.Errorf("stdout = %q, want %q", got, "hello\n")
	}
	if res.ExitCode == nil || *res.ExitCode != 0 {
		t.Errorf("exit code = %v, want 0", res.ExitCode)
	}
}

func TestRunStdinAndArgs(t *testing.T) {
	runner := newRunner(t)
	src := "import sys\nprint(sys.stdin.read(), end='')\nprint(sys.argv[1:])\n"
	res := run(t, runner, sandbox.Job{
		Language: language(t, "python"), Source: src,
		Stdin: "line one\nline two\n", Args: []string{"; rm -rf / $(id)", "`x`"},
	})
	want := "line one\nline two\n['; rm -rf / $(id)', '`x`']\n"
	if got := string(res.Stdout); got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestRunNonZeroExit(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "python"),
		Source: "import sys\nprint('bye')\nsys.exit(3)\n"})
	if res.Verdict != submission.VerdictRuntimeError {
		t.Errorf("verdict = %s, want runtime_error", res.Verdict)
	}
	if res.ExitCode == nil || *res.ExitCode != 3 {
		t.Errorf("exit code = %v, want 3", res.ExitCode)
	}
}

func TestRunTimeLimit(t *testing.T) {
	runner := newRunner(t)
	start := time.Now()
	limits := submission.DefaultLimits
	limits.TimeMS = 1000
	res := run(t, runner, sandbox.Job{Language: language(t, "python"), Limits: limits,
		Source: "import time\nprint('before', flush=True)\ntime.sleep(30)\n"})
	if res.Verdict != submission.VerdictTimeLimitExceeded {
		t.Errorf("verdict = %s, want time_limit_exceeded", res.Verdict)
	}
	if got := string(res.Stdout); got != "before\n" {
		t.Errorf("stdout = %q, want the output before the limit", got)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("run took %s, want about the 1 s limit", elapsed)
	}
}

func TestRunCompileError(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "c"), Source: "int main( { return 0; }\n"})
	if res.Verdict != submission.VerdictCompileError {
		t.Fatalf("verdict = %s, want compile_error", res.Verdict)
	}
	if !strings.Contains(string(res.CompileOutput), "error") {
		t.Errorf("compile output %q does not contain the compiler's error", res.CompileOutput)
	}
}

func TestRunSegfaultSignal(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "c"),
		Source: "int main(void) { volatile int *p = 0; return *p; }\n"})
	if res.Verdict != submission.VerdictRuntimeError {
		t.Errorf("verdict = %s, want runtime_error", res.Verdict)
	}
	if res.Signal != "SIGSEGV" {
		t.Errorf("signal = %q, want SIGSEGV", res.Signal)
	}
}

func TestRunMemoryLimit(t *testing.T) {
	runner := newRunner(t)
	src := "x = bytearray(512 * 1024 * 1024)\nprint(len(x))\n"
	limits := submission.DefaultLimits
	limits.MemoryMB = 64
	res := run(t, runner, sandbox.Job{Language: language(t, "python"), Source: src, Limits: limits})
	if res.Verdict != submission.VerdictMemoryLimitExceeded {
		t.Errorf("verdict = %s (%s), want memory_limit_exceeded", res.Verdict, res.Message)
	}
}

func TestRunOutputLimit(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "python"),
		Source: "while True:\n    print('x' * 1000)\n"})
	if res.Verdict != submission.VerdictOutputLimitExceeded {
		t.Errorf("verdict = %s (%s, stderr %q), want output_limit_exceeded", res.Verdict, res.Message, res.Stderr)
	}
	if !res.StdoutTruncated {
		t.Error("stdout_truncated is false, want true")
	}
	if want := submission.DefaultLimits.OutputKB << 10; len(res.Stdout) != want {
		t.Errorf("kept %d bytes of stdout, want the cap of %d", len(res.Stdout), want)
	}
}

func TestPoolUsesEachContainerOnce(t *testing.T) {
	runner := newRunnerWith(t, sandbox.Config{PoolSize: 1})
	src := `import os, socket
print(socket.gethostname())
print(sorted(os.listdir('/tmp')), sorted(os.listdir('.')))
open('/tmp/marker', 'w').write('x')
open('marker', 'w').write('x')
`
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		res := run(t, runner, sandbox.Job{Language: language(t, "python"), Source: src})
		lines := strings.Split(string(res.Stdout), "\n")
		if res.Verdict != submission.VerdictOK || len(lines) < 2 {
			t.Fatalf("run %d: verdict %s, stdout %q, stderr %q", i, res.Verdict, res.Stdout, res.Stderr)
		}
		if seen[lines[0]] {
			t.Errorf("run %d reused container %s", i, lines[0])
		}
		seen[lines[0]] = true
		if want := "[] ['main.py']"; lines[1] != want {
			t.Errorf("run %d saw files %s, want %s", i, lines[1], want)
		}
		// Give the pool time to refill, so later runs take a pooled container.
		time.Sleep(300 * time.Millisecond)
	}
}

func TestPoolAppliesJobLimits(t *testing.T) {
	runner := newRunnerWith(t, sandbox.Config{PoolSize: 1})
	lang := language(t, "python")
	run(t, runner, sandbox.Job{Language: lang, Source: "print(1)\n"})
	time.Sleep(500 * time.Millisecond)
	limits := submission.DefaultLimits
	limits.MemoryMB = 32
	res := run(t, runner, sandbox.Job{Language: lang, Limits: limits,
		Source: "x = bytearray(128 * 1024 * 1024)\nprint(len(x))\n"})
	if res.Verdict != submission.VerdictMemoryLimitExceeded {
		t.Errorf("verdict = %s (%s), want memory_limit_exceeded under a 32 MiB limit set on a pooled container",
			res.Verdict, res.Message)
	}
}

func TestCompileUsesItsOwnLimits(t *testing.T) {
	runner := newRunner(t)
	limits := submission.DefaultLimits
	limits.Processes = 8
	res := run(t, runner, sandbox.Job{Language: language(t, "go"), Limits: limits,
		Source: "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"built\") }\n"})
	if res.Verdict != submission.VerdictOK {
		t.Fatalf("verdict = %s (%s), compile output %q; want the compiler to ignore the program's process limit",
			res.Verdict, res.Message, res.CompileOutput)
	}
	if got := string(res.Stdout); got != "built\n" {
		t.Errorf("stdout = %q, want %q", got, "built\n")
	}
}

func TestCompileOutOfMemoryIsNamed(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "c"),
		Source: "#include \"/dev/zero\"\nint main(void) { return 0; }\n"})
	if res.Verdict != submission.VerdictCompileError {
		t.Fatalf("verdict = %s (%s), want compile_error", res.Verdict, res.Message)
	}
	if !strings.Contains(res.Message, "memory limit") && !strings.Contains(res.Message, "took longer") {
		t.Errorf("message %q names neither the memory nor the time limit", res.Message)
	}
}

func TestRunWaitsForBackgroundChildren(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "bash"),
		Source: "(sleep 0.3; echo late) &\necho early\n"})
	if res.Verdict != submission.VerdictOK {
		t.Fatalf("verdict = %s (%s), want ok", res.Verdict, res.Message)
	}
	if got := string(res.Stdout); got != "early\nlate\n" {
		t.Errorf("stdout = %q, want the background child's output too", got)
	}
}

func TestRunLeftoverChildTimesOut(t *testing.T) {
	runner := newRunner(t)
	limits := submission.DefaultLimits
	limits.TimeMS = 1000
	start := time.Now()
	res := run(t, runner, sandbox.Job{Language: language(t, "bash"), Limits: limits,
		Source: "sleep 60 &\necho started\n"})
	if res.Verdict != submission.VerdictTimeLimitExceeded {
		t.Errorf("verdict = %s (%s), want time_limit_exceeded", res.Verdict, res.Message)
	}
	if got := string(res.Stdout); got != "started\n" {
		t.Errorf("stdout = %q, want %q", got, "started\n")
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("run took %s, want about the 1 s limit", elapsed)
	}
}

func TestCompileOutputStaysApart(t *testing.T) {
	runner := newRunner(t)
	src := "#include <stdio.h>\nint main(void) { int unused; printf(\"out\\n\"); fprintf(stderr, \"err\\n\"); return 0; }\n"
	res := run(t, runner, sandbox.Job{Language: language(t, "c"), Source: src})
	if res.Verdict != submission.VerdictOK {
		t.Fatalf("verdict = %s (%s), compile output %q", res.Verdict, res.Message, res.CompileOutput)
	}
	if got := string(res.Stdout); got != "out\n" {
		t.Errorf("stdout = %q, want %q", got, "out\n")
	}
	if got := string(res.Stderr); got != "err\n" {
		t.Errorf("stderr = %q, want %q", got, "err\n")
	}
	if strings.Contains(string(res.CompileOutput), "out") {
		t.Errorf("compile output %q contains the program's output", res.CompileOutput)
	}
}

func TestCompileReadsNoStdin(t *testing.T) {
	runner := newRunner(t)
	src := "#include <stdio.h>\nint main(void) { char b[64]; if (fgets(b, sizeof b, stdin)) fputs(b, stdout); return 0; }\n"
	res := run(t, runner, sandbox.Job{Language: language(t, "c"), Source: src, Stdin: "go\nsecond line\n"})
	if got := string(res.Stdout); got != "go\n" {
		t.Errorf("stdout = %q, want the first stdin line %q", got, "go\n")
	}
}

func TestRunReportsPeakMemory(t *testing.T) {
	runner := newRunner(t)
	small := run(t, runner, sandbox.Job{Language: language(t, "python"), Source: "print(1)\n"})
	big := run(t, runner, sandbox.Job{Language: language(t, "python"),
		Source: "x = bytearray(100 * 1024 * 1024)\nprint(len(x))\n"})
	if small.MemoryKB == nil {
		t.Fatal("hello world has no memory_kb, want it reported")
	}
	if big.MemoryKB == nil {
		t.Fatal("the 100 MiB bytearray run has no memory_kb, want it reported")
	}
	if *small.MemoryKB <= 0 || *small.MemoryKB > 64<<10 {
		t.Errorf("hello world used %d KiB, want between 0 and 64 MiB", *small.MemoryKB)
	}
	if *big.MemoryKB < 100<<10 {
		t.Errorf("a 100 MiB bytearray used %d KiB, want at least 100 MiB", *big.MemoryKB)
	}
	if len(big.Stderr) != 0 {
		t.Errorf("stderr = %q, want the memory trailer removed", big.Stderr)
	}
}

func TestCompiledRunReportsPeakMemory(t *testing.T) {
	runner := newRunner(t)
	src := "#include <stdlib.h>\nint main(void) { size_t n = 200u << 20; volatile char *p = malloc(n);\n" +
		"for (size_t i = 0; i < n; i += 4096) p[i] = 1; return 0; }\n"
	res := run(t, runner, sandbox.Job{Language: language(t, "c"), Source: src})
	if res.Verdict != submission.VerdictOK {
		t.Fatalf("verdict = %s (%s)", res.Verdict, res.Message)
	}
	if res.MemoryKB == nil {
		t.Fatalf("memory_kb is missing, want it reported (stderr %q)", res.Stderr)
	}
	if *res.MemoryKB < 200<<10 {
		t.Errorf("memory_kb = %d, want at least 200 MiB (stderr %q)", *res.MemoryKB, res.Stderr)
	}
}

func TestPoolSkipsStoppedContainer(t *testing.T) {
	runner := newRunnerWith(t, sandbox.Config{PoolSize: 1})
	lang := language(t, "python")
	run(t, runner, sandbox.Job{Language: lang, Source: "print(1)\n"})

	docker := testenv.Docker(t)
	pooled := testenv.WaitForPoolContainers(t, docker, runner.Config().WorkerName, "python")
	// An engine restart also leaves the pool with stopped containers.
	if err := docker.ContainerKill(context.Background(), pooled[0].ID, "KILL"); err != nil {
		t.Fatalf("kill the pool container: %v", err)
	}
	time.Sleep(200 * time.Millisecond)

	res := run(t, runner, sandbox.Job{Language: lang, Source: "print('fresh')\n"})
	if res.Verdict != submission.VerdictOK {
		t.Errorf("verdict = %s (%s), want ok", res.Verdict, res.Message)
	}
	if got := string(res.Stdout); got != "fresh\n" {
		t.Errorf("stdout = %q, want %q", got, "fresh\n")
	}
}

func TestRunSignalLeavesStderrClean(t *testing.T) {
	runner := newRunner(t)
	res := run(t, runner, sandbox.Job{Language: language(t, "python"),
		Source: "import os, sys\nprint('before', file=sys.stderr, flush=True)\nos.kill(os.getpid(), 9)\n"})
	if res.Signal != "SIGKILL" {
		t.Errorf("signal = %q (%s), want SIGKILL", res.Signal, res.Message)
	}
	if got := string(res.Stderr); got != "before\n" {
		t.Errorf("stderr = %q, want only the program's own %q", got, "before\n")
	}
}

func TestCheckRuntimeRejectsUnknown(t *testing.T) {
	runner := newRunnerWith(t, sandbox.Config{Runtime: "no-such-runtime"})
	err := runner.CheckRuntime(context.Background())
	if err == nil {
		t.Error("CheckRuntime = nil, want an error for an unregistered runtime")
	} else if !strings.Contains(err.Error(), `"no-such-runtime"`) {
		t.Errorf("CheckRuntime = %v, want an error naming the runtime", err)
	}
	if err := newRunner(t).CheckRuntime(context.Background()); err != nil {
		t.Errorf("CheckRuntime with the engine's default runtime = %v, want nil", err)
	}
}
