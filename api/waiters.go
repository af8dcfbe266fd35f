package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/runbox/runbox/pkg/store"
)

// waiters wakes long-polling requests when their submission changes. One
// Redis subscription per API process feeds all of them.
type waiters struct {
	mu    sync.Mutex
	byID  map[string]map[chan struct{}]struct{}
	ready chan struct{}
}

func newWaiters() *waiters {
	return &waiters{byID: make(map[string]map[chan struct{}]struct{}), ready: make(chan struct{})}
}

// add registers interest in a submission. The returned channel receives a
// value after each change; remove must be called when done.
func (w *waiters) add(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.byID[id] == nil {
		w.byID[id] = make(map[chan struct{}]struct{})
	}
	w.byID[id][ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.byID[id], ch)
		if len(w.byID[id]) == 0 {
			delete(w.byID, id)
		}
		w.mu.Unlock()
	}
}

func (w *waiters) notify(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.byID[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// listen forwards status messages from Redis until ctx ends. The client
// reconnects by itself; a message lost meanwhile only delays a waiter
// until its periodic re-check.
func (w *waiters) listen(ctx context.Context, s *store.Store, log *slog.Logger) {
	sub := s.Subscribe(ctx)
	defer sub.Close()
	messages := sub.Channel()
	close(w.ready)
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-messages:
			if !ok {
				log.Warn("status subscription closed")
				return
			}
			w.notify(msg.Payload)
		}
	}
}

// waitRecheck is how often a long poll reads the submission again even
// without a message, to cover messages lost while Redis reconnects.
const waitRecheck = time.Second
