package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// bootstrapScript is the main process of every sandbox container. It
// reads a decimal length and a newline from stdin, then that many bytes of
// shell script, which it runs. dash reads a pipe one byte at a time for
// `read`, and GNU head reads no further than its count, so the bytes after
// the script stay on stdin for the script: the source, then the program's
// stdin.
const bootstrapScript = `IFS= read -r n && s=$(head -c "$n") && eval "$s"`

// box is a started sandbox container whose main process waits for its job
// on the attached stdin.
type box struct {
	id     string
	attach types.HijackedResponse
	// stopped is closed when the container has stopped, or when waiting
	// for that failed; exit and waitErr are set before.
	stopped    chan struct{}
	exit       container.WaitResponse
	waitErr    error
	cancelWait context.CancelFunc
}

// watchStop starts waiting for the container to stop. It must be called
// after the start, because a created container counts as not running.
func (r *Runner) watchStop(b *box) {
	ctx, cancel := context.WithCancel(context.Background())
	b.stopped, b.cancelWait = make(chan struct{}), cancel
	exits, errs := r.docker.ContainerWait(ctx, b.id, container.WaitConditionNotRunning)
	go func() {
		defer close(b.stopped)
		select {
		case b.exit = <-exits:
		case b.waitErr = <-errs:
		}
	}()
}

// waiting reports whether the box's main process still waits for its job.
// It makes no engine request.
func (b *box) waiting() bool {
	select {
	case <-b.stopped:
		return false
	default:
		return true
	}
}

// close ends the wait and the attach connection. It does not remove the
// container.
func (b *box) close() {
	b.cancelWait()
	b.attach.Close()
}

// sessionJob is the input of a session and the limits of its steps.
type sessionJob struct {
	// script is run by the bootstrap shell. It must start with
	// ackCommand(nonce) and, when compile is set, print the compile marker
	// and read one line before the run.
	script string
	nonce  string
	// source follows the script on stdin.
	source string
	// stdin is the program's stdin, sent after the source, or after the
	// compile step when there is one.
	stdin   string
	compile bool

	compileTimeout     time.Duration
	compileOutputLimit int
	runTimeout         time.Duration
	outputLimit        int
	// cpuLimit, when set, makes the worker read the container's CPU usage
	// and stop the run past it, for runtimes that ignore RLIMIT_CPU.
	cpuLimit time.Duration
	// beforeRun runs after a successful compile step and before the program
	// gets its stdin, to set the program's limits.
	beforeRun func(context.Context) error
}

// sessionResult is the outcome and output of a session's steps.
type sessionResult struct {
	// compiled is false when the compile step failed or was stopped, or
	// when there was none.
	compiled      bool
	compileStatus int
	compileOutput []byte
	compileTime   time.Duration
	// compileOutcome is set when a compile step ran and did not succeed.
	compileOutcome outcome

	// ran is false when the program never started.
	ran bool
	run outcome
	// peakMemory is the run's peak memory in bytes, or -1 when unknown.
	peakMemory int64
	stdout     *cappedBuffer
	stderr     *cappedBuffer
	elapsed    time.Duration
}

// newNonce returns a random token that the program cannot predict, so its
// output cannot pass for the sandbox's own markers.
func newNonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ackCommand returns the command that prints the nonce on stderr, which
// shows the worker that the container took its job. A pool container
// whose stdin closed early exits without printing it.
func ackCommand(nonce string) string {
	return "printf '%s' '" + nonce + "' >&2"
}

// compileMarkerCommand returns the command that prints the compile step's
// exit status on stdout after the compiler output, on a line of its own
// that starts with the nonce.
func compileMarkerCommand(nonce string) string {
	return "printf '\\n%s %d\\n' '" + nonce + "' \"$?\""
}

// streamDrainTimeout is how long the output of a stopped container may
// take to arrive before its attach connection is closed.
const streamDrainTimeout = 2 * time.Second

// stopTimeout is how long the engine may take to report a container as
// stopped after its streams closed. Past it, the run is a platform fault.
const stopTimeout = 30 * time.Second

// errNoAck is returned when a box ended without taking its job.
var errNoAck = errors.New("the sandbox container exited before it read its job")

