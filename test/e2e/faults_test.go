package e2e

// Fault tests: each breaks one component of a running stack, such as the
// worker process, Redis, the path to the Docker engine, a language image or
// the queue's capacity. Each checks that the accepted submissions still end
// with a final result, and most check that exactly one worker stored it.
// startStack checks that no sandbox container is left.
// Tests that mostly wait, such as for Asynq to recover a killed worker's
// task, run in parallel. Those that measure time or load the engine do not.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/config"
	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/sandbox"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

// backend opens the stack's Redis the way the programs do, so a test can
// read what the API does not show (attempts, queue task states) and break
// things on purpose.
type backend struct {
	store     *store.Store
	inspector *asynq.Inspector
}

func openBackend(t *testing.T, redisURL string) *backend {
	t.Helper()
	cfg, err := config.ParseRedis(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(cfg.Client)
	t.Cleanup(func() { rdb.Close() })
	return &backend{store: store.New(rdb, 0), inspector: asynq.NewInspectorFromRedisClient(rdb)}
}

func (b *backend) submission(t *testing.T, id string) *submission.Submission {
	t.Helper()
	sub, err := b.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("read submission %s from redis: %v", id, err)
	}
	return sub
}

// submissionContainers lists the sandbox containers of a submission: those
// labelled with its id and pooled ones renamed after it.
func submissionContainers(t *testing.T, docker *client.Client, id string) []container.Summary {
	t.Helper()
	seen := make(map[string]bool)
	var found []container.Summary
	for _, match := range []filters.Args{
		filters.NewArgs(filters.Arg("label", sandbox.LabelSubmission+"="+id)),
		filters.NewArgs(filters.Arg("name", "runbox-"+id)),
	} {
		list, err := docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: match})
		if err != nil {
			t.Fatalf("list containers of submission %s: %v", id, err)
		}
		for _, c := range list {
			if !seen[c.ID] {
				seen[c.ID] = true
				found = append(found, c)
			}
		}
	}
	return found
}

// waitForContainer waits until the submission's sandbox container exists,
// so the run has really started on the engine.
func waitForContainer(t *testing.T, docker *client.Client, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(submissionContainers(t, docker, id)) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no container of submission %s within %s", id, timeout)
}

