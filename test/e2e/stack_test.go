// Package e2e drives the real programs: runbox-api and runbox-worker are
// built once, started as processes against a Redis container and the local
// Docker engine, and used through HTTP like a client would.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/sandbox"
	"github.com/runbox/runbox/pkg/submission"
)

// binDir holds the programs built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runbox-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create temp dir:", err)
		os.Exit(1)
	}
	for _, program := range []string{"api", "worker"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "runbox-"+program),
			"github.com/runbox/runbox/"+program)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build runbox-%s: %v\n", program, err)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stack is a running API and its workers, with their own Redis.
type stack struct {
	// URL is the API's base URL, such as http://127.0.0.1:41234.
	URL   string
	Redis *testenv.Redis
	// workerName and worker describe the worker that startStack starts.
	// They are empty when stackOptions.NoWorker is set.
	workerName string
	api        *process
	worker     *process
	workerEnv  []string
	// workers contains every worker process the stack started, by name.
	workers map[string]*process
}

// stackOptions change how the stack starts.
type stackOptions struct {
	// SelfTest runs the worker's language self-test at start.
	SelfTest bool
	// Env is added to both programs' environment.
	Env []string
	// APIEnv is added to the API's environment.
	APIEnv []string
	// WorkerEnv is added to the environment of every worker.
	WorkerEnv []string
	// Redis is used instead of a new Redis container when set.
	Redis *testenv.Redis
	// NoWorker starts the API alone. The test adds workers with startWorker.
	NoWorker bool
}

// process is a started program whose output goes to a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	// killed reports whether kill ended the process.
	killed bool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startProcess(t *testing.T, name string, env []string) *process {
	t.Helper()
	logFile, err := os.CreateTemp("", "runbox-e2e-"+name+"-*.log")
	if err != nil {
		t.Fatalf("create log file: %v", err)
	}
	cmd := exec.Command(filepath.Join(binDir, "runbox-"+name))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A test binary that dies on a timeout panic takes its programs along
	// instead of leaving them running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start runbox-%s: %v", name, err)
	}
	p := &process{cmd: cmd, logPath: logFile.Name(), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p
}

// stop sends SIGTERM and waits; it kills the process after the timeout.
func (p *process) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Errorf("%s did not stop within %s of SIGTERM; killing it", p.cmd.Path, timeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.cmd.Path, err)
	}
	p.killed = true
	<-p.done
}

// signal sends sig without waiting.
func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("send %s to %s: %v", sig, p.cmd.Path, err)
	}
}

// wait waits up to timeout for the process to end and reports whether it
// did.
func (p *process) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *process) log() string {
	data, _ := os.ReadFile(p.logPath)
	return string(data)
}

// startStack starts Redis (unless opts.Redis is set), the API and one
// worker (unless opts.NoWorker is set). It waits until the API is healthy,
// or with NoWorker until it serves HTTP, and stops everything when the test
// ends. It fails the test if a sandbox container of any of its workers is
// left afterwards.
func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	redis := opts.Redis
	if redis == nil {
		redis = testenv.StartRedis(t)
	}
	docker := testenv.Docker(t)
	addr := freeAddr(t)
	s := &stack{
		URL:     "http://" + addr,
		Redis:   redis,
		workers: make(map[string]*process),
	}

	common := slices.Concat([]string{
		"RUNBOX_REDIS_URL=" + redis.URL,
		"RUNBOX_LOG_LEVEL=debug",
	}, opts.Env)
	s.workerEnv = slices.Concat(common, []string{
		fmt.Sprintf("RUNBOX_SELF_TEST=%t", opts.SelfTest),
		"RUNBOX_SHUTDOWN_TIMEOUT=20s",
	}, opts.WorkerEnv)

	if !opts.NoWorker {
		s.workerName = fmt.Sprintf("e2e-%d", time.Now().UnixNano())
		s.worker = s.startWorker(t, s.workerName)
	}
	s.api = startProcess(t, "api", slices.Concat(common, opts.APIEnv, []string{"RUNBOX_HTTP_ADDR=" + addr}))

	t.Cleanup(func() {
		s.api.stop(t, 10*time.Second)
		for _, worker := range s.workers {
			worker.stop(t, 40*time.Second)
		}

		for name, worker := range s.workers {
			list, err := docker.ContainerList(context.Background(), container.ListOptions{
				All:     true,
				Filters: filters.NewArgs(filters.Arg("label", sandbox.LabelWorker+"="+name)),
			})
			if err != nil {
				t.Errorf("list sandbox containers: %v", err)
			}
			if worker.killed {
				list = removeIdlePoolContainers(t, docker, name, list)
			}
			if len(list) != 0 {
				t.Errorf("%d sandbox containers of worker %s left behind", len(list), name)
			}
		}

		if t.Failed() {
			t.Logf("api log:\n%s", s.api.log())
			t.Log(s.workerLogs())
		}
	})

	if opts.NoWorker {
		s.waitServing(t, 30*time.Second)
	} else {
		s.waitHealthy(t, 60*time.Second)
	}
	return s
}

