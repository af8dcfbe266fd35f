package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/runbox/runbox/pkg/catalog"
)

// sandboxEnv is the whole environment of the sandbox besides what the image
// sets: nothing of the worker or the host reaches the program.
var sandboxEnv = []string{"HOME=/box", "TMPDIR=/tmp", "LANG=C.UTF-8"}

// supervisorUser runs the container's init process and its sleep.
const supervisorUser = "10002:10002"

// containerProcesses is how many processes a sandbox has besides the
// program's own: the init process, its sleep and one exec's shell.
const containerProcesses = 3

// startContainer creates and starts the sandbox container for a job and
// returns its id. The container is removed again if it cannot be started.
func (r *Runner) startContainer(ctx context.Context, jobID string, lang *catalog.Language, memoryMB, processes int) (string, error) {
	config, host, name := r.containerSpec(jobID, lang, memoryMB, processes)

	// A create cancelled in flight can leave a container that the engine
	// made but never reported, so it runs to its end and is removed after.
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	created, err := r.docker.ContainerCreate(createCtx, config, host, nil, nil, name)
	cancel()
	if err != nil {
		return "", platformError("create container from "+config.Image, err)
	}
	if ctx.Err() != nil {
		r.removeLater(created.ID, jobID)
		return "", ctx.Err()
	}
	if err := r.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		r.removeContainer(created.ID, jobID)
		return "", platformError("start container", err)
	}
	return created.ID, nil
}

// containerSpec returns the configuration and name of a sandbox container.
// An empty jobID makes an unnamed pool container.
func (r *Runner) containerSpec(jobID string, lang *catalog.Language, memoryMB, processes int) (*container.Config, *container.HostConfig, string) {
	initProcess := true
	// The init process, sleep and the step's shell count too.
	pids := int64(processes + containerProcesses)
	memory := int64(memoryMB) << 20
	uid, gid, _ := splitUser(r.config.User)
	tmpfs := func(sizeMB int, extra string) string {
		return fmt.Sprintf("rw,%snosuid,nodev,size=%dm,uid=%s,gid=%s,mode=0700",
			extra, sizeMB, uid, gid)
	}

	labels := map[string]string{LabelSubmission: jobID, LabelWorker: r.config.WorkerName}
	name := submissionContainerName(jobID) + "-" + randomSuffix()
	if jobID == "" {
		// A pool container gets its name when a submission takes it.
		labels[LabelPool] = lang.ID
		name = ""
	}

	config := &container.Config{
		Image: ImageRef(lang),
		Cmd:   []string{"sleep", "infinity"},
		// The init process and its sleep run as another unprivileged user
		// than the program, so the program can neither signal nor ptrace
		// them.
		User:            supervisorUser,
		WorkingDir:      "/box",
		Env:             sandboxEnv,
		NetworkDisabled: true,
		Labels:          labels,
	}

	host := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		Init:           &initProcess,
		IpcMode:        "private",
		Runtime:        r.config.Runtime,
		LogConfig:      container.LogConfig{Type: "none"},
		Tmpfs: map[string]string{
			"/box": tmpfs(r.config.WorkDirMB, "exec,"),
			"/tmp": tmpfs(r.config.TmpMB, "exec,"),
		},
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory,
			PidsLimit:  &pids,
			NanoCPUs:   r.config.NanoCPUs,
		},
	}
	return config, host, name
}

// splitUser splits "uid:gid"; a bare uid is used as the gid too.
func splitUser(user string) (string, string, bool) {
	uid, gid, ok := strings.Cut(user, ":")
	if !ok {
		return user, user, false
	}
	return uid, gid, true
}