// checkNoContainers checks that the submission's containers are gone
// within timeout. Workers remove them in the background after storing the
// result.
func checkNoContainers(t *testing.T, docker *client.Client, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := submissionContainers(t, docker, id)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d containers of submission %s left after %s", len(left), id, timeout)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countLines counts the log lines that contain every one of parts.
func countLines(log string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, part := range parts {
			if !strings.Contains(line, part) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}

// countLinesSoon is countLines on the log of p, waiting up to 5 s for the
// first matching line: a worker can write its line a moment after the
// change it reports is visible.
func countLinesSoon(p *process, parts ...string) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := countLines(p.log(), parts...)
		if n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOneResult checks that exactly one worker stored a result for the
// submission and that the stored result does not change afterwards.
func checkOneResult(t *testing.T, s *stack, view submission.View) {
	t.Helper()
	storedLines := func() int {
		n := 0
		for _, worker := range s.workers {
			output := worker.log()
			n += countLines(output, `msg="submission done"`, view.ID)
			n += countLines(output, `msg="repaired submission: stored an internal error"`, view.ID)
		}
		return n
	}
	// A worker writes its log line after it stores the result, so the
	// line can come a moment after the result is visible.
	deadline := time.Now().Add(5 * time.Second)
	for storedLines() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// A duplicate store that follows soon after the first is counted too.
	time.Sleep(500 * time.Millisecond)
	if stored := storedLines(); stored != 1 {
		t.Errorf("workers logged %d stored results for submission %s, want 1", stored, view.ID)
	}

	again := s.get(t, view.ID)
	switch {
	case view.FinishedAt == nil || again.FinishedAt == nil:
		t.Errorf("finished_at = %v, then %v, want it set both times", view.FinishedAt, again.FinishedAt)
	case !again.FinishedAt.Equal(*view.FinishedAt):
		t.Errorf("finished_at changed from %v to %v", view.FinishedAt, again.FinishedAt)
	}
	if again.Verdict != view.Verdict {
		t.Errorf("verdict changed from %s to %s", view.Verdict, again.Verdict)
	}
	if text(again.Stdout) != text(view.Stdout) {
		t.Errorf("stdout changed from %q to %q", text(view.Stdout), text(again.Stdout))
	}
}

// checkOK checks that the submission ended with the verdict ok and the
// expected stdout. label names the submission in failure messages.
func checkOK(t *testing.T, label string, view submission.View, wantStdout string) {
	t.Helper()
	if view.Verdict != submission.VerdictOK {
		t.Errorf("%s %s: verdict = %s (%s), want ok", label, view.ID, view.Verdict, view.Message)
	}
	if got := text(view.Stdout); got != wantStdout {
		t.Errorf("%s %s: stdout = %q, want %q", label, view.ID, got, wantStdout)
	}
}

func TestWorkerKilledMidRun(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{NoWorker: true, WorkerEnv: []string{"RUNBOX_RETRY_DELAY=100ms"}})
	docker := testenv.Docker(t)
	db := openBackend(t, s.Redis.URL)
	suffix := time.Now().UnixNano()
	firstName := fmt.Sprintf("e2e-killed-%d", suffix)
	first := s.startWorker(t, firstName)
	s.waitHealthy(t, time.Minute)
	// A first run fills the worker's python pool, so the kill leaves idle
	// pool containers behind.
	s.run(t, submission.Request{Language: "python", Source: "print('warm')\n"})
	testenv.WaitForPoolContainers(t, docker, firstName, "python")

	id := s.submit(t, submission.Request{Language: "python",
		Source: "import time\ntime.sleep(5)\nprint('survived')\n",
		Limits: &submission.RequestLimits{TimeMS: intp(10000)}})
	s.waitStatus(t, id, submission.StatusRunning, 30*time.Second)
	waitForContainer(t, docker, id, 10*time.Second)
	first.kill(t)
	killed := time.Now()
	if got := s.get(t, id).Status; got != submission.StatusRunning {
		t.Errorf("status right after the kill = %s, want running", got)
	}

	secondName := fmt.Sprintf("e2e-second-%d", suffix)
	second := s.startWorker(t, secondName)
	// Asynq hands the task of a dead worker to another only after its lease
	// has expired and the recoverer's next pass, within queue.LeaseRecovery.
	view := s.result(t, id, queue.LeaseRecovery+time.Minute)
	t.Logf("worker killed to result stored: %s", time.Since(killed).Round(time.Millisecond))

	checkOK(t, "submission", view, "survived\n")
	if view.Worker != secondName {
		t.Errorf("worker = %q, want the second worker %q", view.Worker, secondName)
	}
	if attempts := db.submission(t, id).Attempts; attempts < 2 {
		t.Errorf("attempts = %d, want at least 2", attempts)
	}
	if n := countLines(second.log(), "removed containers of an earlier attempt", id); n != 1 {
		t.Errorf("second worker logged the removal of the orphaned container %d times, want 1", n)
	}
	checkNoContainers(t, docker, id, 5*time.Second)
	checkOneResult(t, s, view)

	// The killed worker's idle pool containers exited when its connections
	// closed, and the second worker's sweep (at its start, then every
	// minute) removes them.
	for deadline := time.Now().Add(70 * time.Second); ; time.Sleep(time.Second) {
		left, err := docker.ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", sandbox.LabelWorker+"="+firstName))})
		if err != nil {
			t.Fatalf("list containers: %v", err)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d containers of the killed worker left, the first in state %s", len(left), left[0].State)
			break
		}
	}
}

func TestWorkerStopFinishesRun(t *testing.T) {
	s := startStack(t, stackOptions{})
	docker := testenv.Docker(t)
	db := openBackend(t, s.Redis.URL)

	id := s.submit(t, submission.Request{Language: "python",
		Source: "import time\ntime.sleep(4)\nprint('finished')\n"})
	s.waitStatus(t, id, submission.StatusRunning, 30*time.Second)
	waitForContainer(t, docker, id, 10*time.Second)
	s.worker.signal(t, syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	// A stopping worker takes no new submission.
	later := s.submit(t, submission.Request{Language: "bash", Source: "echo later\n"})

	if !s.worker.wait(20 * time.Second) {
		t.Fatal("worker did not exit within its 20 s shutdown timeout")
	}
	if code := s.worker.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("worker exit status = %d, want 0", code)
	}
	view := s.get(t, id)
	if view.Status != submission.StatusDone {
		t.Fatalf("status after the worker stopped = %s, want done", view.Status)
	}
	checkOK(t, "submission running at SIGTERM", view, "finished\n")
	if attempts := db.submission(t, id).Attempts; attempts != 1 {
		t.Errorf("attempts = %d, want 1", attempts)
	}
	sub := db.submission(t, later)
	if sub.Status != submission.StatusQueued {
		t.Errorf("submission sent during shutdown: status = %s, want queued", sub.Status)
	}
	if sub.Attempts != 0 {
		t.Errorf("submission sent during shutdown: attempts = %d, want 0", sub.Attempts)
	}
	checkNoContainers(t, docker, id, 5*time.Second)
}

func TestWorkerStopRequeuesRun(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{
		NoWorker:  true,
		APIEnv:    []string{"RUNBOX_MAX_TIME_MS=30000"},
		WorkerEnv: []string{"RUNBOX_SHUTDOWN_TIMEOUT=2s", "RUNBOX_RETRY_DELAY=100ms"},
	})
	docker := testenv.Docker(t)
	db := openBackend(t, s.Redis.URL)
	suffix := time.Now().UnixNano()
	first := s.startWorker(t, fmt.Sprintf("e2e-stopped-%d", suffix))
	s.waitHealthy(t, time.Minute)

	id := s.submit(t, submission.Request{Language: "python",
		Source: "import time\ntime.sleep(20)\nprint('second try')\n",
		Limits: &submission.RequestLimits{TimeMS: intp(25000)}})
	s.waitStatus(t, id, submission.StatusRunning, 30*time.Second)
	waitForContainer(t, docker, id, 10*time.Second)
	first.signal(t, syscall.SIGTERM)
	stopped := time.Now()
	if !first.wait(15 * time.Second) {
		t.Fatal("worker did not exit within 15 s of SIGTERM with a 2 s shutdown timeout")
	}
	t.Logf("SIGTERM to exit: %s", time.Since(stopped).Round(time.Millisecond))
	if code := first.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("worker exit status = %d, want 0", code)
	}
	if left := submissionContainers(t, docker, id); len(left) != 0 {
		t.Errorf("%d containers of submission %s outlived the worker", len(left), id)
	}
	if got := s.get(t, id).Status; got != submission.StatusQueued {
		t.Errorf("status after the worker stopped = %s, want queued", got)
	}
	task, err := db.inspector.GetTaskInfo(queue.Name, id)
	if err != nil {
		t.Fatalf("queue task after the worker stopped: %v", err)
	}
	if task.State != asynq.TaskStateRetry && task.State != asynq.TaskStatePending {
		t.Errorf("queue task state = %s, want retry or pending", task.State)
	}
	if task.Retried != 0 {
		t.Errorf("queue task retried = %d, want 0: an interrupted run must not use a retry", task.Retried)
	}

	secondName := fmt.Sprintf("e2e-successor-%d", suffix)
	s.startWorker(t, secondName)
	view := s.result(t, id, time.Minute)
	checkOK(t, "submission", view, "second try\n")
	if view.Worker != secondName {
		t.Errorf("worker = %q, want %q", view.Worker, secondName)
	}
	if attempts := db.submission(t, id).Attempts; attempts != 2 {
		t.Errorf("attempts = %d, want 2", attempts)
	}
	checkOneResult(t, s, view)
}

