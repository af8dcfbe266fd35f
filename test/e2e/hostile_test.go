package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/submission"
)

// hostileCase is a program that attacks the sandbox, with the verdict it
// must get and a check of what it printed.
type hostileCase struct {
	name     string
	language string
	source   string
	stdin    string
	limits   *submission.RequestLimits
	// verdicts lists the acceptable verdicts.
	verdicts []submission.Verdict
	// runscVerdicts lists the acceptable verdicts under runsc, when they
	// differ from verdicts.
	runscVerdicts []submission.Verdict
	check         func(t *testing.T, view submission.View)
}

func intp(v int) *int { return &v }

func contains(want ...string) func(t *testing.T, view submission.View) {
	return func(t *testing.T, view submission.View) {
		t.Helper()
		out := text(view.Stdout) + text(view.Stderr) + text(view.CompileOutput)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output does not contain %q:\n%s", w, out)
			}
		}
	}
}

var hostileCases = []hostileCase{
	// Two ordinary programs first: a stronger runtime must not break
	// threads or a few dozen processes within the default limits.
	{
		name: "python starts threads", language: "python",
		source:   "import threading\nthreads = [threading.Thread(target=lambda: None) for _ in range(8)]\nfor t in threads: t.start()\nfor t in threads: t.join()\nprint(len(threads), 'threads')\n",
		verdicts: []submission.Verdict{submission.VerdictOK},
		check: func(t *testing.T, view submission.View) {
			if got := text(view.Stdout); got != "8 threads\n" {
				t.Errorf("stdout = %q, want %q", got, "8 threads\n")
			}
		},
	},
	{
		name: "bash runs 40 children", language: "bash",
		source:   "for i in $(seq 1 40); do sleep 0.3 & done\nwait\necho done\n",
		verdicts: []submission.Verdict{submission.VerdictOK},
		check: func(t *testing.T, view submission.View) {
			if got := text(view.Stdout); got != "done\n" {
				t.Errorf("stdout = %q (stderr %q), want %q", got, text(view.Stderr), "done\n")
			}
		},
	},
	{
		name: "python fork loop", language: "python",
		source:   "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
		limits:   &submission.RequestLimits{TimeMS: intp(3000)},
		verdicts: []submission.Verdict{submission.VerdictTimeLimitExceeded, submission.VerdictRuntimeError},
		// gVisor uses a few MiB of its own per process, so under runsc the
		// 128 Python processes of the default limit can exceed the 256 MiB
		// memory limit, and the cgroup's OOM kill ends the run.
		runscVerdicts: []submission.Verdict{submission.VerdictTimeLimitExceeded, submission.VerdictRuntimeError,
			submission.VerdictMemoryLimitExceeded},
	},
	{
		name: "bash fork bomb", language: "bash",
		source:   ":(){ :|:& };:\n",
		limits:   &submission.RequestLimits{TimeMS: intp(3000)},
		verdicts: []submission.Verdict{submission.VerdictTimeLimitExceeded, submission.VerdictRuntimeError},
	},
	{
		name: "c touches 4 GiB", language: "c",
		source: `#include <stdlib.h>
#include <string.h>
int main(void) {
    size_t size = (size_t)4 << 30;
    volatile char *p = malloc(size);
    if (!p) return 2;
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;
    return 0;
}
`,
		limits:   &submission.RequestLimits{MemoryMB: intp(128)},
		verdicts: []submission.Verdict{submission.VerdictMemoryLimitExceeded},
	},
	{
		name: "python prints forever", language: "python",
		source:   "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n",
		verdicts: []submission.Verdict{submission.VerdictOutputLimitExceeded},
		check: func(t *testing.T, view submission.View) {
			if !view.StdoutTruncated {
				t.Error("stdout_truncated = false, want true")
			}
			if got := len(text(view.Stdout)); got != 64<<10 {
				t.Errorf("kept %d bytes of stdout, want the 64 KiB cap", got)
			}
		},
	},
	{
		name: "python prints exactly the cap", language: "python",
		source:   "import sys\nsys.stdout.write('z' * 1024)\n",
		limits:   &submission.RequestLimits{OutputKB: intp(1)},
		verdicts: []submission.Verdict{submission.VerdictOK},
		check: func(t *testing.T, view submission.View) {
			if got := len(text(view.Stdout)); got != 1024 || view.StdoutTruncated {
				t.Errorf("stdout has %d bytes, truncated=%t; want all 1024", got, view.StdoutTruncated)
			}
		},
	},
	{
		name: "python prints one byte over the cap", language: "python",
		source:   "import sys\nsys.stdout.write('z' * 1025)\n",
		limits:   &submission.RequestLimits{OutputKB: intp(1)},
		verdicts: []submission.Verdict{submission.VerdictOutputLimitExceeded},
		check: func(t *testing.T, view submission.View) {
			if got := len(text(view.Stdout)); got != 1024 || !view.StdoutTruncated {
				t.Errorf("stdout has %d bytes, truncated=%t; want 1024 and true", got, view.StdoutTruncated)
			}
		},
	},
	{
		name: "python sleeps after unflushed output", language: "python",
		source:   "import time\nprint('partial result')\ntime.sleep(60)\n",
		limits:   &submission.RequestLimits{TimeMS: intp(1000)},
		verdicts: []submission.Verdict{submission.VerdictTimeLimitExceeded},
		check:    contains("partial result"),
	},
	{
		name: "c ignores SIGTERM", language: "c",
		source: `#include <signal.h>
#include <unistd.h>
int main(void) {
    signal(SIGTERM, SIG_IGN);
    sleep(3600);
    return 0;
}
`,
		limits:   &submission.RequestLimits{TimeMS: intp(1000)},
		verdicts: []submission.Verdict{submission.VerdictTimeLimitExceeded},
		check: func(t *testing.T, view submission.View) {
			if view.TimeMS == nil || *view.TimeMS > 2000 {
				t.Errorf("time_ms = %v, want within a second of the 1000 ms limit", deref(view.TimeMS))
			}
		},
	},
	{
		name: "python writes a 10 GB file", language: "python",
		source: `chunk = b'\0' * (1 << 20)
with open('big.bin', 'wb') as f:
    for _ in range(10 * 1024):
        f.write(chunk)
`,
		verdicts: []submission.Verdict{submission.VerdictRuntimeError},
		check:    contains("File too large"),
	},
	{
		name: "c calls privileged system calls", language: "c",
		source: `#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <netinet/in.h>
static void report(const char *name, int rc) {
    printf("%s: %s\n", name, rc == -1 ? strerror(errno) : "succeeded");
}
int main(void) {
    printf("uid: %d\n", (int)getuid());
    report("setuid", setuid(0));
    report("mount", mount("none", "/mnt", "tmpfs", 0, NULL));
    report("unshare", unshare(CLONE_NEWUSER | CLONE_NEWNS));
    report("ptrace", (int)ptrace(PTRACE_ATTACH, 1, NULL, NULL));
    report("raw socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    return 0;
}
`,
		verdicts: []submission.Verdict{submission.VerdictOK},
		check: func(t *testing.T, view submission.View) {
			out := text(view.Stdout)
			if strings.Contains(out, "uid: 0\n") {
				t.Errorf("program ran as root:\n%s", out)
			}
			if strings.Contains(out, "succeeded") {
				t.Errorf("a privileged call succeeded:\n%s", out)
			}
			for _, call := range []string{"setuid", "mount", "unshare", "ptrace", "raw socket"} {
				if !strings.Contains(out, call+": Operation not permitted") &&
					!strings.Contains(out, call+": Permission denied") {
					t.Errorf("%s did not fail with a permission error:\n%s", call, out)
				}
			}
		},
	},
	{
		name: "c includes /etc/shadow", language: "c",
		source:   "#include \"/etc/shadow\"\nint main(void) { return 0; }\n",
		verdicts: []submission.Verdict{submission.VerdictCompileError},
		check: func(t *testing.T, view submission.View) {
			if strings.Contains(text(view.CompileOutput), "root:") {
				t.Errorf("compile output shows shadow entries:\n%s", text(view.CompileOutput))
			}
		},
	},
	{
		name: "c includes /dev/zero", language: "c",
		source:   "#include \"/dev/zero\"\nint main(void) { return 0; }\n",
		verdicts: []submission.Verdict{submission.VerdictCompileError},
	},
	{
		name: "cpp template recursion compiles forever", language: "cpp",
		source: `template <int N, typename... Ts> struct Grow {
    using type = typename Grow<N - 1, Ts..., Ts...>::type;
};
template <typename... Ts> struct Grow<0, Ts...> { using type = int; };
int main() { Grow<40, int>::type x = 0; return x; }
`,
		verdicts: []submission.Verdict{submission.VerdictCompileError},
	},
	{
		name: "c dereferences NULL", language: "c",
		source:   "int main(void) { volatile int *p = 0; return *p; }\n",
		verdicts: []submission.Verdict{submission.VerdictRuntimeError},
		check: func(t *testing.T, view submission.View) {
			if view.Signal != "SIGSEGV" {
				t.Errorf("signal = %q, want SIGSEGV", view.Signal)
			}
		},
	},
	{
		name: "c divides by zero", language: "c",
		source:   "int main(void) { volatile int seven = 7, zero = 0; return seven / zero; }\n",
		verdicts: []submission.Verdict{submission.VerdictRuntimeError},
		check: func(t *testing.T, view submission.View) {
			if view.Signal != "SIGFPE" {
				t.Errorf("signal = %q, want SIGFPE", view.Signal)
			}
		},
	},
	{
		name: "python burns CPU", language: "python",
		source:   "while True:\n    pass\n",
		limits:   &submission.RequestLimits{TimeMS: intp(5000), CPUTimeMS: intp(1000)},
		verdicts: []submission.Verdict{submission.VerdictTimeLimitExceeded},
		check: func(t *testing.T, view submission.View) {
			// Under runc the kernel sends SIGXCPU. Under runsc, which
			// ignores RLIMIT_CPU, the worker stops the run from the
			// container's CPU usage, so no signal is named.
			if view.Signal != "SIGXCPU" && view.Signal != "" {
				t.Errorf("signal = %q, want SIGXCPU from the CPU time limit or none", view.Signal)
			}
			if !strings.Contains(view.Message, "CPU time") {
				t.Errorf("message %q does not name the CPU time limit", view.Message)
			}
			if view.TimeMS == nil {
				t.Error("time_ms is missing")
			} else if *view.TimeMS >= 4000 {
				t.Errorf("time_ms = %d, want the run stopped near the 1 s CPU limit, not at the 5 s wall limit", *view.TimeMS)
			}
		},
	},
}