// removeIdlePoolContainers removes the idle pool containers of a killed
// worker, because another worker's sweep may not reach them before the test
// ends. It returns the other containers of the list.
func removeIdlePoolContainers(t *testing.T, docker *client.Client, worker string, list []container.Summary) []container.Summary {
	t.Helper()
	var others []container.Summary
	idle := 0
	for _, c := range list {
		_, pooled := c.Labels[sandbox.LabelPool]
		taken := slices.ContainsFunc(c.Names, func(name string) bool { return strings.HasPrefix(name, "/runbox-") })
		if !pooled || taken {
			others = append(others, c)
			continue
		}
		err := docker.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
		if err != nil {
			t.Errorf("remove idle pool container %s of killed worker %s: %v", c.ID, worker, err)
		}
		idle++
	}
	if idle > 0 {
		t.Logf("removed %d idle pool containers of killed worker %s", idle, worker)
	}
	return others
}

// startWorker starts a worker process with the given name and the stack's
// worker environment plus extraEnv.
func (s *stack) startWorker(t *testing.T, name string, extraEnv ...string) *process {
	t.Helper()
	if _, taken := s.workers[name]; taken {
		t.Fatalf("a worker named %s was started already", name)
	}
	p := startProcess(t, "worker", slices.Concat(s.workerEnv, []string{"RUNBOX_WORKER_NAME=" + name}, extraEnv))
	s.workers[name] = p
	return p
}

// waitServing waits until the API serves HTTP, whether or not a worker
// runs.
func (s *stack) waitServing(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/api/v1/languages")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("api at %s not serving within %s\napi log:\n%s", s.URL, timeout, s.api.log())
}

func (s *stack) waitHealthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("api at %s not healthy within %s\napi log:\n%s\n%s",
		s.URL, timeout, s.api.log(), s.workerLogs())
}

// workerLogs returns the log of every worker the stack started, each after
// a line with the worker's name.
func (s *stack) workerLogs() string {
	var b strings.Builder
	for name, worker := range s.workers {
		fmt.Fprintf(&b, "worker %s log:\n%s\n", name, worker.log())
	}
	return b.String()
}

// response is an HTTP response with its body read.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (s *stack) do(t *testing.T, method, path, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatalf("build request %s %s: %v", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// submit posts a request and returns the submission id; it fails the test
// unless the API accepts it with 202.
func (s *stack) submit(t *testing.T, req submission.Request) string {
	t.Helper()
	body, _ := json.Marshal(req)
	resp := s.do(t, http.MethodPost, "/api/v1/submissions", "application/json", bytes.NewReader(body))
	if resp.Status != http.StatusAccepted {
		t.Fatalf("POST /api/v1/submissions = %d %s, want 202", resp.Status, resp.Body)
	}
	var accepted struct{ ID, Status string }
	if err := json.Unmarshal(resp.Body, &accepted); err != nil {
		t.Fatalf("decode 202 body %s: %v", resp.Body, err)
	}
	if want := "/api/v1/submissions/" + accepted.ID; resp.Header.Get("Location") != want {
		t.Errorf("Location = %q, want %q", resp.Header.Get("Location"), want)
	}
	return accepted.ID
}

// result long-polls until the submission is done.
func (s *stack) result(t *testing.T, id string, timeout time.Duration) submission.View {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		view := s.getSubmission(t, id, "?wait=10")
		if view.Status == submission.StatusDone {
			return view
		}
	}
	t.Fatalf("submission %s not done within %s", id, timeout)
	return submission.View{}
}

// get returns the submission as GET shows it, without waiting.
func (s *stack) get(t *testing.T, id string) submission.View {
	t.Helper()
	return s.getSubmission(t, id, "")
}

// getSubmission sends GET for the submission with the query string (empty
// or starting with "?") and fails the test unless the API returns 200.
func (s *stack) getSubmission(t *testing.T, id, query string) submission.View {
	t.Helper()
	resp := s.do(t, http.MethodGet, "/api/v1/submissions/"+id+query, "", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET submission %s = %d %s", id, resp.Status, resp.Body)
	}
	var view submission.View
	if err := json.Unmarshal(resp.Body, &view); err != nil {
		t.Fatalf("decode submission %s: %v", resp.Body, err)
	}
	return view
}

// waitStatus polls until the submission has the given status.
func (s *stack) waitStatus(t *testing.T, id string, status submission.Status, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.get(t, id).Status == status {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("submission %s not %s within %s (status %s)", id, status, timeout, s.get(t, id).Status)
}

// run submits a request and waits for its result.
func (s *stack) run(t *testing.T, req submission.Request) submission.View {
	t.Helper()
	return s.result(t, s.submit(t, req), 2*time.Minute)
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func text(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
