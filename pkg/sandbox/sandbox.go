// Package sandbox runs one submission in a fresh, disposable container
// through the Docker Engine API.
//
// # Life of a run
//
// The runner creates a container from the language's image, or takes a
// started one from the pool. The container has no network, a read-only
// root file system and tmpfs mounts at /box (the work directory) and /tmp.
// It drops every capability, sets no-new-privileges, and limits memory
// (without swap) and processes. Its main process is `sleep infinity` under
// the engine's init, run as user 10002. The steps then run as exec
// processes of user 10001:
//
//  1. With a compile command: `head -c N > <source_file> && <compile>`, fed
//     the source on stdin, under the compile time and memory limits.
//  2. The run: `exec <run> "$@"` with the program arguments, fed the
//     user's stdin (preceded by the source when there was no compile step,
//     which then writes it first).
//
// The source therefore enters through the exec's stdin before the program
// starts, and output leaves through the attached streams: the worker never
// touches a file the sandbox could have written. The container is
// force-removed on every path.
//
// A time limit or an output cap is enforced by killing the whole container.
// An exit by SIGKILL that the runner did not cause is checked against the
// engine's OOM report.
package sandbox

import (
	"context"
	"errors"
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
}

// NewRunner returns a runner that uses docker with the given configuration.
// Close must be called to remove its pooled containers.
func NewRunner(docker *client.Client, config Config, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.Default()
	}
	r := &Runner{docker: docker, config: config.withDefaults(), log: log}
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
	compileMemoryMB := r.compileMemoryMB(lang)
	startMemoryMB := limits.MemoryMB
	startProcesses := limits.Processes
	if lang.Compile != "" {
		// The compiler runs under its own limits, not the program's.
		startMemoryMB = max(limits.MemoryMB, compileMemoryMB)
		startProcesses = max(limits.Processes, submission.DefaultLimits.Processes)
	}
	id, err := r.container(ctx, job, startMemoryMB, startProcesses)
	if err != nil {
		return nil, err
	}
	// The container goes in the background, so the result is not held up
	// by its removal; Close waits for it. The pool is refilled after the
	// run for the same reason.
	defer r.removeLater(id, job.ID)
	if r.pool != nil && !job.NoPool {
		defer r.pool.refill(lang.ID)
	}

	result := &submission.Result{Stages: &submission.Stages{ContainerReadyAt: time.Now().UTC()}}
	runStdin := job.Stdin
	runScript := runCommand(lang, limits, "")
	if lang.Compile == "" {
		runStdin = job.Source + job.Stdin
		runScript = runCommand(lang, limits, writeSource(lang, len(job.Source)))
	} else {
		done, err := r.compile(ctx, id, job, startMemoryMB, startProcesses, result)
		if err != nil || done {
			return result, err
		}
	}

	timeLimit := time.Duration(limits.TimeMS) * time.Millisecond
	outputLimit := limits.OutputKB << 10
	step := execStep{
		cmd:         append([]string{"/bin/sh", "-c", runScript, "runbox"}, job.Args...),
		stdin:       runStdin,
		env:         lang.Env,
		timeout:     timeLimit,
		outputLimit: outputLimit,
	}
	res, err := r.exec(ctx, id, step)
	if err != nil {
		return nil, err
	}
	result.Stages.ExitedAt = time.Now().UTC()
	result.Stdout, result.StdoutTruncated = res.stdout.Bytes()
	result.Stderr, result.StderrTruncated = res.stderr.Bytes()
	result.TimeMS = res.elapsed.Milliseconds()
	if !res.TimedOut && !res.OutputExceeded {
		exitCode := res.ExitCode
		result.ExitCode = &exitCode
	}
	result.Verdict, result.Message, result.Signal = runVerdict(res.outcome,
		timeLimit, limits.MemoryMB, outputLimit)
	return result, nil
}

// container returns a started container for the job: a ready one from the
// pool, or a new one.
func (r *Runner) container(ctx context.Context, job Job, memoryMB, processes int) (string, error) {
	if r.pool != nil && !job.NoPool {
		id := r.pool.acquire(ctx, job.Language, job.ID, memoryMB, processes)
		if id != "" {
			return id, nil
		}
	}
	return r.startContainer(ctx, job.ID, job.Language, memoryMB, processes)
}