// TestHostilePrograms runs every hostile program through the real stack and
// checks its verdict, that the worker still serves an ordinary submission
// afterwards, and (in startStack) that no container is left.
func TestHostilePrograms(t *testing.T) {
	for _, runtime := range sandboxRuntimes(t) {
		t.Run(runtimeName(runtime), func(t *testing.T) {
			s := startStack(t, stackOptions{Env: []string{"RUNBOX_RUNTIME=" + runtime}})
			runHostileCases(t, s, runtime)
		})
	}
}

func runHostileCases(t *testing.T, s *stack, runtime string) {
	passwd := fileHash(t, "/etc/passwd")
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			view := s.run(t, submission.Request{Language: tc.language, Source: tc.source,
				Stdin: tc.stdin, Limits: tc.limits})
			verdicts := tc.verdicts
			if runtime == "runsc" && tc.runscVerdicts != nil {
				verdicts = tc.runscVerdicts
			}
			if !verdictIn(view.Verdict, verdicts) {
				t.Errorf("verdict = %s (%s), want one of %v\nstdout: %.300s\nstderr: %.300s\ncompile: %.300s",
					view.Verdict, view.Message, verdicts, text(view.Stdout), text(view.Stderr),
					text(view.CompileOutput))
			}
			if tc.check != nil {
				tc.check(t, view)
			}
			s.checkStillServes(t)
		})
	}
	if fileHash(t, "/etc/passwd") != passwd {
		t.Error("/etc/passwd of the host changed")
	}
}