func TestRedisRestartKeepsSubmissions(t *testing.T) {
	redisServer := testenv.StartRedisFixedPort(t)
	s := startStack(t, stackOptions{Redis: redisServer,
		WorkerEnv: []string{"RUNBOX_CONCURRENCY=1", "RUNBOX_RETRY_DELAY=200ms"}})
	ctx := context.Background()

	running := s.submit(t, submission.Request{Language: "python",
		Source: "import time\ntime.sleep(3)\nprint('ran through the outage')\n"})
	s.waitStatus(t, running, submission.StatusRunning, 30*time.Second)
	var queued []string
	for i := range 3 {
		queued = append(queued, s.submit(t, submission.Request{Language: "bash",
			Source: fmt.Sprintf("echo queued %d\n", i)}))
	}

	timeout := 10 * time.Second
	if err := redisServer.Container.Stop(ctx, &timeout); err != nil {
		t.Fatalf("stop redis: %v", err)
	}
	down := time.Now()
	post := s.do(t, http.MethodPost, "/api/v1/submissions", "application/json",
		strings.NewReader(`{"language":"bash","source":"echo lost"}`))
	if post.Status != http.StatusServiceUnavailable {
		t.Errorf("POST with redis stopped = %d %s, want 503", post.Status, post.Body)
	}
	if post.Header.Get("Retry-After") == "" {
		t.Error("503 on POST without Retry-After")
	}
	if health := s.do(t, http.MethodGet, "/healthz", "", nil); health.Status != http.StatusServiceUnavailable {
		t.Errorf("healthz with redis stopped = %d %s, want 503", health.Status, health.Body)
	}
	if get := s.do(t, http.MethodGet, "/api/v1/submissions/"+running, "", nil); get.Status != http.StatusServiceUnavailable {
		t.Errorf("GET submission with redis stopped = %d %s, want 503", get.Status, get.Body)
	}
	// The running program ends while Redis is down, so the worker must retry
	// storing its result.
	time.Sleep(4*time.Second - time.Since(down))
	if err := redisServer.Container.Start(ctx); err != nil {
		t.Fatalf("start redis again: %v", err)
	}
	t.Logf("redis was down for %s", time.Since(down).Round(time.Millisecond))
	s.waitHealthy(t, 30*time.Second)

	view := s.result(t, running, time.Minute)
	checkOK(t, "submission running during the outage", view, "ran through the outage\n")
	checkOneResult(t, s, view)
	for i, id := range queued {
		view := s.result(t, id, time.Minute)
		checkOK(t, "submission queued before the outage", view, fmt.Sprintf("queued %d\n", i))
	}
	after := s.run(t, submission.Request{Language: "bash", Source: "echo after"})
	if after.Verdict != submission.VerdictOK {
		t.Errorf("submission after the restart: verdict %s (%s), want ok", after.Verdict, after.Message)
	}
}

