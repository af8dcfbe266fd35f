// Package compose runs the top-level docker-compose.yml the way an operator
// would: it builds the compose images, starts Redis, the API and two
// Docker-in-Docker workers with docker-compose, and drives the API over
// HTTP.
//
// The tests need the Docker engine, the images of `make images` (base,
// redis, python and bash) and docker-compose. `make test` provides all
// three. A missing docker-compose fails the tests, and only -short skips
// them.
package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/runbox/runbox/internal/testenv"
)

// testLanguages are the languages whose archives the test's workers load.
const testLanguages = "python,bash"

// submissionCount is how many submissions the two workers share.
const submissionCount = 20

// project is one docker-compose project started by a test.
type project struct {
	name    string
	root    string
	files   []string
	env     []string
	baseURL string
}

// requireCompose skips the test under -short and fails it when
// docker-compose is not in PATH.
func requireCompose(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("docker-compose tests need a Docker engine, so -short skips them")
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatalf("docker-compose not found in PATH (%v). Install it with `make setup-test` "+
			"(Debian package docker-compose).", err)
	}
}

// repoRoot returns the repository's top directory, two levels above this
// package.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// command runs a program in dir with extra environment variables and
// returns its standard output. It fails the test, showing both outputs,
// when the program fails.
func command(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s failed: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}

// composeArgs returns the docker-compose arguments for the project's name
// and files, followed by args.
func (p *project) composeArgs(args ...string) []string {
	full := []string{"--ansi", "never", "-p", p.name}
	for _, file := range p.files {
		full = append(full, "-f", file)
	}
	return append(full, args...)
}

// compose runs docker-compose with the project's name, files and
// environment.
func (p *project) compose(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	return command(t, ctx, p.root, p.env, "docker-compose", p.composeArgs(args...)...)
}

// composeQuiet is compose for cleanup. It returns the combined output and
// the error instead of failing the test.
func (p *project) composeQuiet(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker-compose", p.composeArgs(args...)...)
	cmd.Dir = p.root
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// buildImages builds runbox-api and runbox-worker into a temporary
// directory and runs deployments/scripts/compose-images.sh, which tags the
// api and worker images with tag and writes the archives of testLanguages.
// The images are removed when the test ends.
func buildImages(t *testing.T, ctx context.Context, root, tag string) {
	t.Helper()
	binDir := t.TempDir()
	for _, program := range []string{"api", "worker"} {
		command(t, ctx, root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath",
			"-o", filepath.Join(binDir, "runbox-"+program), "./"+program)
	}
	t.Cleanup(func() {
		out, err := exec.Command("docker", "image", "rm", "runbox/api:"+tag, "runbox/worker:"+tag).CombinedOutput()
		if err != nil {
			t.Logf("remove test images: %v\n%s", err, out)
		}
	})
	out := command(t, ctx, root, []string{
		"LANGUAGES=" + testLanguages,
		"RUNBOX_BIN_DIR=" + binDir,
		"RUNBOX_IMAGE_TAG=" + tag,
	}, "deployments/scripts/compose-images.sh")
	t.Logf("compose-images:\n%s", out)
}

// startProject builds the images and starts the compose project with the
// unprivileged worker file, the given number of workers and any extra
// environment variables (NAME=value) for docker-compose. It runs
// `docker-compose down -v` when the test ends, and checks that the
// workers' engine volumes are gone.
func startProject(t *testing.T, ctx context.Context, workers int, extraEnv ...string) *project {
	t.Helper()
	requireCompose(t)
	root := repoRoot(t)
	// Compose project names allow lowercase letters, digits, - and _.
	name := fmt.Sprintf("runboxtest%d", time.Now().UnixNano())
	buildImages(t, ctx, root, name)

	port := testenv.FreePort(t)
	p := &project{
		name: name,
		root: root,
		// The unprivileged file lets the tests run on engines that reject
		// privileged containers too.
		files: []string{"docker-compose.yml", "deployments/docker-compose.unprivileged.yml"},
		env: []string{
			"RUNBOX_PORT=" + port,
			"RUNBOX_BIND_ADDR=127.0.0.1",
			"RUNBOX_IMAGE_TAG=" + name,
			"RUNBOX_LANGUAGES=" + testLanguages,
			"RUNBOX_CONCURRENCY=2",
			"RUNBOX_LOG_LEVEL=info",
		},
		baseURL: "http://127.0.0.1:" + port,
	}
	p.env = append(p.env, extraEnv...)

	var volumes []string
	t.Cleanup(func() {
		downCtx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := p.composeQuiet(downCtx, "logs", "--tail", "150")
			t.Logf("docker-compose logs:\n%s", logs)
		}
		if out, err := p.composeQuiet(downCtx, "down", "-v", "--remove-orphans", "-t", "30"); err != nil {
			t.Errorf("docker-compose down -v failed: %v\n%s", err, out)
		}
		for _, volume := range volumes {
			if exec.Command("docker", "volume", "inspect", volume).Run() == nil {
				t.Errorf("engine volume %s of a worker is left after down -v", volume)
			}
		}
	})

	start := time.Now()
	p.compose(t, ctx, "up", "-d", "--scale", fmt.Sprintf("worker=%d", workers))
	t.Logf("docker-compose up returned after %s", time.Since(start).Round(time.Second))
	for _, id := range p.workerContainers(t, ctx) {
		volumes = append(volumes, engineVolume(t, ctx, id))
	}
	return p
}