func TestMarkerFilesDoNotSurvive(t *testing.T) {
	s := startStack(t, stackOptions{})
	src := `import os
for path in ['/tmp/runbox-marker', '/dev/shm/runbox-marker', 'runbox-marker']:
    print(path, 'seen' if os.path.exists(path) else 'absent')
    try:
        open(path, 'w').write('x')
    except OSError as e:
        print(path, 'not writable:', e.strerror)
`
	s.run(t, submission.Request{Language: "python", Source: src})
	second := s.run(t, submission.Request{Language: "python", Source: src})
	if out := text(second.Stdout); strings.Contains(out, "seen") {
		t.Errorf("second run saw the first run's files:\n%s", out)
	}
}

func TestNetworkIsUnreachable(t *testing.T) {
	s := startStack(t, stackOptions{})
	rdb := goredis.NewClient(&goredis.Options{Addr: strings.TrimPrefix(strings.TrimSuffix(s.Redis.URL, "/0"), "redis://")})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "runbox-canary", "untouched", 0).Err(); err != nil {
		t.Fatalf("set canary: %v", err)
	}
	// 198.51.100.1 is a documentation address (RFC 5737); with no network
	// the packet cannot leave the sandbox either way. 172.17.0.1 is the
	// engine's default bridge gateway on this host.
	src := `import socket
targets = [('198.51.100.1', 80), ('172.17.0.1', 6379), ('172.17.0.1', 2375),
           ('172.17.0.1', 2376), ('169.254.169.254', 80), ('127.0.0.1', 6379)]
for host, port in targets:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        s.sendall(b'FLUSHALL\r\n')
        print(host, port, 'connected')
    except OSError as e:
        print(host, port, 'failed:', e)
try:
    print('resolved', socket.gethostbyname('example.com'))
except OSError as e:
    print('resolve failed:', e)
`
	view := s.run(t, submission.Request{Language: "python", Source: src})
	out := text(view.Stdout)
	if strings.Contains(out, "connected") || strings.Contains(out, "resolved") {
		t.Errorf("the sandbox reached the network:\n%s", out)
	}
	if got := strings.Count(out, "failed"); got != 7 {
		t.Errorf("%d of 7 network attempts reported failure:\n%s%s", got, out, text(view.Stderr))
	}
	if v, err := rdb.Get(ctx, "runbox-canary").Result(); err != nil || v != "untouched" {
		t.Errorf("redis canary = %q, %v; want it untouched", v, err)
	}
}

