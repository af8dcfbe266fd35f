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
	"sync"
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
	retryDelay        time.Duration
	resultTTL         time.Duration
	selfTest          bool
	reconcile         reconcileSettings
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
		retryDelay:        env.Duration("RUNBOX_RETRY_DELAY", time.Second),
		resultTTL:         env.Duration("RUNBOX_RESULT_TTL", store.DefaultRetention),
		selfTest:          env.Bool("RUNBOX_SELF_TEST", true),
		reconcile: reconcileSettings{
			interval: env.Duration("RUNBOX_RECONCILE_INTERVAL", time.Minute),
			minAge:   env.Duration("RUNBOX_RECONCILE_MIN_AGE", time.Minute),
			maxAge:   env.Duration("RUNBOX_MAX_SUBMISSION_AGE", time.Hour),
		},
	}
	if s.retryDelay <= 0 {
		env.Fail(fmt.Sprintf("RUNBOX_RETRY_DELAY=%s must be above zero", s.retryDelay))
	}
	if s.reconcile.interval <= 0 {
		env.Fail(fmt.Sprintf("RUNBOX_RECONCILE_INTERVAL=%s must be above zero", s.reconcile.interval))
	}
	if s.reconcile.maxAge <= s.reconcile.minAge {
		env.Fail(fmt.Sprintf("RUNBOX_MAX_SUBMISSION_AGE=%s must be above RUNBOX_RECONCILE_MIN_AGE=%s",
			s.reconcile.maxAge, s.reconcile.minAge))
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

// cleanupGrace is how long a stopping worker waits for the handlers of the
// runs cancelled at RUNBOX_SHUTDOWN_TIMEOUT to set their submissions back
// to queued. runner.Close then waits for the container removals, which
// give up after 30 s each.
const cleanupGrace = 40 * time.Second

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
		store:     store.New(rdb, s.resultTTL),
		runner:    runner,
		languages: languages,
		log:       log,
		statuses:  newLanguageStatuses(languages),
		handlers:  newInflight(),
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := waitForEngine(ctx, runner, log); err != nil {
		return err
	}
	if err := runner.CheckRuntime(ctx); err != nil {
		return err
	}
	w.sweep(ctx)

	server := asynq.NewServer(redisConfig.Asynq, asynq.Config{
		Concurrency:       s.concurrency,
		Queues:            map[string]int{queue.Name: 1},
		TaskCheckInterval: s.taskCheckInterval,
		// Retries become runnable within a second of their delay, not
		// Asynq's default of five seconds.
		DelayedTaskCheckInterval: time.Second,
		// When this has passed after Shutdown, Asynq v0.26 puts each
		// unfinished task back in the queue without counting a retry and
		// then cancels its handler's context.
		ShutdownTimeout: s.shutdownTimeout,
		RetryDelayFunc:  retryDelay(s.retryDelay),
		Logger:          config.AsynqLogger{Log: log},
		LogLevel:        asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.Handle(queue.TaskType, w)
	if err := server.Start(mux); err != nil {
		return fmt.Errorf("start queue server: %w", err)
	}
	log.Info("worker started", "worker", s.name, "concurrency", s.concurrency,
		"runtime", s.sandbox.Runtime, "languages", len(languages.IDs()), "redis", redisConfig.Client.Addr)

	background, cancelBackground := context.WithCancel(context.Background())
	var maintenance sync.WaitGroup
	maintenance.Add(2)
	go func() {
		defer maintenance.Done()
		w.maintain(background, s.selfTest)
	}()
	reconciler := newReconciler(w.store, rdb, s.name, s.reconcile, log.With("component", "reconciler"))
	go func() {
		defer maintenance.Done()
		reconciler.run(background)
	}()

	<-ctx.Done()
	log.Info("worker stopping: no new submissions, waiting for running ones",
		"worker", s.name, "timeout", s.shutdownTimeout.String())
	timeoutNotice := time.AfterFunc(s.shutdownTimeout, func() {
		log.Warn("shutdown timeout passed; interrupting running submissions, which go back to the queue",
			"worker", s.name, "timeout", s.shutdownTimeout.String())
	})
	server.Shutdown()
	timeoutNotice.Stop()
	// Shutdown returns without waiting for the handlers it cancelled, so
	// the process would exit before they requeue their submissions.
	if left := w.handlers.drain(cleanupGrace); left > 0 {
		log.Error("runs still cleaning up at exit; their containers are left to the next worker's sweep",
			"worker", s.name, "runs", left)
	}
	cancelBackground()
	maintenance.Wait()
	removeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.store.RemoveWorker(removeCtx, s.name); err != nil {
		log.Warn("remove worker record", "worker", s.name, "error", err)
	}
	log.Info("worker stopped", "worker", s.name)
	return nil
}

// retryDelay returns the delays between the retries of a platform fault:
// base, then twice as long each time (1 s, 2 s, 4 s with the default base),
// up to 32 times base.
func retryDelay(base time.Duration) asynq.RetryDelayFunc {
	return func(n int, _ error, _ *asynq.Task) time.Duration {
		return base << min(n, 5)
	}
}

// waitForEngine waits until the Docker engine is reachable, logging each
// failed try, so a worker started next to its engine does not exit early.
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
