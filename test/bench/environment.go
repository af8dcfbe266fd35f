package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runbox/runbox/pkg/submission"
)

// environment is the set of Redis, API and worker processes that the
// benchmark starts, with the temporary directory for their binaries and logs.
type environment struct {
	dir     string
	baseURL string
	redis   *exec.Cmd
	api     *exec.Cmd
	worker  *exec.Cmd
	client  *http.Client
}

// freePort returns a TCP port on the loopback interface that is free now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startEnvironment builds runbox-api and runbox-worker, starts Redis, the
// worker and the API on free loopback ports, and waits until the API is healthy.
func startEnvironment(root string, parallel int) (*environment, error) {
	dir, err := os.MkdirTemp("", "runbox-bench")
	if err != nil {
		return nil, err
	}
	env := &environment{dir: dir, client: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	for _, program := range []string{"api", "worker"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "runbox-"+program), "./"+program)
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build runbox-%s: %w", program, err)
		}
	}
	redisPort, err := freePort()
	if err != nil {
		return nil, err
	}
	env.redis = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(redisPort),
		"--dir", dir, "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "")
	if err := start(env.redis, filepath.Join(dir, "redis.log")); err != nil {
		return nil, fmt.Errorf("start redis-server (installed by `make setup`): %w", err)
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	common := []string{fmt.Sprintf("RUNBOX_REDIS_URL=redis://127.0.0.1:%d/0", redisPort)}
	env.worker = exec.Command(filepath.Join(dir, "runbox-worker"))
	env.worker.Env = append(os.Environ(), append(common, "RUNBOX_SELF_TEST=false",
		"RUNBOX_WORKER_NAME=bench", fmt.Sprintf("RUNBOX_CONCURRENCY=%d", parallel))...)
	if err := start(env.worker, filepath.Join(dir, "worker.log")); err != nil {
		return nil, err
	}
	env.api = exec.Command(filepath.Join(dir, "runbox-api"))
	env.api.Env = append(os.Environ(), append(common, fmt.Sprintf("RUNBOX_HTTP_ADDR=127.0.0.1:%d", apiPort))...)
	if err := start(env.api, filepath.Join(dir, "api.log")); err != nil {
		return nil, err
	}
	env.baseURL = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	return env, env.waitHealthy(time.Minute)
}

// start starts cmd with its output in logPath. The process gets SIGTERM when
// the benchmark exits, so that a log.Fatal, which skips environment.stop,
// does not leave it running.
func start(cmd *exec.Cmd, logPath string) error {
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return cmd.Start()
}

// waitHealthy polls /healthz until it returns 200 or the timeout passes.
func (e *environment) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := e.client.Get(e.baseURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("API not healthy after %s: see the logs in %s", timeout, e.dir)
}

// stop sends SIGTERM to the API, the worker and Redis in turn, kills any
// that has not exited after 40 s, and removes the temporary directory.
func (e *environment) stop() {
	for _, cmd := range []*exec.Cmd{e.api, e.worker, e.redis} {
		if cmd == nil || cmd.Process == nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	os.RemoveAll(e.dir)
}

// rss returns the resident memory of the API and the worker in KiB.
func (e *environment) rss() (int, int) {
	return processRSS(e.api.Process.Pid), processRSS(e.worker.Process.Pid)
}

// processRSS returns the VmRSS of a process in KiB, or 0 when it cannot be read.
func processRSS(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return kb
		}
	}
	return 0
}

var helloRequest = submission.Request{Language: "python", Source: "print('hello')\n"}

// submit posts a request and returns the id and the HTTP status. The id is
// "" when the API did not accept the request.
func (e *environment) submit(req submission.Request) (string, int, error) {
	body, _ := json.Marshal(req)
	resp, err := e.client.Post(e.baseURL+"/api/v1/submissions", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", resp.StatusCode, nil
	}
	var accepted struct{ ID string }
	if err := json.Unmarshal(data, &accepted); err != nil {
		return "", resp.StatusCode, err
	}
	return accepted.ID, resp.StatusCode, nil
}

// awaitTimeout bounds the wait for one submission, so a lost submission
// stops the benchmark instead of hanging it.
const awaitTimeout = 5 * time.Minute

// await long-polls until the submission is done and returns it. It retries
// 5xx responses and returns an error for any other status but 200.
func (e *environment) await(id string) (submission.View, error) {
	deadline := time.Now().Add(awaitTimeout)
	for time.Now().Before(deadline) {
		resp, err := e.client.Get(e.baseURL + "/api/v1/submissions/" + id + "?wait=30")
		if err != nil {
			return submission.View{}, err
		}
		if resp.StatusCode != http.StatusOK {
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				// The API could not read the submission this time. Retry after
				// a pause instead of polling in a tight loop.
				time.Sleep(time.Second)
				continue
			}
			return submission.View{}, fmt.Errorf("GET submission %s: HTTP %d: %s", id, resp.StatusCode, bytes.TrimSpace(data))
		}

		var view submission.View
		err = json.NewDecoder(resp.Body).Decode(&view)
		resp.Body.Close()
		if err != nil {
			return view, err
		}
		if view.Status == submission.StatusDone {
			return view, nil
		}
	}
	return submission.View{}, fmt.Errorf("submission %s not done within %s", id, awaitTimeout)
}

// warmUp runs n submissions to completion without timing them.
func (e *environment) warmUp(n int) {
	for i := 0; i < n; i++ {
		id, status, err := e.submit(helloRequest)
		if err != nil || id == "" {
			log.Fatalf("warm-up submission: status %d, %v", status, err)
		}
		if _, err := e.await(id); err != nil {
			log.Fatalf("warm-up result: %v", err)
		}
	}
}