func TestSymlinkedWorkFiles(t *testing.T) {
	s := startStack(t, stackOptions{})
	before := fileHash(t, "/etc/passwd")
	src := `ln -sf /etc/passwd main.sh
ln -sf /etc/passwd stdout
ln -sf /proc/1/root/etc/shadow stolen
echo planted
`
	view := s.run(t, submission.Request{Language: "bash", Source: src})
	if view.Verdict != submission.VerdictOK || text(view.Stdout) != "planted\n" {
		t.Errorf("verdict %s, stdout %q; want ok and planted", view.Verdict, text(view.Stdout))
	}
	if fileHash(t, "/etc/passwd") != before {
		t.Error("/etc/passwd of the host changed")
	}
	s.checkStillServes(t)
}

func TestArgumentsAreLiteral(t *testing.T) {
	s := startStack(t, stackOptions{})
	args := []string{"; rm -rf / $(id)", "`whoami`", "two words", "$HOME", ""}
	view := s.run(t, submission.Request{Language: "python",
		Source: "import sys\nfor a in sys.argv[1:]:\n    print(repr(a))\n", Args: args})
	want := "'; rm -rf / $(id)'\n'`whoami`'\n'two words'\n'$HOME'\n''\n"
	if got := text(view.Stdout); got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestBinaryOutputIsLossless(t *testing.T) {
	s := startStack(t, stackOptions{})
	view := s.run(t, submission.Request{Language: "python",
		Source: "import sys\nsys.stdout.buffer.write(bytes(range(256)))\nsys.stderr.write('esc \\x1b nul \\x00')\n"})
	if view.StdoutEncoding != submission.EncodingBase64 {
		t.Fatalf("stdout_encoding = %q, want base64 for bytes that are not UTF-8", view.StdoutEncoding)
	}
	decoded, err := decodeBase64(text(view.Stdout))
	if err != nil || len(decoded) != 256 || decoded[255] != 255 {
		t.Errorf("decoded stdout has %d bytes (%v), want all 256", len(decoded), err)
	}
	if got := text(view.Stderr); got != "esc \x1b nul \x00" {
		t.Errorf("stderr = %q, want the escape and NUL bytes kept", got)
	}
}

// sandboxRuntimes returns the runtimes the hostile suite runs under: the
// engine's default, and gVisor's runsc whenever the engine has it
// registered (`make setup-test` does that). RUNBOX_TEST_RUNSC=0 leaves
// runsc out, and RUNBOX_TEST_RUNSC=1 fails the test when it is missing.
func sandboxRuntimes(t *testing.T) []string {
	t.Helper()
	runtimes := []string{""}
	want := os.Getenv("RUNBOX_TEST_RUNSC")
	if want == "0" {
		return runtimes
	}
	info, err := testenv.Docker(t).Info(context.Background())
	if err != nil {
		t.Fatalf("read docker info: %v", err)
	}
	if _, ok := info.Runtimes["runsc"]; !ok {
		if want == "1" {
			t.Fatal("RUNBOX_TEST_RUNSC=1 but runsc is not registered with the engine")
		}
		t.Log("runsc is not registered with the engine, so the hostile suite runs under the default runtime only")
		return runtimes
	}
	return append(runtimes, "runsc")
}

func runtimeName(runtime string) string {
	if runtime == "" {
		return "default"
	}
	return runtime
}

func verdictIn(v submission.Verdict, list []submission.Verdict) bool {
	for _, want := range list {
		if v == want {
			return true
		}
	}
	return false
}

// checkStillServes runs an ordinary program to show the worker survived.
func (s *stack) checkStillServes(t *testing.T) {
	t.Helper()
	view := s.run(t, submission.Request{Language: "python", Source: "print('still here')\n"})
	if view.Verdict != submission.VerdictOK || text(view.Stdout) != "still here\n" {
		t.Errorf("follow-up run: verdict %s, stdout %q; want ok and still here",
			view.Verdict, text(view.Stdout))
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sha256.Sum256(data)
}

func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(s)
}