// dockerProxy forwards a unix socket to the Docker engine's socket and can
// be cut, to make the engine unreachable for one worker while the tests'
// own containers keep running.
type dockerProxy struct {
	path   string
	target string

	mu       sync.Mutex
	listener net.Listener
	conns    map[net.Conn]struct{}
}

func startDockerProxy(t *testing.T) *dockerProxy {
	t.Helper()
	target := "/var/run/docker.sock"
	if host := os.Getenv("DOCKER_HOST"); strings.HasPrefix(host, "unix://") {
		target = strings.TrimPrefix(host, "unix://")
	} else if host != "" {
		t.Skipf("the docker proxy needs a unix socket engine, not DOCKER_HOST=%s", host)
	}
	p := &dockerProxy{path: filepath.Join(t.TempDir(), "docker.sock"), target: target,
		conns: make(map[net.Conn]struct{})}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

// URL is the proxy's DOCKER_HOST value.
func (p *dockerProxy) URL() string { return "unix://" + p.path }

func (p *dockerProxy) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatalf("listen on %s: %v", p.path, err)
	}
	p.mu.Lock()
	p.listener = l
	p.mu.Unlock()
	go func() {
		for {
			down, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(down)
		}
	}()
}

func (p *dockerProxy) forward(down net.Conn) {
	up, err := net.Dial("unix", p.target)
	if err != nil {
		down.Close()
		return
	}
	p.mu.Lock()
	p.conns[down], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, down)
		delete(p.conns, up)
		p.mu.Unlock()
		down.Close()
		up.Close()
	}()
	// The client half-closes an attached exec to send EOF on stdin, so a
	// finished copy closes only the write side of its destination.
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.(*net.UnixConn).CloseWrite()
		done <- struct{}{}
	}
	go pipe(up, down)
	go pipe(down, up)
	<-done
	<-done
}

// stop closes the socket and every open connection, as an engine that went
// away would.
func (p *dockerProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listener != nil {
		p.listener.Close()
		p.listener = nil
	}
	for conn := range p.conns {
		conn.Close()
	}
}