// workerContainers returns the full IDs of the worker containers.
func (p *project) workerContainers(t *testing.T, ctx context.Context) []string {
	t.Helper()
	ids := strings.Fields(p.compose(t, ctx, "ps", "-q", "worker"))
	slices.Sort(ids)
	return ids
}

// engineVolume returns the name of the volume mounted at /var/lib/docker
// in a container.
func engineVolume(t *testing.T, ctx context.Context, container string) string {
	t.Helper()
	out := command(t, ctx, "", nil, "docker", "inspect", "-f",
		`{{range .Mounts}}{{if eq .Destination "/var/lib/docker"}}{{.Name}}{{end}}{{end}}`, container)
	name := strings.TrimSpace(out)
	if name == "" {
		t.Fatalf("worker container %s has no volume at /var/lib/docker", container)
	}
	return name
}

// getJSON fetches a URL and decodes its JSON body into v, returning the
// HTTP status.
func getJSON(ctx context.Context, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("decode %s: %w (body %q)", url, err, body)
	}
	return resp.StatusCode, nil
}

// languageEntry is the part of a GET /api/v1/languages entry that the
// test reads.
type languageEntry struct {
	ID        string `json:"id"`
	Available bool   `json:"available"`
}

// waitReady waits until the API reports the given number of workers with
// an engine and every test language as available.
func (p *project) waitReady(t *testing.T, ctx context.Context, workers int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var health struct {
			Workers           int `json:"workers"`
			WorkersWithEngine int `json:"workers_with_engine"`
		}
		var languages []languageEntry
		_, healthErr := getJSON(ctx, p.baseURL+"/healthz", &health)
		_, languagesErr := getJSON(ctx, p.baseURL+"/api/v1/languages", &languages)
		if healthErr == nil && languagesErr == nil {
			missing := []string{}
			for _, id := range strings.Split(testLanguages, ",") {
				available := slices.ContainsFunc(languages, func(l languageEntry) bool {
					return l.ID == id && l.Available
				})
				if !available {
					missing = append(missing, id)
				}
			}
			if health.WorkersWithEngine == workers && len(missing) == 0 {
				return
			}
			last = fmt.Sprintf("%d workers with an engine, languages not available: %v", health.WorkersWithEngine, missing)
		} else {
			last = fmt.Sprintf("healthz: %v, languages: %v", healthErr, languagesErr)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("stack not ready within %s: %s", timeout, last)
}

// result is the part of a submission's JSON that the test checks.
type result struct {
	ID       string  `json:"id"`
	Status   string  `json:"status"`
	Verdict  string  `json:"verdict"`
	Message  string  `json:"message"`
	Stdout   *string `json:"stdout"`
	Stderr   *string `json:"stderr"`
	ExitCode *int    `json:"exit_code"`
	Worker   string  `json:"worker"`
}

// submit posts a submission and returns its id.
func (p *project) submit(t *testing.T, ctx context.Context, language, source, stdin string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"language": language, "source": source, "stdin": stdin})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.baseURL+"/api/v1/submissions", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /api/v1/submissions: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/submissions = %d %s, want 202", resp.StatusCode, data)
	}
	var accepted struct{ ID string }
	if err := json.Unmarshal(data, &accepted); err != nil || accepted.ID == "" {
		t.Fatalf("decode 202 body %s: %v", data, err)
	}
	return accepted.ID
}

