package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/runbox/runbox/pkg/catalog"
)

// sandboxEnv is the whole environment of the sandbox besides what the image
// sets: nothing of the worker or the host reaches the program.
var sandboxEnv = []string{"HOME=/box", "TMPDIR=/tmp", "LANG=C.UTF-8"}

// containerProcesses is how many processes a sandbox has besides the
// program's own: the init process and the shell that runs the job.
const containerProcesses = 2

// Under runsc the pids cgroup counts gVisor's own host threads, about nine
// for each sandboxed process on the ptrace platform (measured with Debian's
// runsc 20221219), and gVisor dies without a message when it cannot
// create one. The cgroup limit therefore leaves room for that, and the
// program's own limit is RLIMIT_NPROC inside gVisor, which the job script
// sets.
const (
	runscPidsPerProcess = 12
	runscPidsBase       = 64
)

// startTimeout bounds the creation of a container, and for a pool
// container its whole start, so a pool container still in the created state
// after it will never be started.
const startTimeout = time.Minute

// pidsLimit returns the pids cgroup limit of a sandbox whose program may
// have the given number of processes.
func (r *Runner) pidsLimit(processes int) int64 {
	if r.config.Runtime == "runsc" {
		return int64(processes*runscPidsPerProcess + runscPidsBase)
	}
	return int64(processes + containerProcesses)
}

// startContainer creates, attaches to and starts the sandbox container
// for a job. Its main process then waits for the job on stdin. The
// container is removed again if any step fails.
func (r *Runner) startContainer(ctx context.Context, jobID string, lang *catalog.Language, memoryMB, processes int) (*box, error) {
	config, host, name := r.containerSpec(jobID, lang, memoryMB, processes)

	// A create cancelled in flight can leave a container that the engine
	// made but never reported. The create therefore ignores the job's
	// cancellation, and the new container is removed if the job ended.
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	created, err := r.docker.ContainerCreate(createCtx, config, host, nil, nil, name)
	cancel()
	if err != nil {
		return nil, platformError("create container from "+config.Image, err)
	}
	if ctx.Err() != nil {
		r.removeLater(created.ID, jobID)
		return nil, ctx.Err()
	}
	// Attaching before the start means no output can be missed.
	attach, err := r.docker.ContainerAttach(ctx, created.ID, container.AttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	if err != nil {
		r.removeLater(created.ID, jobID)
		return nil, platformError("attach to container", err)
	}
	if err := r.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		attach.Close()
		r.removeContainer(created.ID, jobID)
		return nil, platformError("start container", err)
	}
	b := &box{id: created.ID, attach: attach}
	r.watchStop(b)
	return b, nil
}

// containerSpec returns the configuration and name of a sandbox container.
// An empty jobID makes an unnamed pool container.
func (r *Runner) containerSpec(jobID string, lang *catalog.Language, memoryMB, processes int) (*container.Config, *container.HostConfig, string) {
	initProcess := true
	pids := r.pidsLimit(processes)
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
		Cmd:   []string{"/bin/sh", "-c", bootstrapScript},
		User:  r.config.User,
		// Stdin stays open for the one attached client, the worker, and
		// closes when it disconnects, which ends an unused container.
		OpenStdin:       true,
		StdinOnce:       true,
		AttachStdin:     true,
		AttachStdout:    true,
		AttachStderr:    true,
		WorkingDir:      "/box",
		Env:             append(append([]string{}, sandboxEnv...), lang.Env...),
		NetworkDisabled: true,
		Labels:          labels,
	}

	host := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges", "seccomp=" + r.seccomp},
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

// submissionContainerName returns the name prefix of the containers that
// run a submission. A pooled container is renamed to it when taken.
func submissionContainerName(jobID string) string {
	return "runbox-" + jobID
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// removeLater removes a container in the background. Close waits for the
// removal.
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
// A running idle pool container, which has the runbox.pool label and no
// submission name yet, may belong to another worker on the same engine,
// so it is removed only after twice the pool's idle timeout. One that has
// exited lost its worker, whose closed connection ended its main process,
// so it is removed at once. One still in the created state after
// startTimeout lost its worker during the start, so it is removed too.
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
	if idlePool && c.State == "exited" {
		return 0
	}
	if idlePool && c.State == "created" {
		return min(maxAge, startTimeout)
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
			required := r.minAgeToSweep(c, minAge)
			if age < required || (r.pool != nil && r.pool.owns(c.ID)) {
				continue
			}
		}
		err := r.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if errdefs.IsNotFound(err) || errdefs.IsConflict(err) {
			// Another removal, such as that of the worker that ran it, came first.
			continue
		}
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
