package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/testenv"
	"github.com/runbox/runbox/pkg/store"
	"github.com/runbox/runbox/pkg/submission"
)

func newStore(t *testing.T) *store.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Redis container")
	}
	rdb := testenv.StartRedis(t).Client(t)
	return store.New(rdb, time.Hour)
}

func create(t *testing.T, s *store.Store, createdAt time.Time) string {
	t.Helper()
	sub := &submission.Submission{
		ID:        uuid.NewString(),
		Language:  "bash",
		Source:    "echo hi",
		Status:    submission.StatusQueued,
		CreatedAt: createdAt,
	}
	if err := s.Create(context.Background(), sub); err != nil {
		t.Fatalf("create submission: %v", err)
	}
	return sub.ID
}

// get returns the stored submission and fails the test if it cannot.
func get(t *testing.T, s *store.Store, id string) *submission.Submission {
	t.Helper()
	sub, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get submission %s: %v", id, err)
	}
	return sub
}

func TestStore(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	t.Run("first result wins", func(t *testing.T) {
		id := create(t, s, time.Now())
		if _, err := s.Start(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}

		stored, err := s.Finish(ctx, id, &submission.Result{Verdict: submission.VerdictOK}, time.Now())
		if err != nil {
			t.Fatalf("first Finish: %v", err)
		}
		if !stored {
			t.Fatal("first Finish stored nothing, want the result stored")
		}
		stored, err = s.Finish(ctx, id, &submission.Result{Verdict: submission.VerdictInternalError}, time.Now())
		if err != nil {
			t.Fatalf("second Finish: %v", err)
		}
		if stored {
			t.Fatal("second Finish stored its result, want it dropped")
		}

		if verdict := get(t, s, id).Result.Verdict; verdict != submission.VerdictOK {
			t.Errorf("stored verdict = %s, want the first one, ok", verdict)
		}
		attempt, err := s.Start(ctx, id, time.Now())
		if err != nil {
			t.Errorf("Start of a done submission: %v", err)
		}
		if attempt != 0 {
			t.Errorf("Start of a done submission = attempt %d, want 0", attempt)
		}
	})

	t.Run("requeue ignores a stale attempt", func(t *testing.T) {
		id := create(t, s, time.Now())
		for want := 1; want <= 2; want++ {
			attempt, err := s.Start(ctx, id, time.Now())
			if err != nil {
				t.Fatalf("Start %d: %v", want, err)
			}
			if attempt != want {
				t.Fatalf("Start %d = attempt %d, want %d", want, attempt, want)
			}
		}

		if err := s.Requeue(ctx, id, 1); err != nil {
			t.Fatal(err)
		}
		if status := get(t, s, id).Status; status != submission.StatusRunning {
			t.Errorf("status after a requeue by attempt 1 of 2 = %s, want running", status)
		}
		if err := s.Requeue(ctx, id, 2); err != nil {
			t.Fatal(err)
		}
		if status := get(t, s, id).Status; status != submission.StatusQueued {
			t.Errorf("status after a requeue by attempt 2 of 2 = %s, want queued", status)
		}
	})

	t.Run("pending pages oldest first", func(t *testing.T) {
		base := time.Now().Add(-time.Hour)
		var ids []string
		for i := range 3 {
			ids = append(ids, create(t, s, base.Add(time.Duration(i)*time.Second)))
		}

		before := base.Add(10 * time.Second)
		first, err := s.Pending(ctx, before, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		second, err := s.Pending(ctx, before, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Concat(first, second); !slices.Equal(got, ids) {
			t.Errorf("pages = %v + %v, want %v", first, second, ids)
		}

		if _, err := s.Finish(ctx, ids[0], &submission.Result{Verdict: submission.VerdictOK}, time.Now()); err != nil {
			t.Fatal(err)
		}
		left, err := s.Pending(ctx, before, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(left, ids[1:]) {
			t.Errorf("pending after finishing the oldest = %v, want %v", left, ids[1:])
		}
	})

	t.Run("lock excludes others until it expires", func(t *testing.T) {
		ttl := 300 * time.Millisecond
		tryLock := func(owner string) bool {
			t.Helper()
			acquired, err := s.TryLock(ctx, "test", owner, ttl)
			if err != nil {
				t.Fatalf("TryLock by %s: %v", owner, err)
			}
			return acquired
		}

		if !tryLock("a") {
			t.Fatal("first TryLock failed, want the lock acquired")
		}
		if tryLock("b") {
			t.Fatal("TryLock while another owner holds the lock succeeded, want it rejected")
		}
		time.Sleep(ttl + 100*time.Millisecond)
		if !tryLock("b") {
			t.Fatal("TryLock after expiry failed, want the lock acquired")
		}
	})
}