func TestEngineUnreachableRetries(t *testing.T) {
	proxy := startDockerProxy(t)
	// Retries 3 s, 6 s and 12 s after the failures leave time to see the
	// health check turn 503 before the engine comes back.
	// NOTE: the container pool is off here. With it on, a pooled container
	// that an attempt takes while the engine is unreachable cannot be
	// renamed or removed, is no longer tracked by the pool, and stays until
	// a sweep finds it older than the longest task.
	s := startStack(t, stackOptions{WorkerEnv: []string{"DOCKER_HOST=" + proxy.URL(),
		"RUNBOX_RETRY_DELAY=3s", "RUNBOX_POOL_SIZE=0"}})
	docker := testenv.Docker(t)
	db := openBackend(t, s.Redis.URL)

	id := s.submit(t, submission.Request{Language: "python",
		Source: "import time\ntime.sleep(3)\nprint('after the outage')\n"})
	s.waitStatus(t, id, submission.StatusRunning, 30*time.Second)
	waitForContainer(t, docker, id, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	proxy.stop()
	cut := time.Now()

	// The engine stays away until a second attempt has failed and the
	// health check reports that no worker reaches an engine.
	sawUnhealthy := false
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if !sawUnhealthy {
			health := s.do(t, http.MethodGet, "/healthz", "", nil)
			sawUnhealthy = health.Status == http.StatusServiceUnavailable &&
				bytes.Contains(health.Body, []byte("no live worker reaches a docker engine"))
		}
		if sawUnhealthy && db.submission(t, id).Attempts >= 2 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !sawUnhealthy {
		t.Error("healthz never reported the unreachable engine")
	}
	attemptsWhileDown := db.submission(t, id).Attempts
	if attemptsWhileDown < 2 {
		t.Fatalf("attempts while the engine was unreachable = %d, want at least 2", attemptsWhileDown)
	}
	proxy.start(t)
	t.Logf("engine unreachable for %s, %d attempts meanwhile", time.Since(cut).Round(time.Millisecond), attemptsWhileDown)

	view := s.result(t, id, time.Minute)
	checkOK(t, "submission", view, "after the outage\n")
	attempts := db.submission(t, id).Attempts
	if attempts <= attemptsWhileDown || attempts > queue.MaxRetry+1 {
		t.Errorf("attempts = %d, want from %d to %d", attempts, attemptsWhileDown+1, queue.MaxRetry+1)
	}
	if n := countLines(s.worker.log(), "it will be retried", id); n < 2 {
		t.Errorf("worker logged %d retried platform faults, want at least 2", n)
	}
	checkNoContainers(t, docker, id, 5*time.Second)
	checkOneResult(t, s, view)
	s.waitHealthy(t, 15*time.Second)
}

// brokenCatalogue has a working bash and a language whose image does not
// exist.
const brokenCatalogue = `languages:
  - id: bash
    name: Bash
    image: runbox/bash
    extension: sh
    source_file: main.sh
    run: bash main.sh
    version: bash --version
    sample: |
      read -r name
      echo "Hello, ${name:-world}!"
  - id: broken
    name: Broken
    image: runbox/e2e-missing-image:none
    extension: sh
    source_file: main.sh
    run: bash main.sh
    version: bash --version
    sample: |
      echo "Hello, Runbox!"
`

func TestMissingImageEndsInternalError(t *testing.T) {
	t.Parallel()
	catalogue := filepath.Join(t.TempDir(), "languages.yaml")
	if err := os.WriteFile(catalogue, []byte(brokenCatalogue), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stackOptions{Env: []string{"RUNBOX_LANGUAGES_FILE=" + catalogue},
		WorkerEnv: []string{"RUNBOX_RETRY_DELAY=100ms"}})
	db := openBackend(t, s.Redis.URL)

	start := time.Now()
	view := s.run(t, submission.Request{Language: "broken", Source: "echo never\n"})
	t.Logf("missing image: POST to internal_error in %s", time.Since(start).Round(time.Millisecond))
	if view.Verdict != submission.VerdictInternalError {
		t.Fatalf("verdict = %s (%s), want internal_error", view.Verdict, view.Message)
	}
	wantMessage := fmt.Sprintf("the platform failed %d times", queue.MaxRetry+1)
	if !strings.Contains(view.Message, wantMessage) {
		t.Errorf("message %q does not contain %q", view.Message, wantMessage)
	}
	if !strings.Contains(view.Message, "runbox/e2e-missing-image:none") {
		t.Errorf("message %q does not name the missing image", view.Message)
	}
	if attempts := db.submission(t, view.ID).Attempts; attempts != queue.MaxRetry+1 {
		t.Errorf("attempts = %d, want %d", attempts, queue.MaxRetry+1)
	}
	if n := countLines(s.worker.log(), "it will be retried", view.ID); n != queue.MaxRetry {
		t.Errorf("worker logged %d retries, want %d", n, queue.MaxRetry)
	}
	if n := countLines(s.worker.log(), "after every retry", view.ID); n != 1 {
		t.Errorf("worker logged %d final failures, want 1", n)
	}
	checkOneResult(t, s, view)

	bash := s.run(t, submission.Request{Language: "bash", Source: "echo fine\n"})
	if bash.Verdict != submission.VerdictOK {
		t.Errorf("bash beside the broken language: verdict %s (%s), want ok", bash.Verdict, bash.Message)
	}
}

func TestBurstIsAdmittedUpToQueueCap(t *testing.T) {
	const (
		requests    = 1000
		queueCap    = 200
		concurrency = 100
	)
	s := startStack(t, stackOptions{
		APIEnv:    []string{fmt.Sprintf("RUNBOX_QUEUE_CAP=%d", queueCap), "RUNBOX_LOG_LEVEL=warn"},
		WorkerEnv: []string{"RUNBOX_CONCURRENCY=4"},
	})
	db := openBackend(t, s.Redis.URL)
	httpClient := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: concurrency},
	}
	body := []byte(`{"language":"bash","source":"echo hi"}`)

	var (
		mu       sync.Mutex
		accepted []string
		rejected int
		others   []string
	)
	work := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				status, header, respBody, err := post(httpClient, s.URL+"/api/v1/submissions", body)
				mu.Lock()
				switch {
				case err != nil:
					others = append(others, err.Error())
				case status == http.StatusAccepted:
					var created struct{ ID string }
					if err := json.Unmarshal(respBody, &created); err != nil || created.ID == "" {
						others = append(others, fmt.Sprintf("202 with body %s", respBody))
					} else {
						accepted = append(accepted, created.ID)
					}
				case status == http.StatusTooManyRequests && header.Get("Retry-After") != "" &&
					bytes.Contains(respBody, []byte(`"code":"queue_full"`)):
					rejected++
				default:
					others = append(others, fmt.Sprintf("%d Retry-After=%q %s", status, header.Get("Retry-After"), respBody))
				}
				mu.Unlock()
			}
		}()
	}
	for range requests {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	burst := time.Since(start)
	t.Logf("%d POSTs in %s: %d accepted, %d rejected with 429", requests, burst.Round(time.Millisecond),
		len(accepted), rejected)

	info, err := db.inspector.GetQueueInfo(queue.Name)
	if err != nil {
		t.Fatalf("read queue size: %v", err)
	}
	if backlog := info.Pending + info.Active + info.Scheduled + info.Retry; backlog > queueCap {
		t.Errorf("queue backlog right after the burst = %d, above the cap of %d", backlog, queueCap)
	}
	if len(others) > 0 {
		t.Errorf("%d responses were neither 202 nor a queue_full 429 with Retry-After; first: %s",
			len(others), others[0])
	}
	if total := len(accepted) + rejected; total != requests {
		t.Errorf("accepted %d + rejected %d = %d, want %d", len(accepted), rejected, total, requests)
	}
	if len(accepted) < queueCap {
		t.Errorf("accepted %d, want at least the cap of %d", len(accepted), queueCap)
	}
	if rejected == 0 {
		t.Error("no request was rejected, so the cap was never reached")
	}
	if burst > 20*time.Second {
		t.Errorf("the burst took %s; admission should keep POSTs cheap", burst)
	}

	drainStart := time.Now()
	ids := make(chan string)
	var failures sync.Map
	var waiters sync.WaitGroup
	for range 16 {
		waiters.Add(1)
		go func() {
			defer waiters.Done()
			for id := range ids {
				view, err := awaitDone(httpClient, s.URL, id, drainStart.Add(3*time.Minute))
				switch {
				case err != nil:
					failures.Store(id, err.Error())
				case view.Verdict != submission.VerdictOK || text(view.Stdout) != "hi\n":
					failures.Store(id, fmt.Sprintf("verdict %s (%s), stdout %q", view.Verdict, view.Message, text(view.Stdout)))
				}
			}
		}()
	}
	for _, id := range accepted {
		ids <- id
	}
	close(ids)
	waiters.Wait()
	t.Logf("%d accepted submissions done %s after the burst", len(accepted), time.Since(drainStart).Round(time.Millisecond))
	failed := 0
	failures.Range(func(id, reason any) bool {
		if failed < 5 {
			t.Errorf("submission %s: %s", id, reason)
		}
		failed++
		return true
	})
	if failed > 0 {
		t.Errorf("%d of %d accepted submissions did not end ok", failed, len(accepted))
	}
}

