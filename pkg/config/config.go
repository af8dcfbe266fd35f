// Package config reads the RUNBOX_* environment variables both programs
// share and connects to Redis.
package config

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is used when RUNBOX_REDIS_URL is empty.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Env reads environment variables and collects every invalid one, so a
// program can report all mistakes at once.
type Env struct {
	errs []string
}

// String returns the variable, or def when it is empty.
func (e *Env) String(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// Int returns the variable as an integer of at least minimum, or def when
// it is empty.
func (e *Env) Int(name string, def, minimum int) int {
	raw := strings.TrimSpace(os.Getenv(name))
	if raw == "" {
		return def
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < minimum {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q must be an integer of at least %d", name, raw, minimum))
		return def
	}
	return v
}

// Duration returns the variable as a Go duration such as "500ms" or "2m",
// or def when it is empty.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	raw := strings.TrimSpace(os.Getenv(name))
	if raw == "" {
		return def
	}
	v, err := time.ParseDuration(raw)
	if err != nil || v < 0 {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q must be a duration such as 500ms or 2m", name, raw))
		return def
	}
	return v
}

// Bool returns the variable as a boolean (1, true, yes, 0, false, no), or
// def when it is empty.
func (e *Env) Bool(name string, def bool) bool {
	raw := strings.ToLower(strings.TrimSpace(os.Getenv(name)))
	switch raw {
	case "":
		return def
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	e.errs = append(e.errs, fmt.Sprintf("%s=%q must be true or false", name, raw))
	return def
}

// Fail records an invalid setting that the caller found.
func (e *Env) Fail(message string) {
	e.errs = append(e.errs, message)
}

// Err returns every invalid variable seen so far, or nil.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %s", strings.Join(e.errs, "; "))
}

// Redis holds the two client configurations derived from one Redis URL.
type Redis struct {
	URL    string
	Client *redis.Options
	Asynq  asynq.RedisClientOpt
}

// ParseRedis parses a redis:// URL for go-redis and for Asynq.
func ParseRedis(url string) (Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return Redis{}, fmt.Errorf("parse RUNBOX_REDIS_URL %q: %w", url, err)
	}
	return Redis{
		URL:    url,
		Client: opts,
		Asynq: asynq.RedisClientOpt{
			Network:   opts.Network,
			Addr:      opts.Addr,
			Username:  opts.Username,
			Password:  opts.Password,
			DB:        opts.DB,
			TLSConfig: opts.TLSConfig,
		},
	}, nil
}

// NewLogger returns a slog logger on stderr. RUNBOX_LOG_LEVEL sets its
// level (debug, info, warn or error, default info), and RUNBOX_LOG_FORMAT
// its format (text or json, default text).
func NewLogger(env *Env, program string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(env.String("RUNBOX_LOG_LEVEL", "info"))); err != nil {
		env.errs = append(env.errs, "RUNBOX_LOG_LEVEL must be debug, info, warn or error")
	}
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if env.String("RUNBOX_LOG_FORMAT", "text") == "json" {
		handler = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(handler).With("program", program)
}

// AsynqLogger adapts slog to Asynq's logger interface.
type AsynqLogger struct{ Log *slog.Logger }

func (l AsynqLogger) Debug(args ...any) { l.Log.Debug(fmt.Sprint(args...), "component", "asynq") }
func (l AsynqLogger) Info(args ...any)  { l.Log.Info(fmt.Sprint(args...), "component", "asynq") }
func (l AsynqLogger) Warn(args ...any)  { l.Log.Warn(fmt.Sprint(args...), "component", "asynq") }
func (l AsynqLogger) Error(args ...any) { l.Log.Error(fmt.Sprint(args...), "component", "asynq") }

// Fatal logs and exits, as Asynq's interface requires.
func (l AsynqLogger) Fatal(args ...any) {
	l.Log.Error(fmt.Sprint(args...), "component", "asynq")
	os.Exit(1)
}
