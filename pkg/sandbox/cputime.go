package sandbox

import (
	"context"
	"encoding/json"
	"time"

	"github.com/docker/docker/api/types/container"
)

// cpuPollInterval is how often the CPU time of a run is read under a
// runtime that ignores RLIMIT_CPU.
const cpuPollInterval = 100 * time.Millisecond

// enforcesRlimitCPU reports whether the runtime sends SIGXCPU at the
// RLIMIT_CPU that the run script sets. NOTE: Debian's runsc (release
// 20221219) ignores the limit, so under runsc the worker reads the
// container's CPU usage from the engine instead.
func (r *Runner) enforcesRlimitCPU() bool {
	return r.config.Runtime != "runsc"
}

// watchCPU kills the container once its CPU usage since the call passes
// the limit, and returns when stop is closed or the usage cannot be read.
// Usage is the container's cgroup total, the runtime's own work for the
// program included, read every cpuPollInterval, so the kill can come up
// to that much CPU time late.
func (s *runSession) watchCPU(limit time.Duration, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	start, err := s.cpuUsage(ctx)
	if err != nil {
		s.logCPUError(ctx, err)
		return
	}
	ticker := time.NewTicker(cpuPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		used, err := s.cpuUsage(ctx)
		if err != nil {
			s.logCPUError(ctx, err)
			return
		}
		if used-start >= limit {
			s.cpuExceeded.Store(true)
			s.kill()
			return
		}
	}
}

// logCPUError logs a failed CPU usage read, unless the run already ended.
func (s *runSession) logCPUError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s.runner.log.Warn("read sandbox CPU usage failed, CPU limit not enforced for this run",
		"container", shortID(s.box.id), "error", err)
}

// cpuUsage returns the container's total CPU time so far.
func (s *runSession) cpuUsage(ctx context.Context) (time.Duration, error) {
	stats, err := s.runner.docker.ContainerStatsOneShot(ctx, s.box.id)
	if err != nil {
		return 0, err
	}
	defer stats.Body.Close()
	var decoded container.StatsResponse
	if err := json.NewDecoder(stats.Body).Decode(&decoded); err != nil {
		return 0, err
	}
	return time.Duration(decoded.CPUStats.CPUUsage.TotalUsage), nil
}
