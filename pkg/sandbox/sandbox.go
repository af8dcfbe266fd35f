// Package sandbox runs one submission in a fresh, disposable container
// through the Docker Engine API.
//
// # Life of a run
//
// The runner creates a container from the language's image, or takes a
// started one from the pool. The container has no network, a read-only
// root file system and tmpfs mounts at /box (the work directory) and /tmp.
// It drops every capability, sets no-new-privileges, and limits memory
// (without swap) and processes. It runs as user 10001 under the engine's
// init process, and its main process is a shell that reads its job from
// the attached stdin: a short script, the source, and the program's stdin.
// There is no exec step, which saves its engine round trips.
//
// The script copies the source into the language's source file. For a
// compiled language it then runs the compiler with its output on stdout,
// prints a marker line with a per-job random nonce and the compiler's exit
// status, and waits for a "go" line. The worker lowers the container's
// limits to the program's before sending it. Finally the shell sets the
// per-process limits with ulimit, runs the program, waits until no process
// the program started is left, and exits with the program's status.
//
// The source therefore enters through stdin before the program starts, and
// output leaves through the attached streams: the worker never touches a
// file the sandbox could have written. The container stops when the shell
// exits, and it is force-removed on every path.
//
// A time limit or an output cap is enforced by killing the whole container.
// An exit by SIGKILL that the runner did not cause is checked against the
// engine's OOM report.
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/submission"
)

// Labels every sandbox container carries.
const (
	LabelSubmission = "runbox.submission"
	LabelWorker     = "runbox.worker"
)

// Config sets the sandbox limits that requests cannot change. The zero
// value of a field means its default.
type Config struct {
	// Runtime is the OCI runtime, such as "runsc"; empty means the engine's
	// default.
	Runtime string
	// WorkerName is stored in the runbox.worker label.
	WorkerName string
	// User is the uid:gid the program runs as. Default "10001:10001".
	User string
	// WorkDirMB is the size of the /box tmpfs in MiB. Default 128.
	WorkDirMB int
	// TmpMB is the size of the /tmp tmpfs in MiB. Default 64.
	TmpMB int
	// CompileOutputLimit caps the compiler's output in bytes. Default 64 KiB.
	CompileOutputLimit int
	// CompileTime is the compile step's wall-clock limit when the language
	// sets none. Default 15 s.
	CompileTime time.Duration
	// CompileMemoryMB is the compile step's memory limit when the language
	// sets none. Default 512.
	CompileMemoryMB int
	// NanoCPUs caps the CPU share of a container in units of 1e-9 CPUs.
	// Default 1e9, one CPU.
	NanoCPUs int64
	// PoolSize is how many started, unused containers are kept ready per
	// language once the language has been used. Zero turns the pool off.
	PoolSize int
	// PoolIdleTimeout removes a language's ready containers after this long
	// without a submission. Default 10 minutes.
	PoolIdleTimeout time.Duration
}

// Defaults of Config, as documented on its fields.
const (
	DefaultUser               = "10001:10001"
	DefaultWorkDirMB          = 128
	DefaultTmpMB              = 64
	DefaultCompileOutputLimit = 64 << 10
	DefaultCompileTime        = 15 * time.Second
	DefaultCompileMemoryMB    = 512
	DefaultNanoCPUs           = 1_000_000_000
	DefaultPoolIdleTimeout    = 10 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.User == "" {
		c.User = DefaultUser
	}
	if c.WorkDirMB == 0 {
		c.WorkDirMB = DefaultWorkDirMB
	}
	if c.TmpMB == 0 {
		c.TmpMB = DefaultTmpMB
	}
	if c.CompileOutputLimit == 0 {
		c.CompileOutputLimit = DefaultCompileOutputLimit
	}
	if c.CompileTime == 0 {
		c.CompileTime = DefaultCompileTime
	}
	if c.CompileMemoryMB == 0 {
		c.CompileMemoryMB = DefaultCompileMemoryMB
	}
	if c.NanoCPUs == 0 {
		c.NanoCPUs = DefaultNanoCPUs
	}
	if c.PoolIdleTimeout == 0 {
		c.PoolIdleTimeout = DefaultPoolIdleTimeout
	}
	return c
}

// Job is one submission to run.
type Job struct {
	// ID is the submission id, stored in the runbox.submission label.
	ID       string
	Language *catalog.Language
	Source   string
	Stdin    string
	Args     []string
	Limits   submission.Limits
	// NoPool makes the job use a new container even when the pool has one,
	// as the self-test does so that it does not warm every language.
	NoPool bool
}