// post sends one JSON POST and returns the status, headers and body.
func post(c *http.Client, url string, body []byte) (int, http.Header, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}

// awaitDone long-polls a submission until it is done or the deadline
// passes.
func awaitDone(c *http.Client, baseURL, id string, deadline time.Time) (submission.View, error) {
	for time.Now().Before(deadline) {
		resp, err := c.Get(baseURL + "/api/v1/submissions/" + id + "?wait=10")
		if err != nil {
			return submission.View{}, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return submission.View{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return submission.View{}, fmt.Errorf("GET = %d %s", resp.StatusCode, data)
		}
		var view submission.View
		if err := json.Unmarshal(data, &view); err != nil {
			return submission.View{}, err
		}
		if view.Status == submission.StatusDone {
			return view, nil
		}
	}
	return submission.View{}, errors.New("not done before the deadline")
}

func TestReconcilerRepairsOrphans(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{NoWorker: true, WorkerEnv: []string{
		"RUNBOX_RECONCILE_INTERVAL=1s", "RUNBOX_RECONCILE_MIN_AGE=1s"}})
	db := openBackend(t, s.Redis.URL)
	ctx := context.Background()

	lost := s.submit(t, submission.Request{Language: "bash", Source: "echo lost\n"})
	if err := db.inspector.DeleteTask(queue.Name, lost); err != nil {
		t.Fatalf("delete the queue task of %s: %v", lost, err)
	}
	// A worker that died in the last attempt leaves the submission running
	// and Asynq archives its task.
	abandoned := s.submit(t, submission.Request{Language: "bash", Source: "echo abandoned\n"})
	if _, err := db.store.Start(ctx, abandoned, time.Now()); err != nil {
		t.Fatalf("mark %s running: %v", abandoned, err)
	}
	if err := db.inspector.ArchiveTask(queue.Name, abandoned); err != nil {
		t.Fatalf("archive the queue task of %s: %v", abandoned, err)
	}
	time.Sleep(1500 * time.Millisecond)

	worker := s.startWorker(t, fmt.Sprintf("e2e-reconciler-%d", time.Now().UnixNano()))
	s.waitHealthy(t, time.Minute)

	view := s.result(t, lost, time.Minute)
	checkOK(t, "submission with a lost task", view, "lost\n")
	if n := countLinesSoon(worker, "enqueued it again", lost); n != 1 {
		t.Errorf("worker logged %d re-enqueues of %s, want 1", n, lost)
	}

	view = s.result(t, abandoned, time.Minute)
	if view.Verdict != submission.VerdictInternalError {
		t.Errorf("submission with an archived task: verdict %s, want internal_error", view.Verdict)
	}
	if !strings.Contains(view.Message, "the queue gave up on this submission") {
		t.Errorf("message %q does not say that the queue gave up", view.Message)
	}
	if n := countLinesSoon(worker, "stored an internal error", abandoned); n != 1 {
		t.Errorf("worker logged %d repairs of %s, want 1", n, abandoned)
	}
	checkOneResult(t, s, view)
}

