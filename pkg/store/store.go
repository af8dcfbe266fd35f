// Package store keeps submissions and their results in Redis.
//
// Each submission is one hash, runbox:submission:<id>, with the request in
// the field "request" and the mutable state (status, attempts, timestamps,
// result) in fields of their own. Status changes run as Lua scripts, so a
// finished submission can never be finished a second time or set back to
// running. Every change is published on the channel runbox:status with the
// submission id as the message.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/runbox/runbox/pkg/submission"
)

// StatusChannel is the Redis channel that carries the id of every
// submission whose status changed.
const StatusChannel = "runbox:status"

// pendingKey is a sorted set of unfinished submission ids scored by their
// creation time in Unix milliseconds.
const pendingKey = "runbox:pending"

// DefaultRetention is how long a submission is kept after its last change.
const DefaultRetention = 7 * 24 * time.Hour

// ErrNotFound is returned for an id that is unknown or has expired.
var ErrNotFound = errors.New("submission not found")

// Store reads and writes submissions.
type Store struct {
	rdb       redis.UniversalClient
	retention time.Duration
}

// New returns a store over rdb that keeps submissions for retention, or for
// DefaultRetention when retention is zero.
func New(rdb redis.UniversalClient, retention time.Duration) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{rdb: rdb, retention: retention}
}

func submissionKey(id string) string { return "runbox:submission:" + id }

// storedRequest is the immutable part of a submission.
type storedRequest struct {
	Language  string            `json:"language"`
	Source    string            `json:"source"`
	Stdin     string            `json:"stdin,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Limits    submission.Limits `json:"limits"`
	CreatedAt time.Time         `json:"created_at"`
}

// Create stores a new queued submission. It fails if the id exists.
func (s *Store) Create(ctx context.Context, sub *submission.Submission) error {
	request, err := json.Marshal(storedRequest{
		Language:  sub.Language,
		Source:    sub.Source,
		Stdin:     sub.Stdin,
		Args:      sub.Args,
		Limits:    sub.Limits,
		CreatedAt: sub.CreatedAt,
	})
	if err != nil {
		return fmt.Errorf("encode submission %s: %w", sub.ID, err)
	}
	created, err := createScript.Run(ctx, s.rdb,
		[]string{submissionKey(sub.ID), pendingKey},
		sub.ID, request, string(submission.StatusQueued),
		sub.CreatedAt.UnixMilli(), int64(s.retention/time.Second),
	).Int()
	if err != nil {
		return fmt.Errorf("store submission %s: %w", sub.ID, err)
	}
	if created == 0 {
		return fmt.Errorf("store submission %s: id exists", sub.ID)
	}
	return nil
}

// Get returns the submission with the given id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*submission.Submission, error) {
	fields, err := s.rdb.HGetAll(ctx, submissionKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read submission %s: %w", id, err)
	}
	if len(fields) == 0 {
		return nil, ErrNotFound
	}
	return decode(id, fields)
}

func decode(id string, fields map[string]string) (*submission.Submission, error) {
	var req storedRequest
	if err := json.Unmarshal([]byte(fields["request"]), &req); err != nil {
		return nil, fmt.Errorf("decode submission %s: %w", id, err)
	}
	sub := &submission.Submission{
		ID:        id,
		Language:  req.Language,
		Source:    req.Source,
		Stdin:     req.Stdin,
		Args:      req.Args,
		Limits:    req.Limits,
		CreatedAt: req.CreatedAt,
		Status:    submission.Status(fields["status"]),
		StartedAt: parseMillis(fields["started_at"]),
	}
	sub.FinishedAt = parseMillis(fields["finished_at"])
	fmt.Sscan(fields["attempts"], &sub.Attempts)
	if raw := fields["result"]; raw != "" {
		sub.Result = new(submission.Result)
		if err := json.Unmarshal([]byte(raw), sub.Result); err != nil {
			return nil, fmt.Errorf("decode result of submission %s: %w", id, err)
		}
	}
	return sub, nil
}

func parseMillis(field string) *time.Time {
	var ms int64
	if _, err := fmt.Sscan(field, &ms); err != nil || ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// Start marks the submission running and counts the attempt. It returns
// the attempt number, or 0 when the submission is already done, in which
// case the caller must not run it again.
func (s *Store) Start(ctx context.Context, id string, now time.Time) (int, error) {
	attempt, err := startScript.Run(ctx, s.rdb, []string{submissionKey(id)},
		id, now.UnixMilli(), int64(s.retention/time.Second)).Int()
	if errors.Is(err, redis.Nil) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("mark submission %s running: %w", id, err)
	}
	return attempt, nil
}

// Requeue sets a running submission back to queued, for a run that was
// interrupted and will be retried. It does nothing to a done submission,
// nor when attempt is no longer the latest attempt, so a late call from an
// interrupted attempt cannot hide the run of the next one.
func (s *Store) Requeue(ctx context.Context, id string, attempt int) error {
	err := requeueScript.Run(ctx, s.rdb, []string{submissionKey(id)}, id, attempt).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("requeue submission %s: %w", id, err)
	}
	return nil
}

// Finish stores the result and marks the submission done. It returns false
// when the submission was already done; the first result always wins.
func (s *Store) Finish(ctx context.Context, id string, result *submission.Result, now time.Time) (bool, error) {
	encoded, err := json.Marshal(result)
	if err != nil {
		return false, fmt.Errorf("encode result of submission %s: %w", id, err)
	}
	stored, err := finishScript.Run(ctx, s.rdb,
		[]string{submissionKey(id), pendingKey},
		id, encoded, now.UnixMilli(), int64(s.retention/time.Second),
	).Int()
	if errors.Is(err, redis.Nil) {
		return false, ErrNotFound
	}
	if err != nil {
		return false, fmt.Errorf("store result of submission %s: %w", id, err)
	}
	return stored == 1, nil
}

// Pending returns up to limit ids of unfinished submissions created before
// the given time, oldest first, skipping the first offset of them.
func (s *Store) Pending(ctx context.Context, before time.Time, offset, limit int64) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, pendingKey, &redis.ZRangeBy{
		Min: "-inf", Max: fmt.Sprint(before.UnixMilli()), Offset: offset, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list pending submissions: %w", err)
	}
	return ids, nil
}

// ForgetPending drops an id from the pending set, for a submission whose
// hash has expired.
func (s *Store) ForgetPending(ctx context.Context, id string) error {
	return s.rdb.ZRem(ctx, pendingKey, id).Err()
}

// TryLock acquires the named lock for ttl if no owner holds it, the caller
// included, and reports whether it did. There is no unlock: the lock
// expires after ttl, so a holder that dies blocks the others for ttl at most.
func (s *Store) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	acquired, err := s.rdb.SetNX(ctx, "runbox:lock:"+name, owner, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("acquire lock %s: %w", name, err)
	}
	return acquired, nil
}

// Subscribe returns a subscription to StatusChannel.
func (s *Store) Subscribe(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, StatusChannel)
}

// Ping checks that Redis is reachable.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.Ping(ctx).Err()
}