// PlatformError is a failure of the platform (engine, image, network
// between worker and engine), never of the submitted program. The worker
// retries such failures.
type PlatformError struct {
	Op  string
	Err error
}

func (e *PlatformError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *PlatformError) Unwrap() error { return e.Err }

func platformError(op string, err error) error {
	return &PlatformError{Op: op, Err: err}
}

// Runner runs jobs on one Docker engine.
type Runner struct {
	docker *client.Client
	config Config
	log    *slog.Logger
	// pool is nil when Config.PoolSize is zero.
	pool *pool
	// removals counts containers being removed in the background.
	removals sync.WaitGroup
	// seccomp is the sandbox's seccomp profile as JSON.
	seccomp string
}

// NewRunner returns a runner that uses docker with the given configuration.
// Close must be called to remove its pooled containers.
func NewRunner(docker *client.Client, config Config, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.Default()
	}
	r := &Runner{docker: docker, config: config.withDefaults(), log: log, seccomp: seccompProfile(config.Runtime)}
	if r.config.PoolSize > 0 {
		r.pool = newPool(r, r.config.PoolSize, r.config.PoolIdleTimeout)
	}
	return r
}

// Close removes the pooled containers and waits until every container the
// runner started is removed.
func (r *Runner) Close() {
	if r.pool != nil {
		r.pool.close()
	}
	r.removals.Wait()
}

// TrimPool removes the ready containers of languages that have not been
// used for Config.PoolIdleTimeout. The worker calls it periodically.
func (r *Runner) TrimPool() {
	if r.pool != nil {
		r.pool.trim(time.Now())
	}
}

// Config returns the runner's configuration with defaults applied.
func (r *Runner) Config() Config { return r.config }

// ImageRef returns the image reference of a language, with the tag latest
// when the catalogue names none.
func ImageRef(lang *catalog.Language) string {
	name := lang.Image
	if i := strings.LastIndex(name, "/"); !strings.Contains(name[i+1:], ":") {
		name += ":latest"
	}
	return name
}

// Run runs the job and returns its result. A returned error is always a
// *PlatformError or the context's error; anything the program does ends in
// a result with a verdict.
func (r *Runner) Run(ctx context.Context, job Job) (*submission.Result, error) {
	lang := job.Language
	limits := job.Limits
	startMemoryMB := limits.MemoryMB
	startProcesses := limits.Processes
	if lang.Compile != "" {
		// The compiler runs under its own limits, not the program's.
		startMemoryMB = max(limits.MemoryMB, r.compileMemoryMB(lang))
		startProcesses = max(limits.Processes, submission.DefaultLimits.Processes)
		if !r.canUpdate() {
			// NOTE: without container updates the program keeps the
			// compiler's memory and process limits.
			limits.MemoryMB, limits.Processes = startMemoryMB, startProcesses
		}
	}
	b, renamed, err := r.container(ctx, job, startMemoryMB, startProcesses)
	if err != nil {
		return nil, err
	}
	// The container is removed in the background, so its removal does not
	// delay the result. Close waits for it. The pool is refilled after the
	// run for the same reason.
	defer r.removeLater(b.id, job.ID)
	if r.pool != nil && !job.NoPool {
		defer r.pool.refill(lang.ID)
	}
	// A pooled container is renamed after the submission while it runs.
	// The rename finishes before the result is returned.
	defer func() { <-renamed }()

	result := &submission.Result{Stages: &submission.Stages{ContainerReadyAt: time.Now().UTC()}}
	nonce := newNonce()
	timeLimit := time.Duration(limits.TimeMS) * time.Millisecond
	outputLimit := limits.OutputKB << 10
	spec := sessionJob{
		script:             jobScript(lang, limits, job.Args, len(job.Source), nonce, r.processLimitInside(limits.Processes)),
		nonce:              nonce,
		source:             job.Source,
		stdin:              job.Stdin,
		compile:            lang.Compile != "",
		compileTimeout:     r.compileTime(lang),
		compileOutputLimit: r.config.CompileOutputLimit,
		runTimeout:         timeLimit,
		outputLimit:        outputLimit,
	}
	if cpuLimit := time.Duration(limits.CPUTimeMS) * time.Millisecond; !r.enforcesRlimitCPU() && cpuLimit < timeLimit {
		spec.cpuLimit = cpuLimit
	}
	if spec.compile && r.canUpdate() && (startMemoryMB != limits.MemoryMB || startProcesses != limits.Processes) {
		spec.beforeRun = func(ctx context.Context) error {
			err := r.setLimits(ctx, b.id, limits.MemoryMB, limits.Processes)
			if err != nil {
				return platformError("set the program's limits after compiling", err)
			}
			return nil
		}
	}
	res, err := r.session(ctx, b, spec)
	if err != nil {
		return nil, err
	}

	if spec.compile {
		result.CompileOutput = res.compileOutput
		if result.CompileOutput == nil {
			result.CompileOutput = []byte{}
		}
		result.CompileTimeMS = res.compileTime.Milliseconds()
		if !res.compiled {
			result.Verdict = submission.VerdictCompileError
			result.Message = compileVerdict(res.compileOutcome, spec.compileTimeout, startMemoryMB)
			result.Stdout, result.Stderr = []byte{}, []byte{}
			return result, nil
		}
	}
	result.Stages.ExitedAt = time.Now().UTC()
	result.Stdout, result.StdoutTruncated = res.stdout.Bytes()
	result.Stderr, result.StderrTruncated = res.stderr.Bytes()
	result.TimeMS = res.elapsed.Milliseconds()
	if res.peakMemory >= 0 {
		kib := res.peakMemory >> 10
		result.MemoryKB = &kib
	}
	if !res.run.TimedOut && !res.run.OutputExceeded && !res.run.CPUTimeExceeded {
		exitCode := res.run.ExitCode
		result.ExitCode = &exitCode
	}
	result.Verdict, result.Message, result.Signal = runVerdict(res.run,
		timeLimit, limits.MemoryMB, outputLimit)
	return result, nil
}