// submissionContainerName is the name prefix of the containers that run a
// submission; a pooled container is renamed to it when taken.
func submissionContainerName(jobID string) string {
	return "runbox-" + jobID
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// removeLater removes a container in the background; Close waits for it.
func (r *Runner) removeLater(id, jobID string) {
	r.removals.Add(1)
	go func() {
		defer r.removals.Done()
		r.removeContainer(id, jobID)
	}()
}

// removeContainer force-removes a container. It uses its own context, so
// the container goes even when the job's context was cancelled.
func (r *Runner) removeContainer(id, jobID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil {
		r.log.Error("remove sandbox container", "container", shortID(id),
			"submission", jobID, "error", err)
	}
}

func shortID(id string) string {
	return id[:min(12, len(id))]
}

// execStep is one process run inside the sandbox.
type execStep struct {
	cmd         []string
	stdin       string
	timeout     time.Duration
	outputLimit int
	// env is added to the sandbox environment, as NAME=value entries.
	env []string
	// mergeOutput sends stderr into the stdout buffer, for compiler output.
	mergeOutput bool
}

// execResult is the outcome and output of one step.
type execResult struct {
	outcome
	stdout  *cappedBuffer
	stderr  *cappedBuffer
	elapsed time.Duration
}

// exec runs one step and waits for it to end, for its time limit, or for
// its output to pass the cap. The last two kill the container, so no step
// may follow them.
func (r *Runner) exec(ctx context.Context, containerID string, step execStep) (*execResult, error) {
	created, err := r.docker.ContainerExecCreate(ctx, containerID, container.ExecOptions{
		Cmd:          step.cmd,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		WorkingDir:   "/box",
		Env:          step.env,
		User:         r.config.User,
	})
	if err != nil {
		return nil, platformError("create exec", err)
	}

	var killOnce sync.Once
	var killed, timedOut, exceeded atomic.Bool
	kill := func() {
		killOnce.Do(func() {
			killed.Store(true)
			killCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.docker.ContainerKill(killCtx, containerID, "KILL"); err != nil {
				r.log.Warn("kill sandbox container", "container", shortID(containerID), "error", err)
			}
		})
	}
	res := &execResult{}
	// The kill runs apart from the stream copy, which must keep draining:
	// the engine finishes a kill only after the exec's output is consumed.
	overflow := func() { exceeded.Store(true); go kill() }
	res.stdout = newCappedBuffer(step.outputLimit, overflow)
	res.stderr = res.stdout
	if !step.mergeOutput {
		res.stderr = newCappedBuffer(step.outputLimit, overflow)
	}

	start := time.Now()
	attach, err := r.docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, platformError("attach exec", err)
	}
	defer attach.Close()

	timer := time.AfterFunc(step.timeout, func() { timedOut.Store(true); kill() })
	defer timer.Stop()
	stopOnCancel := context.AfterFunc(ctx, kill)
	defer stopOnCancel()

	go func() {
		// A program that exits without reading its stdin makes this write
		// fail, which is expected and ignored.
		if step.stdin != "" {
			_, _ = io.WriteString(attach.Conn, step.stdin)
		}
		_ = attach.CloseWrite()
	}()
	_, copyErr := stdcopy.StdCopy(res.stdout, res.stderr, attach.Reader)
	res.elapsed = time.Since(start)
	timer.Stop()

	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.TimedOut = timedOut.Load() && !exceeded.Load()
	res.OutputExceeded = exceeded.Load()
	if killed.Load() {
		return res, nil
	}
	if copyErr != nil && !errors.Is(copyErr, io.EOF) {
		return nil, platformError("read exec output", copyErr)
	}
	return res, r.inspectExit(ctx, containerID, created.ID, res)
}

// inspectExit fills in the exit code and, for an exit by SIGKILL the runner
// did not cause, whether the kernel's OOM killer sent it. The engine sets
// OOMKilled only when the container stops, so the container is stopped
// first; it is removed right after anyway.
func (r *Runner) inspectExit(ctx context.Context, containerID, execID string, res *execResult) error {
	inspect, err := r.docker.ContainerExecInspect(ctx, execID)
	if err != nil {
		return platformError("inspect exec", err)
	}
	for i := 0; inspect.Running && i < 50; i++ {
		time.Sleep(2 * time.Millisecond)
		if inspect, err = r.docker.ContainerExecInspect(ctx, execID); err != nil {
			return platformError("inspect exec", err)
		}
	}
	res.ExitCode = inspect.ExitCode
	if res.ExitCode != 128+9 {
		return nil
	}
	res.OOMKilled, err = r.oomKilled(ctx, containerID)
	return err
}