// await long-polls a submission until it is done.
func (p *project) await(t *testing.T, ctx context.Context, id string, timeout time.Duration) result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var r result
		status, err := getJSON(ctx, p.baseURL+"/api/v1/submissions/"+id+"?wait=10", &r)
		if err != nil {
			t.Fatalf("GET submission %s: %v", id, err)
		}
		if status != http.StatusOK {
			t.Fatalf("GET submission %s = %d, want 200", id, status)
		}
		if r.Status == "done" {
			return r
		}
	}
	t.Fatalf("submission %s not done within %s", id, timeout)
	return result{}
}

// engineID returns the ID that `docker info` shows inside the index-th
// worker (counted from 1).
func (p *project) engineID(t *testing.T, ctx context.Context, index int) string {
	t.Helper()
	out := p.compose(t, ctx, "exec", "-T", fmt.Sprintf("--index=%d", index), "worker",
		"docker", "info", "-f", "{{.ID}}")
	return strings.TrimSpace(out)
}

func TestComposeConfigVariants(t *testing.T) {
	requireCompose(t)
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cases := []struct {
		name           string
		files          []string
		wantPrivileged bool
	}{
		{"default", []string{"docker-compose.yml"}, true},
		{"unprivileged", []string{"docker-compose.yml", "deployments/docker-compose.unprivileged.yml"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--ansi", "never"}
			for _, file := range tc.files {
				args = append(args, "-f", file)
			}
			out := command(t, ctx, root, nil, "docker-compose", append(args, "config")...)
			var config struct {
				Services map[string]struct {
					Privileged bool     `yaml:"privileged"`
					CapDrop    []string `yaml:"cap_drop"`
				} `yaml:"services"`
			}
			if err := decodeYAML(out, &config); err != nil {
				t.Fatalf("decode docker-compose config output: %v\n%s", err, out)
			}
			for _, service := range []string{"redis", "api", "worker"} {
				if _, ok := config.Services[service]; !ok {
					t.Errorf("service %s missing from %v", service, tc.files)
				}
			}
			worker := config.Services["worker"]
			if worker.Privileged != tc.wantPrivileged {
				t.Errorf("worker privileged = %t, want %t", worker.Privileged, tc.wantPrivileged)
			}
			if !tc.wantPrivileged && !slices.Contains(worker.CapDrop, "SYS_RESOURCE") {
				t.Errorf("worker cap_drop = %v, want SYS_RESOURCE dropped", worker.CapDrop)
			}
		})
	}
}