// session runs one job in a box and returns how it ended. It kills the
// container at a time limit or an output cap, so no job may follow. A
// returned error is a *PlatformError or the context's error.
func (r *Runner) session(ctx context.Context, b *box, job sessionJob) (*sessionResult, error) {
	s := &runSession{runner: r, box: b, compiled: make(chan struct{}), streamDone: make(chan struct{})}
	res := &sessionResult{}
	overflow := func() { s.exceeded.Store(true); go s.kill() }
	res.stdout = newCappedBuffer(job.outputLimit, overflow)
	res.stderr = newCappedBuffer(job.outputLimit, overflow)
	trailer := &trailerWriter{nonce: []byte(job.nonce), next: res.stderr}
	ack := &ackWriter{expected: []byte(job.nonce), next: trailer}
	var stdout io.Writer = res.stdout
	var split *compileSplitter
	if job.compile {
		split = &compileSplitter{
			marker:  []byte("\n" + job.nonce + " "),
			limit:   job.compileOutputLimit,
			program: res.stdout,
			done:    s.compiled,
			onOverflow: func() {
				s.compileExceeded.Store(true)
				go s.kill()
			},
		}
		stdout = split
	}

	stopOnCancel := context.AfterFunc(ctx, s.kill)
	defer stopOnCancel()

	go func() {
		defer close(s.streamDone)
		_, s.copyErr = stdcopy.StdCopy(stdout, ack, b.attach.Reader)
	}()
	// The engine may keep the attached streams open after the container
	// stopped, as when it stopped before reading its job, so the
	// connection is closed once the output had time to drain.
	go func() {
		select {
		case <-s.streamDone:
		case <-b.stopped:
			select {
			case <-s.streamDone:
			case <-time.After(streamDrainTimeout):
				b.attach.Close()
			}
		}
	}()
	// Writes fail once the program exits without reading all of its stdin,
	// which is expected and ignored. Closing the connection ends any write.
	defer b.close()

	start := time.Now()
	header := strconv.Itoa(len(job.script)) + "\n" + job.script + job.source
	if job.compile {
		go func() { _, _ = io.WriteString(b.attach.Conn, header) }()
		timer := time.AfterFunc(job.compileTimeout, func() { s.compileTimedOut.Store(true); s.kill() })
		select {
		case <-s.compiled:
		case <-s.streamDone:
		}
		timer.Stop()
		res.compileTime = time.Since(start)
		if !split.finished() {
			return r.endSession(ctx, s, res, ack)
		}
		res.compileOutput, res.compileStatus = split.output(), split.status
		if res.compileStatus != 0 {
			return r.endSession(ctx, s, res, ack)
		}
		res.compiled = true
		if job.beforeRun != nil {
			if err := job.beforeRun(ctx); err != nil {
				s.kill()
				<-s.streamDone
				return nil, err
			}
		}
		start = time.Now()
		header = "go\n"
	}
	res.ran = true
	go func() {
		_, _ = io.WriteString(b.attach.Conn, header+job.stdin)
		_ = b.attach.CloseWrite()
	}()
	timer := time.AfterFunc(job.runTimeout, func() { s.timedOut.Store(true); s.kill() })
	if job.cpuLimit > 0 {
		go s.watchCPU(job.cpuLimit, s.streamDone)
	}
	<-s.streamDone
	timer.Stop()
	res.elapsed = time.Since(start)
	res.peakMemory = trailer.finish()
	return r.endSession(ctx, s, res, ack)
}

// endSession waits for the container to stop after its streams closed and
// fills in how the last step ended.
func (r *Runner) endSession(ctx context.Context, s *runSession, res *sessionResult, ack *ackWriter) (*sessionResult, error) {
	// A compile step that ended with a non-zero status leaves the shell
	// waiting for its go line, so it is stopped here.
	if !res.ran {
		s.kill()
	}
	<-s.streamDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if !ack.acknowledged() {
		if s.killed.Load() && s.compileTimedOut.Load() {
			// On a loaded engine, the shell can take the whole compile
			// limit before it prints the nonce. The limit still ended it.
			res.compileOutcome.TimedOut = true
			return res, nil
		}
		return nil, platformError("run job", errNoAck)
	}
	if s.copyErr != nil && !errors.Is(s.copyErr, io.EOF) && !s.killed.Load() {
		return nil, platformError("read sandbox output", s.copyErr)
	}

	timeout := time.NewTimer(stopTimeout)
	defer timeout.Stop()
	select {
	case <-s.box.stopped:
	case <-timeout.C:
		return nil, platformError("wait for sandbox container",
			fmt.Errorf("timed out %s after its streams closed", stopTimeout))
	}
	if s.box.waitErr != nil {
		return nil, platformError("wait for sandbox container", s.box.waitErr)
	}
	if s.box.exit.Error != nil && s.box.exit.Error.Message != "" {
		return nil, platformError("wait for sandbox container", errors.New(s.box.exit.Error.Message))
	}
	exitCode := int(s.box.exit.StatusCode)

	o := outcome{ExitCode: exitCode}
	if !res.ran {
		o.ExitCode = res.compileStatus
		o.TimedOut = s.compileTimedOut.Load()
		o.OutputExceeded = s.compileExceeded.Load()
	} else {
		o.OutputExceeded = s.exceeded.Load()
		o.CPUTimeExceeded = s.cpuExceeded.Load() && !o.OutputExceeded
		o.TimedOut = s.timedOut.Load() && !o.OutputExceeded && !o.CPUTimeExceeded
	}
	// A program killed by SIGKILL, or a compiler whose child was killed,
	// may have met the OOM killer. The engine reports that once the
	// container has stopped, which it now has.
	if (!res.ran && !o.TimedOut && !o.OutputExceeded) || (!s.killed.Load() && exitCode == 128+9) {
		state, err := r.docker.ContainerInspect(ctx, s.box.id)
		if err != nil {
			return nil, platformError("inspect container", err)
		}
		o.OOMKilled = state.State != nil && state.State.OOMKilled
	}
	if res.ran {
		res.run = o
	} else {
		res.compileOutcome = o
	}
	return res, nil
}