// container returns a started container for the job: a ready one from the
// pool, or a new one. The channel is closed once a pooled container has
// its submission name.
func (r *Runner) container(ctx context.Context, job Job, memoryMB, processes int) (*box, <-chan struct{}, error) {
	if r.pool != nil && !job.NoPool {
		if b, renamed := r.pool.acquire(ctx, job.Language, job.ID, memoryMB, processes); b != nil {
			return b, renamed, nil
		}
	}
	b, err := r.startContainer(ctx, job.ID, job.Language, memoryMB, processes)
	done := make(chan struct{})
	close(done)
	return b, done, err
}

// canUpdate reports whether the runtime lets the engine change the limits
// of a running container. NOTE: Debian's runsc (release 20221219) rejects
// every update, so under runsc a pooled container serves only jobs with
// its own limits.
func (r *Runner) canUpdate() bool {
	return r.config.Runtime != "runsc"
}

// processLimitInside returns the RLIMIT_NPROC for the job script, or 0
// when the pids cgroup alone limits the program. Under runsc it counts the
// program's processes and threads plus the init process and the shell,
// all of which run as the program's user inside gVisor.
func (r *Runner) processLimitInside(processes int) int {
	if r.config.Runtime != "runsc" {
		return 0
	}
	return processes + containerProcesses
}

// setLimits changes the memory and process limits of a running container.
func (r *Runner) setLimits(ctx context.Context, id string, memoryMB, processes int) error {
	memory := int64(memoryMB) << 20
	pids := r.pidsLimit(processes)
	_, err := r.docker.ContainerUpdate(ctx, id, container.UpdateConfig{
		Resources: container.Resources{Memory: memory, MemorySwap: memory, PidsLimit: &pids},
	})
	return err
}

func (r *Runner) compileTime(lang *catalog.Language) time.Duration {
	if lang.Limits.CompileTimeMS > 0 {
		return time.Duration(lang.Limits.CompileTimeMS) * time.Millisecond
	}
	return r.config.CompileTime
}

func (r *Runner) compileMemoryMB(lang *catalog.Language) int {
	if lang.Limits.CompileMemoryMB > 0 {
		return lang.Limits.CompileMemoryMB
	}
	return r.config.CompileMemoryMB
}