func TestComposeTwoWorkersShareSubmissions(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := startProject(t, ctx, 2)
	p.waitReady(t, ctx, 2, 4*time.Minute)
	t.Logf("stack ready after %s", time.Since(start).Round(time.Second))

	containers := p.workerContainers(t, ctx)
	if len(containers) != 2 {
		t.Fatalf("docker-compose ps lists %d worker containers, want 2: %v", len(containers), containers)
	}

	t.Run("each worker has its own engine", func(t *testing.T) {
		host := strings.TrimSpace(command(t, ctx, "", nil, "docker", "info", "-f", "{{.ID}}"))
		first, second := p.engineID(t, ctx, 1), p.engineID(t, ctx, 2)
		if first == "" {
			t.Fatal("worker 1 reports an empty engine ID")
		}
		if second == "" {
			t.Fatal("worker 2 reports an empty engine ID")
		}
		if first == host {
			t.Errorf("worker 1 engine ID %s equals the host engine's", first)
		}
		if second == host {
			t.Errorf("worker 2 engine ID %s equals the host engine's", second)
		}
		if first == second {
			t.Errorf("both workers report engine ID %s", first)
		}
	})

	t.Run("workers healthy and counted in metrics", func(t *testing.T) {
		// The health check runs every 5 s, so a worker that already serves
		// may still show "starting" for a moment.
		for _, id := range containers {
			var health string
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
				health = strings.TrimSpace(command(t, ctx, "", nil, "docker", "inspect", "-f", "{{.State.Health.Status}}", id))
				if health != "starting" {
					break
				}
			}
			if health != "healthy" {
				t.Errorf("worker container %s health = %q, want healthy", id[:12], health)
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.baseURL+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics = %d %s, want 200", resp.StatusCode, body)
		}
		if !strings.Contains(string(body), "\nrunbox_workers_with_engine 2\n") {
			t.Errorf("GET /metrics lacks runbox_workers_with_engine 2:\n%s", body)
		}
	})

	type job struct {
		id, language, want string
	}
	// Each program sleeps 0.3 s, so one worker with RUNBOX_CONCURRENCY=2
	// would need at least 3 s for all twenty. The other worker polls the
	// queue every 10 ms (the RUNBOX_TASK_CHECK_INTERVAL default), so it
	// takes a share.
	const python = "import time\ntime.sleep(0.3)\nprint(input().upper())"
	const bash = "sleep 0.3; read line; echo \"bash $line\""
	jobs := make([]job, 0, submissionCount)
	for i := range submissionCount {
		stdin := fmt.Sprintf("job-%02d\n", i)
		if i%2 == 0 {
			jobs = append(jobs, job{p.submit(t, ctx, "python", python, stdin), "python", strings.ToUpper(stdin)})
		} else {
			jobs = append(jobs, job{p.submit(t, ctx, "bash", bash, stdin), "bash", "bash " + stdin})
		}
	}

	workers := map[string]int{}
	for _, j := range jobs {
		r := p.await(t, ctx, j.id, 2*time.Minute)
		if r.Verdict != "ok" {
			t.Errorf("%s submission %s: verdict %q (%s), want ok", j.language, j.id, r.Verdict, r.Message)
		}
		if r.Stdout == nil || *r.Stdout != j.want {
			t.Errorf("%s submission %s: stdout %v, want %q", j.language, j.id, deref(r.Stdout), j.want)
		}
		if r.Worker == "" {
			t.Errorf("%s submission %s: worker field is empty", j.language, j.id)
		}
		workers[r.Worker]++
	}
	t.Logf("submissions per worker: %v", workers)
	if len(workers) != 2 {
		t.Errorf("%d distinct workers ran the %d submissions, want 2: %v", len(workers), submissionCount, workers)
	}
	// RUNBOX_WORKER_NAME defaults to <hostname>-<pid>, and a compose
	// container's hostname is its short container ID.
	for name := range workers {
		match := slices.ContainsFunc(containers, func(id string) bool {
			return len(id) >= 12 && strings.HasPrefix(name, id[:12]+"-")
		})
		if !match {
			t.Errorf("worker name %q does not start with a worker container's ID %v", name, containers)
		}
	}
	t.Logf("test body finished after %s", time.Since(start).Round(time.Second))
}

// TestComposeWorkerUnderRunsc starts one worker with RUNBOX_RUNTIME=runsc,
// which its inner engine must run under gVisor, and checks that programs
// see gVisor's kernel rather than the host's.
func TestComposeWorkerUnderRunsc(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := startProject(t, ctx, 1, "RUNBOX_RUNTIME=runsc")
	p.waitReady(t, ctx, 1, 4*time.Minute)

	hostKernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatalf("read the host's kernel release: %v", err)
	}
	id := p.submit(t, ctx, "python", "import os\nprint(os.uname().release)", "")
	r := p.await(t, ctx, id, 2*time.Minute)
	if r.Verdict != "ok" {
		t.Fatalf("verdict %q (%s), stderr %v; want ok", r.Verdict, r.Message, deref(r.Stderr))
	}
	if r.Stdout == nil {
		t.Fatal("the result has no stdout")
	}
	got := strings.TrimSpace(*r.Stdout)
	if got == "" {
		t.Fatal("the program printed no kernel release")
	}
	if got == strings.TrimSpace(string(hostKernel)) {
		t.Errorf("the sandbox sees the host's kernel %s, want gVisor's", got)
	}
	t.Logf("kernel release inside the sandbox: %s", got)

	id = p.submit(t, ctx, "bash", ":(){ :|:& };:", "")
	r = p.await(t, ctx, id, 2*time.Minute)
	if r.Verdict != "time_limit_exceeded" && r.Verdict != "runtime_error" {
		t.Errorf("fork bomb verdict %q (%s), want time_limit_exceeded or runtime_error", r.Verdict, r.Message)
	}
}

func decodeYAML(text string, v any) error {
	return yaml.Unmarshal([]byte(text), v)
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
