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

func TestStoreDelivery(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	t.Run("first result wins", func(t *testing.T) {
		id := create(t, s, time.Now())
		if _, err := s.Start(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		stored, err := s.Finish(ctx, id, &submission.Result{Verdict: submission.VerdictOK}, time.Now())
		if err != nil || !stored {
			t.Fatalf("first Finish = %t, %v; want true, nil", stored, err)
		}
		stored, err = s.Finish(ctx, id, &submission.Result{Verdict: submission.VerdictInternalError}, time.Now())
		if err != nil || stored {
			t.Fatalf("second Finish = %t, %v; want false, nil", stored, err)
		}
		sub, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Result.Verdict != submission.VerdictOK {
			t.Errorf("stored verdict = %s, want the first one, ok", sub.Result.Verdict)
		}
		if attempt, err := s.Start(ctx, id, time.Now()); err != nil || attempt != 0 {
			t.Errorf("Start of a done submission = %d, %v; want 0, nil", attempt, err)
		}
	})

	t.Run("requeue ignores a stale attempt", func(t *testing.T) {
		id := create(t, s, time.Now())
		for want := 1; want <= 2; want++ {
			if attempt, err := s.Start(ctx, id, time.Now()); err != nil || attempt != want {
				t.Fatalf("Start = %d, %v; want %d, nil", attempt, err, want)
			}
		}
		if err := s.Requeue(ctx, id, 1); err != nil {
			t.Fatal(err)
		}
		if sub, _ := s.Get(ctx, id); sub.Status != submission.StatusRunning {
			t.Errorf("status after a requeue by attempt 1 of 2 = %s, want running", sub.Status)
		}
		if err := s.Requeue(ctx, id, 2); err != nil {
			t.Fatal(err)
		}
		if sub, _ := s.Get(ctx, id); sub.Status != submission.StatusQueued {
			t.Errorf("status after a requeue by attempt 2 of 2 = %s, want queued", sub.Status)
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
		if taken, err := s.TryLock(ctx, "test", "a", ttl); err != nil || !taken {
			t.Fatalf("first TryLock = %t, %v; want true, nil", taken, err)
		}
		if taken, err := s.TryLock(ctx, "test", "b", ttl); err != nil || taken {
			t.Fatalf("TryLock while held = %t, %v; want false, nil", taken, err)
		}
		time.Sleep(ttl + 100*time.Millisecond)
		if taken, err := s.TryLock(ctx, "test", "b", ttl); err != nil || !taken {
			t.Fatalf("TryLock after expiry = %t, %v; want true, nil", taken, err)
		}
	})
}
