// Command runbox-api serves the REST API and the web page. It validates
// submissions, stores them in Redis, enqueues them for the workers and
// returns their results.
//
// It is configured by environment variables; docs/configuration.md lists
// them all with their defaults.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/pkg/catalog"
	"github.com/runbox/runbox/pkg/config"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

type settings struct {
	addr      string
	redisURL  string
	retention time.Duration
	queueCap  int
	policy    submission.Policy
}

// DefaultQueueCap is the default of RUNBOX_QUEUE_CAP.
const DefaultQueueCap = 1000

// queueSizeRefresh is how long the API reuses a queue size it read, so that
// most POSTs skip the queue inspection.
const queueSizeRefresh = 200 * time.Millisecond

func readSettings(env *config.Env) settings {
	return settings{
		addr:      env.String("RUNBOX_HTTP_ADDR", "127.0.0.1:8080"),
		redisURL:  env.String("RUNBOX_REDIS_URL", config.DefaultRedisURL),
		retention: env.Duration("RUNBOX_RESULT_TTL", store.DefaultRetention),
		queueCap:  env.Int("RUNBOX_QUEUE_CAP", DefaultQueueCap, 1),
		policy:    readPolicy(env),
	}
}

// readPolicy reads the request limits: RUNBOX_DEFAULT_<LIMIT> and
// RUNBOX_MAX_<LIMIT> for each run limit, such as RUNBOX_MAX_TIME_MS.
func readPolicy(env *config.Env) submission.Policy {
	p := submission.Policy{
		MaxSourceBytes: env.Int("RUNBOX_MAX_SOURCE_BYTES", submission.DefaultMaxSourceBytes, 1),
		MaxStdinBytes:  env.Int("RUNBOX_MAX_STDIN_BYTES", submission.DefaultMaxStdinBytes, 0),
		Default:        submission.DefaultLimits,
		Max:            submission.MaxLimits,
	}
	for _, l := range []struct {
		name     string
		def, max *int
	}{
		{"TIME_MS", &p.Default.TimeMS, &p.Max.TimeMS},
		{"CPU_TIME_MS", &p.Default.CPUTimeMS, &p.Max.CPUTimeMS},
		{"MEMORY_MB", &p.Default.MemoryMB, &p.Max.MemoryMB},
		{"PROCESSES", &p.Default.Processes, &p.Max.Processes},
		{"OUTPUT_KB", &p.Default.OutputKB, &p.Max.OutputKB},
		{"FILE_SIZE_KB", &p.Default.FileSizeKB, &p.Max.FileSizeKB},
		{"OPEN_FILES", &p.Default.OpenFiles, &p.Max.OpenFiles},
	} {
		*l.def = env.Int("RUNBOX_DEFAULT_"+l.name, *l.def, 1)
		*l.max = env.Int("RUNBOX_MAX_"+l.name, *l.max, 1)
		if *l.def > *l.max {
			env.Fail(fmt.Sprintf("RUNBOX_DEFAULT_%s=%d is above RUNBOX_MAX_%s=%d", l.name, *l.def, l.name, *l.max))
		}
	}
	return p
}

func main() {
	env := &config.Env{}
	log := config.NewLogger(env, "api")
	s := readSettings(env)
	if err := env.Err(); err != nil {
		log.Error("invalid configuration", "error", err)
		os.Exit(2)
	}
	if err := run(s, log); err != nil {
		log.Error("api stopped", "error", err)
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
	rdb := redis.NewClient(redisConfig.Client)
	defer rdb.Close()
	queueClient := asynq.NewClient(redisConfig.Asynq)
	defer queueClient.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	admission := newAdmission(asynq.NewInspectorFromRedisClient(rdb), s.queueCap, queueSizeRefresh)
	srv := newServer(store.New(rdb, s.retention), queueClient, admission, languages, s.policy, log)
	go srv.waiters.listen(ctx, srv.store, log)

	httpServer := &http.Server{
		Addr:              s.addr,
		Handler:           srv.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	errs := make(chan error, 1)
	go func() { errs <- httpServer.ListenAndServe() }()
	log.Info("api listening", "url", "http://"+s.addr+"/", "redis", redisConfig.Client.Addr,
		"queue_cap", s.queueCap)

	select {
	case err := <-errs:
		return fmt.Errorf("serve http on %s: %w", s.addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down http server: %w", err)
	}
	log.Info("api stopped")
	return nil
}