// runSession is the shared state of one session's goroutines.
type runSession struct {
	runner *Runner
	box    *box

	killOnce        sync.Once
	killed          atomic.Bool
	timedOut        atomic.Bool
	exceeded        atomic.Bool
	cpuExceeded     atomic.Bool
	compileTimedOut atomic.Bool
	compileExceeded atomic.Bool

	compiled   chan struct{}
	streamDone chan struct{}
	copyErr    error
}

// kill sends SIGKILL to the container, once per session. Timers and the
// stream copy call it, so it does not wait for the streams to close.
func (s *runSession) kill() {
	s.killOnce.Do(func() {
		s.killed.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.runner.docker.ContainerKill(ctx, s.box.id, "KILL")
		if err != nil && !isNotRunning(err) {
			s.runner.log.Warn("kill sandbox container", "container", shortID(s.box.id), "error", err)
		}
	})
}

// isNotRunning reports whether a kill failed only because the container
// had already stopped.
func isNotRunning(err error) bool {
	return strings.Contains(err.Error(), "is not running")
}

// ackWriter receives the container's stderr. It drops the nonce that the
// job script prints first and passes the rest on.
type ackWriter struct {
	mu       sync.Mutex
	expected []byte
	seen     int
	next     io.Writer
}

func (a *ackWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	n := len(p)
	if a.seen < len(a.expected) {
		k := min(len(a.expected)-a.seen, len(p))
		if !bytes.Equal(p[:k], a.expected[a.seen:a.seen+k]) {
			a.mu.Unlock()
			return 0, fmt.Errorf("sandbox stderr does not start with the job's nonce")
		}
		a.seen += k
		p = p[k:]
	}
	a.mu.Unlock()
	if len(p) > 0 {
		if _, err := a.next.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (a *ackWriter) acknowledged() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen == len(a.expected)
}

// compileSplitter receives the container's stdout. Up to the marker line
// that ends the compile step, it stores the bytes as compiler output, at
// most limit of them. After that line, bytes go to the program's stdout.
type compileSplitter struct {
	mu      sync.Mutex
	marker  []byte
	limit   int
	pending []byte
	ended   bool
	status  int
	// compilerOutput is set when the marker arrives or the limit is passed.
	compilerOutput []byte
	overflowed     bool
	program        io.Writer
	done           chan struct{}
	onOverflow     func()
}

// statusLineSlack is the room after the marker for the exit status digits
// and the newline, so a marker line at the limit still ends the step.
const statusLineSlack = 24

func (c *compileSplitter) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return c.program.Write(p)
	}
	n := len(p)
	if c.overflowed {
		// The container is being killed for the output cap, so a marker
		// that arrives now must not start the run.
		c.mu.Unlock()
		return n, nil
	}

	// The search goes back far enough to find a marker that arrived
	// earlier without the rest of its status line.
	searchFrom := max(0, len(c.pending)-len(c.marker)-statusLineSlack)
	c.pending = append(c.pending, p...)
	i := bytes.Index(c.pending[searchFrom:], c.marker)
	if i >= 0 {
		i += searchFrom
		statusStart := i + len(c.marker)
		end := bytes.IndexByte(c.pending[statusStart:], '\n')
		if end >= 0 {
			status, err := strconv.Atoi(string(c.pending[statusStart : statusStart+end]))
			if err != nil {
				status = -1
			}
			rest := c.pending[statusStart+end+1:]
			c.compilerOutput = c.pending[:min(i, c.limit)]
			c.status, c.ended, c.pending = status, true, nil
			close(c.done)
			c.mu.Unlock()
			if len(rest) > 0 {
				_, _ = c.program.Write(rest)
			}
			return n, nil
		}
	}

	if len(c.pending) <= c.limit+len(c.marker)+statusLineSlack {
		c.mu.Unlock()
		return n, nil
	}
	c.overflowed = true
	c.compilerOutput = c.pending[:c.limit]
	c.pending = nil
	c.mu.Unlock()
	c.onOverflow()
	return n, nil
}

// finished reports whether the marker line arrived.
func (c *compileSplitter) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// output returns a copy of the compiler output: the bytes before the
// marker, or the first limit bytes when the step did not finish.
func (c *compileSplitter) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.overflowed {
		return append([]byte{}, c.compilerOutput...)
	}
	return append([]byte{}, c.pending[:min(len(c.pending), c.limit)]...)
}
