package sandbox

import "sync"

// cappedBuffer keeps the first limit bytes written to it and counts the
// rest. The first write past the limit calls onOverflow once, which the
// runner uses to stop the program.
type cappedBuffer struct {
	mu         sync.Mutex
	data       []byte
	limit      int
	total      int64
	overflowed bool
	onOverflow func()
}

func newCappedBuffer(limit int, onOverflow func()) *cappedBuffer {
	return &cappedBuffer{limit: limit, onOverflow: onOverflow}
}

// Write never fails, so the stream copy keeps draining the program's
// output until the container is killed.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.total += int64(len(p))
	if room := b.limit - len(b.data); room > 0 {
		b.data = append(b.data, p[:min(room, len(p))]...)
	}
	fire := b.total > int64(b.limit) && !b.overflowed
	if fire {
		b.overflowed = true
	}
	b.mu.Unlock()
	if fire && b.onOverflow != nil {
		b.onOverflow()
	}
	return len(p), nil
}

// Bytes returns the kept bytes and whether more were written than kept.
func (b *cappedBuffer) Bytes() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte{}, b.data...), b.overflowed
}
