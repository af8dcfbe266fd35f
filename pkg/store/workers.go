package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

const workersKey = "runbox:workers"

func workerKey(name string) string { return "runbox:worker:" + name }

// LanguageStatus is what one worker found when it tested a language.
type LanguageStatus struct {
	// State is "pending" until the self-test ends, then "ok" or "failed".
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	// Reason explains why the language failed its self-test.
	Reason string `json:"reason,omitempty"`
}

// Language states of a worker's self-test.
const (
	LanguagePending = "pending"
	LanguageOK      = "ok"
	LanguageFailed  = "failed"
)

// WorkerInfo is the heartbeat record of one worker process.
type WorkerInfo struct {
	Name      string    `json:"name"`
	StartedAt time.Time `json:"started_at"`
	// EngineOK is whether the worker reached its Docker engine at its last
	// heartbeat.
	EngineOK    bool                      `json:"engine_ok"`
	EngineError string                    `json:"engine_error,omitempty"`
	Languages   map[string]LanguageStatus `json:"languages"`
	SeenAt      time.Time                 `json:"seen_at"`
}

// Heartbeat stores the worker's record for ttl. A worker that stops
// sending heartbeats disappears from Workers once ttl has passed.
func (s *Store) Heartbeat(ctx context.Context, info *WorkerInfo, ttl time.Duration) error {
	encoded, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode worker %s: %w", info.Name, err)
	}
	pipe := s.rdb.TxPipeline()
	pipe.Set(ctx, workerKey(info.Name), encoded, ttl)
	pipe.SAdd(ctx, workersKey, info.Name)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store heartbeat of worker %s: %w", info.Name, err)
	}
	return nil
}

// RemoveWorker deletes the worker's record, for a worker that stops.
func (s *Store) RemoveWorker(ctx context.Context, name string) error {
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, workerKey(name))
	pipe.SRem(ctx, workersKey, name)
	_, err := pipe.Exec(ctx)
	return err
}

// Workers returns the records of the workers whose heartbeat is current and
// removes the names of those whose record has expired.
func (s *Store) Workers(ctx context.Context) ([]WorkerInfo, error) {
	names, err := s.rdb.SMembers(ctx, workersKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	keys := make([]string, len(names))
	for i, name := range names {
		keys[i] = workerKey(name)
	}
	values, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	var workers []WorkerInfo
	for i, value := range values {
		raw, ok := value.(string)
		if !ok {
			s.rdb.SRem(ctx, workersKey, names[i])
			continue
		}
		var info WorkerInfo
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			return nil, fmt.Errorf("decode worker %s: %w", names[i], err)
		}
		workers = append(workers, info)
	}
	return workers, nil
}