func TestReconcilerFailsOverdue(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{NoWorker: true, WorkerEnv: []string{
		"RUNBOX_RECONCILE_INTERVAL=1s", "RUNBOX_RECONCILE_MIN_AGE=1s", "RUNBOX_MAX_SUBMISSION_AGE=2s"}})
	db := openBackend(t, s.Redis.URL)

	id := s.submit(t, submission.Request{Language: "bash", Source: "echo overdue\n"})
	// With the queue paused no worker takes the task, as behind a backlog.
	if err := db.inspector.PauseQueue(queue.Name); err != nil {
		t.Fatalf("pause queue: %v", err)
	}
	s.startWorker(t, fmt.Sprintf("e2e-overdue-%d", time.Now().UnixNano()))
	s.waitHealthy(t, time.Minute)

	view := s.result(t, id, 30*time.Second)
	if view.Verdict != submission.VerdictInternalError {
		t.Fatalf("verdict = %s, want internal_error", view.Verdict)
	}
	if !strings.Contains(view.Message, "did not finish within 2s") {
		t.Errorf("message %q does not name the 2s limit", view.Message)
	}
	if _, err := db.inspector.GetTaskInfo(queue.Name, id); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("queue task of the failed submission: error %v, want task not found", err)
	}
	if err := db.inspector.UnpauseQueue(queue.Name); err != nil {
		t.Fatalf("unpause queue: %v", err)
	}
}