// jobScript returns the shell script the bootstrap shell runs for a job.
// It acknowledges the job, copies the source into the language's source
// file and, for a compiled language, compiles it with the output on stdout
// and prints the compile marker, then waits for the go line. The run sets
// the per-process limits with ulimit, which lowers soft and hard limits
// alike, so the program cannot raise them again. The shell exits with the
// program's status, 128+N when signal N ended it. The program arguments are
// single-quoted, so the shell never parses them.
//
// A positive nproc adds RLIMIT_NPROC, which only a runtime with a kernel of
// its own can use: under runc the limit would count the processes of every
// sandbox, because they share the host's uid 10001.
func jobScript(lang *catalog.Language, limits submission.Limits, args []string, sourceSize int, nonce string, nproc int) string {
	var b strings.Builder
	b.WriteString(ackCommand(nonce) + "\n")
	b.WriteString(peakFunction)

	writeSource := "head -c " + strconv.Itoa(sourceSize) + " > " + shellQuote(lang.SourceFile)
	if lang.Compile != "" {
		// The compiler must not read stdin, which holds the go line and
		// the program's stdin after it.
		fmt.Fprintf(&b, "{ %s && { %s\n} </dev/null; } 2>&1\n", writeSource, lang.Compile)
		b.WriteString(compileMarkerCommand(nonce) + "\n")
		b.WriteString("IFS= read -r go || exit 125\n")
		b.WriteString("runbox_read_peak\nrunbox_compile_peak=$runbox_peak\n")
	} else {
		b.WriteString(writeSource + " || exit 125\n")
	}

	cpuSeconds := (limits.CPUTimeMS + 999) / 1000
	// dash counts the file size limit in 512-byte blocks and takes one
	// limit per ulimit call. The CPU hard limit is one second above the
	// soft one, so the kernel sends SIGXCPU (reported as a time limit)
	// before its SIGKILL.
	fmt.Fprintf(&b, "ulimit -S -t %d && ulimit -H -t %d && ulimit -f %d && ulimit -n %d || exit 125\n",
		cpuSeconds, cpuSeconds+1, limits.FileSizeKB*2, limits.OpenFiles)
	if nproc > 0 {
		// dash names RLIMIT_NPROC -p.
		fmt.Fprintf(&b, "ulimit -p %d || exit 125\n", nproc)
	}

	b.WriteString("set --")
	for _, arg := range args {
		b.WriteString(" " + shellQuote(arg))
	}
	// The shell's own stderr goes to /dev/null from here on, because dash
	// reports a child ended by a signal there ("Killed"), which is not the
	// program's output. The program writes to the saved stderr on fd 4.
	// The subshell keeps that redirection out of the shell: dash applies a
	// simple command's redirections in the shell while it waits.
	b.WriteString("\nexec 4>&2 2>/dev/null\n")
	b.WriteString("( " + lang.Run + ` "$@"` + " ) 2>&4 4>&-\nstatus=$?\n")

	// The run lasts until every process the program started has ended, as
	// for a fork bomb whose first process returns at once. The init
	// process and this shell are the two entries left in the container's
	// /proc when it is done. The glob needs no fork, which fails while a
	// fork bomb holds every process slot.
	b.WriteString("while set -- /proc/[0-9]*; [ $# -gt 2 ]; do sleep 0.02 2>/dev/null; done\n")
	b.WriteString(memoryTrailerCommand(nonce))
	b.WriteString("exit $status\n")
	return b.String()
}

// shellQuote quotes s as one word for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Version runs the language's version command in a sandbox and returns
// the version it reports.
func (r *Runner) Version(ctx context.Context, lang *catalog.Language) (string, error) {
	jobID := "version-" + lang.ID
	b, err := r.startContainer(ctx, jobID, lang, r.compileMemoryMB(lang),
		submission.DefaultLimits.Processes)
	if err != nil {
		return "", err
	}
	defer r.removeLater(b.id, jobID)
	nonce := newNonce()
	spec := sessionJob{
		script:      ackCommand(nonce) + "\nexec 2>&1\n" + lang.Version + "\n",
		nonce:       nonce,
		runTimeout:  r.compileTime(lang),
		outputLimit: 4096,
	}
	res, err := r.session(ctx, b, spec)
	if err != nil {
		return "", err
	}
	output, _ := res.stdout.Bytes()
	if res.run.TimedOut {
		return "", fmt.Errorf("version command %q timed out after %s", lang.Version, spec.runTimeout)
	}
	if res.run.ExitCode != 0 {
		return "", fmt.Errorf("version command %q exited with status %d: %s",
			lang.Version, res.run.ExitCode, strings.TrimSpace(string(output)))
	}
	version := lang.ParseVersion(string(output))
	if version == "" {
		return "", fmt.Errorf("version command %q printed no version: %q", lang.Version, output)
	}
	return version, nil
}