// oomKilled stops the container and reports whether the kernel's OOM
// killer ended one of its processes. The engine sets OOMKilled only when
// the container stops, so it can run no further step afterwards.
func (r *Runner) oomKilled(ctx context.Context, containerID string) (bool, error) {
	if err := r.docker.ContainerKill(ctx, containerID, "KILL"); err != nil {
		return false, platformError("stop container to read its OOM state", err)
	}
	waitCh, errCh := r.docker.ContainerWait(ctx, containerID, container.WaitConditionNotRunning)
	select {
	case <-waitCh:
	case err := <-errCh:
		return false, platformError("wait for container to stop", err)
	}
	state, err := r.docker.ContainerInspect(ctx, containerID)
	if err != nil {
		return false, platformError("inspect container", err)
	}
	return state.State != nil && state.State.OOMKilled, nil
}

// RemoveSubmissionContainers removes every container labelled with the
// submission id, such as one left by an earlier attempt of a worker that
// died. It returns how many it removed.
func (r *Runner) RemoveSubmissionContainers(ctx context.Context, submissionID string) (int, error) {
	byLabel, err := r.removeMatching(ctx, filters.NewArgs(
		filters.Arg("label", LabelSubmission+"="+submissionID)), 0)
	if err != nil {
		return byLabel, err
	}
	// A pooled container carries the submission only in its name.
	byName, err := r.removeMatching(ctx, filters.NewArgs(
		filters.Arg("name", "^/"+submissionContainerName(submissionID)+"$")), 0)
	return byLabel + byName, err
}

// Sweep removes sandbox containers older than maxAge, which must exceed the
// longest possible run. It returns how many it removed.
//
// An idle pool container, which has the runbox.pool label and no
// submission name yet, may be kept by another worker on the same engine,
// so it is removed only after twice the pool's idle timeout.
func (r *Runner) Sweep(ctx context.Context, maxAge time.Duration) (int, error) {
	return r.removeMatching(ctx, filters.NewArgs(filters.Arg("label", LabelSubmission)), maxAge)
}

// minAgeToSweep returns how old a container must be before Sweep removes it.
func (r *Runner) minAgeToSweep(c container.Summary, maxAge time.Duration) time.Duration {
	idlePool := c.Labels[LabelPool] != ""
	for _, name := range c.Names {
		if strings.HasPrefix(name, "/"+submissionContainerName("")) {
			idlePool = false
		}
	}
	if idlePool {
		return max(maxAge, 2*r.config.PoolIdleTimeout)
	}
	return maxAge
}

func (r *Runner) removeMatching(ctx context.Context, match filters.Args, minAge time.Duration) (int, error) {
	list, err := r.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: match})
	if err != nil {
		return 0, platformError("list sandbox containers", err)
	}
	removed := 0
	for _, c := range list {
		age := time.Since(time.Unix(c.Created, 0))
		if minAge > 0 {
			minAge := r.minAgeToSweep(c, minAge)
			if age < minAge || (r.pool != nil && r.pool.owns(c.ID)) {
				continue
			}
		}
		err := r.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil {
			return removed, platformError("remove container "+shortID(c.ID), err)
		}
		removed++
		r.log.Info("removed leftover sandbox container", "container", shortID(c.ID),
			"submission", c.Labels[LabelSubmission], "age", age.Round(time.Second).String(),
			"state", c.State)
	}
	return removed, nil
}

// CountContainers returns how many sandbox containers the named worker
// has on the engine.
func (r *Runner) CountContainers(ctx context.Context, worker string) (int, error) {
	list, err := r.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelWorker+"="+worker))})
	if err != nil {
		return 0, platformError("list sandbox containers", err)
	}
	return len(list), nil
}

// Ping checks that the engine is reachable.
func (r *Runner) Ping(ctx context.Context) error {
	if _, err := r.docker.Ping(ctx); err != nil {
		return platformError("ping docker engine", err)
	}
	return nil
}

// ImageExists reports whether the language's image is present on the engine.
func (r *Runner) ImageExists(ctx context.Context, lang *catalog.Language) (bool, error) {
	_, err := r.docker.ImageInspect(ctx, ImageRef(lang))
	if err == nil {
		return true, nil
	}
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return false, platformError("inspect image "+ImageRef(lang), err)
}