// compile runs the compile step. It returns done=true when the result is
// final because compilation failed.
func (r *Runner) compile(ctx context.Context, id string, job Job, memoryMB, processes int, result *submission.Result) (bool, error) {
	lang := job.Language
	timeLimit := r.compileTime(lang)
	script := writeSource(lang, len(job.Source)) + " && " + lang.Compile
	res, err := r.exec(ctx, id, execStep{
		cmd:         []string{"/bin/sh", "-c", script},
		stdin:       job.Source,
		env:         lang.Env,
		timeout:     timeLimit,
		outputLimit: r.config.CompileOutputLimit,
		mergeOutput: true,
	})
	if err != nil {
		return true, err
	}
	result.CompileOutput, _ = res.stdout.Bytes()
	result.CompileTimeMS = res.elapsed.Milliseconds()
	if res.ExitCode != 0 && !res.TimedOut && !res.OutputExceeded && !res.OOMKilled {
		// A compiler whose child was killed for memory exits with its own
		// status, so the engine's OOM report is read for any failure.
		if res.OOMKilled, err = r.oomKilled(ctx, id); err != nil {
			return true, err
		}
	}
	if message := compileVerdict(res.outcome, timeLimit, memoryMB); message != "" {
		result.Verdict = submission.VerdictCompileError
		result.Message = message
		result.Stdout, result.Stderr = []byte{}, []byte{}
		return true, nil
	}
	if memoryMB != job.Limits.MemoryMB || processes != job.Limits.Processes {
		bytes := int64(job.Limits.MemoryMB) << 20
		pids := int64(job.Limits.Processes + containerProcesses)
		_, err := r.docker.ContainerUpdate(ctx, id, container.UpdateConfig{
			Resources: container.Resources{Memory: bytes, MemorySwap: bytes, PidsLimit: &pids},
		})
		if err != nil {
			return true, platformError("set the program's limits after compiling", err)
		}
	}
	return false, nil
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

// writeSource returns the shell command that copies exactly size bytes of
// stdin into the language's source file. GNU head reads no further than
// that, so the rest of stdin stays for the program.
func writeSource(lang *catalog.Language, size int) string {
	return "head -c " + strconv.Itoa(size) + " > '" + lang.SourceFile + "'"
}

// runCommand returns the shell script of the run step. It sets the
// per-process limits with ulimit, which lowers soft and hard limits alike,
// so the program cannot raise them again. The program arguments follow as
// "$@" and are never parsed by the shell.
func runCommand(lang *catalog.Language, limits submission.Limits, prelude string) string {
	cpuSeconds := (limits.CPUTimeMS + 999) / 1000
	// dash counts the file size limit in 512-byte blocks.
	fileBlocks := limits.FileSizeKB * 2
	// dash takes one limit per ulimit call. The CPU hard limit is one second
	// above the soft one, so the kernel sends SIGXCPU (reported as a time
	// limit) before its SIGKILL.
	script := fmt.Sprintf("ulimit -S -t %d && ulimit -H -t %d && ulimit -f %d && ulimit -n %d && ",
		cpuSeconds, cpuSeconds+1, fileBlocks, limits.OpenFiles)
	if prelude != "" {
		script += prelude + " && "
	}
	return script + "exec " + lang.Run + ` "$@"`
}

// Version runs the language's version command in a sandbox and returns
// the version it reports.
func (r *Runner) Version(ctx context.Context, lang *catalog.Language) (string, error) {
	id, err := r.startContainer(ctx, "version-"+lang.ID, lang, r.compileMemoryMB(lang),
		submission.DefaultLimits.Processes)
	if err != nil {
		return "", err
	}
	defer r.removeLater(id, "version-"+lang.ID)
	res, err := r.exec(ctx, id, execStep{
		cmd:         []string{"/bin/sh", "-c", lang.Version},
		timeout:     r.compileTime(lang),
		outputLimit: 4096,
		mergeOutput: true,
	})
	if err != nil {
		return "", err
	}
	output, _ := res.stdout.Bytes()
	if res.ExitCode != 0 || res.TimedOut {
		return "", fmt.Errorf("version command %q exited with status %d: %s",
			lang.Version, res.ExitCode, strings.TrimSpace(string(output)))
	}
	version := lang.ParseVersion(string(output))
	if version == "" {
		return "", errors.New("version command printed nothing")
	}
	return version, nil
}
