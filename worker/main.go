// Command runbox-worker takes submissions from the Asynq queue and runs
// each in a fresh sandbox container on its Docker engine.
//
// It is configured by environment variables; docs/configuration.md lists
// them all with their defaults.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/config"
	"github.com/runbox/runbox/pkg/queue"
	"github.com/runbox/runbox/pkg/sandbox"
	"github.com/runbox/runbox/pkg/store"
)

// settings is the worker's configuration, read from the environment.
type settings struct {
	redisURL          string
	name              string
	concurrency       int
	taskCheckInterval time.Duration
	shutdownTimeout   time.Duration
	selfTest          bool
	sandbox           sandbox.Config
}

func readSettings(env *config.Env) settings {
	host, _ := os.Hostname()
	s := settings{
		redisURL:          env.String("RUNBOX_REDIS_URL", config.DefaultRedisURL),
		name:              env.String("RUNBOX_WORKER_NAME", fmt.Sprintf("%s-%d", host, os.Getpid())),
		concurrency:       env.Int("RUNBOX_CONCURRENCY", runtime.NumCPU(), 1),
		taskCheckInterval: env.Duration("RUNBOX_TASK_CHECK_INTERVAL", 10*time.Millisecond),
		shutdownTimeout:   env.Duration("RUNBOX_SHUTDOWN_TIMEOUT", 30*time.Second),
		selfTest:          env.Bool("RUNBOX_SELF_TEST", true),
	}
	s.sandbox = sandbox.Config{
		Runtime:            env.String("RUNBOX_RUNTIME", ""),
		WorkerName:         s.name,
		CompileOutputLimit: env.Int("RUNBOX_COMPILE_OUTPUT_LIMIT_BYTES", sandbox.DefaultCompileOutputLimit, 1),
		CompileTime:        env.Duration("RUNBOX_COMPILE_TIME", sandbox.DefaultCompileTime),
		CompileMemoryMB:    env.Int("RUNBOX_COMPILE_MEMORY_MB", sandbox.DefaultCompileMemoryMB, 16),
		WorkDirMB:          env.Int("RUNBOX_WORKDIR_MB", sandbox.DefaultWorkDirMB, 1),
		TmpMB:              env.Int("RUNBOX_TMP_MB", sandbox.DefaultTmpMB, 1),
		PoolSize:           env.Int("RUNBOX_POOL_SIZE", s.concurrency, 0),
		PoolIdleTimeout:    env.Duration("RUNBOX_POOL_IDLE_TIMEOUT", sandbox.DefaultPoolIdleTimeout),
	}
	return s
}

func main() {
	env := &config.Env{}
	log := config.NewLogger(env, "worker")
	s := readSettings(env)
	if err := env.Err(); err != nil {
		log.Error("invalid configuration", "error", err)
		os.Exit(2)
	}
	if err := run(s, log); err != nil {
		log.Error("worker stopped", "error", err)
		os.Exit(1)
	}
}

func run(s settings, log *slog.Logger) error {
	languages, err := catalog.Load()
	if err != nil {
		return err
	}
	redisConfig, err := config.ParseRedis(s.redisURL)
	if err != nil {
		return err
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("create docker client: %w", err)
	}
	defer docker.Close()

	rdb := redis.NewClient(redisConfig.Client)
	defer rdb.Close()
	runner := sandbox.NewRunner(docker, s.sandbox, log.With("component", "sandbox"))
	// Close removes the pooled containers and waits for every removal.
	defer runner.Close()
	w := &worker{
		name:      s.name,
		store:     store.New(rdb, 0),
		runner:    runner,
		languages: languages,
		log:       log,
		statuses:  newLanguageStatuses(languages),
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := waitForEngine(ctx, runner, log); err != nil {
		return err
	}
	w.sweep(ctx)

	server := asynq.NewServer(redisConfig.Asynq, asynq.Config{
		Concurrency:       s.concurrency,
		Queues:            map[string]int{queue.Name: 1},
		TaskCheckInterval: s.taskCheckInterval,
		ShutdownTimeout:   s.shutdownTimeout,
		RetryDelayFunc:    retryDelay,
		Logger:            config.AsynqLogger{Log: log},
		LogLevel:          asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.Handle(queue.TaskType, w)
	if err := server.Start(mux); err != nil {
		return fmt.Errorf("start queue server: %w", err)
	}
	log.Info("worker started", "worker", s.name, "concurrency", s.concurrency,
		"runtime", s.sandbox.Runtime, "languages", len(languages.IDs()))

	background, cancelBackground := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.maintain(background, s.selfTest)
	}()

	<-ctx.Done()
	log.Info("worker stopping: no new submissions, waiting for running ones",
		"worker", s.name, "timeout", s.shutdownTimeout.String())
	server.Shutdown()
	cancelBackground()
	<-done
	removeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.store.RemoveWorker(removeCtx, s.name); err != nil {
		log.Warn("remove worker record", "worker", s.name, "error", err)
	}
	log.Info("worker stopped", "worker", s.name)
	return nil
}

// retryDelay spaces out the retries of a platform fault: 1 s, 2 s, 4 s.
func retryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	return time.Second << min(n, 5)
}

// waitForEngine waits until the Docker engine answers, logging each failed
// try, so a worker started next to its engine does not exit early.
func waitForEngine(ctx context.Context, runner *sandbox.Runner, log *slog.Logger) error {
	for attempt := 1; ; attempt++ {
		err := runner.Ping(ctx)
		if err == nil {
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("docker engine not reachable; retrying", "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
			return errors.New("stopped while waiting for the docker engine")
		case <-time.After(time.Second):
		}
	}
}
