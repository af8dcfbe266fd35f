package sandbox

import (
	"bytes"
	"strconv"
	"sync"
)

// peakFunction is a shell function that sets runbox_peak to the peak
// memory of the container's cgroup in bytes, or "-" when the sandbox
// cannot read it (cgroup v1 names the file memory.max_usage_in_bytes,
// cgroup v2 memory.peak). The peak counts every process of the container
// and the files in its tmpfs mounts.
const peakFunction = `runbox_read_peak() {
  IFS= read -r runbox_peak < /sys/fs/cgroup/memory/memory.max_usage_in_bytes ||
    IFS= read -r runbox_peak < /sys/fs/cgroup/memory.peak || runbox_peak=-
} 2>/dev/null
`

// memoryTrailerCommand returns the commands that print the memory trailer
// on stderr, saved on fd 4 by the job script: the nonce, the peak memory, and the peak before the run ("-"
// without a compile step). The job script runs them after every process
// of the program has ended, so the trailer is the container's last output.
func memoryTrailerCommand(nonce string) string {
	return "runbox_read_peak\nprintf '%s %s %s\\n' '" + nonce + "' \"$runbox_peak\" \"${runbox_compile_peak:--}\" >&4\n"
}

// trailerWriter passes stderr on but holds back the last bytes, which may
// be the memory trailer. finish strips a trailer with the job's nonce
// from the end and passes any other held bytes on.
type trailerWriter struct {
	mu    sync.Mutex
	nonce []byte
	held  []byte
	next  *cappedBuffer
}

// trailerMax is the longest trailer: the nonce, two decimal numbers of up
// to 20 digits, the spaces and the newline.
func (t *trailerWriter) trailerMax() int { return len(t.nonce) + 2*20 + 3 }

func (t *trailerWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.held = append(t.held, p...)
	var out []byte
	if extra := len(t.held) - t.trailerMax(); extra > 0 {
		out = append([]byte{}, t.held[:extra]...)
		t.held = append(t.held[:0], t.held[extra:]...)
	}
	t.mu.Unlock()
	if len(out) > 0 {
		_, _ = t.next.Write(out)
	}
	return len(p), nil
}

// finish returns the peak memory of the run in bytes from the trailer, or
// -1 when there is no trailer or the peak is unknown. A compiled
// program's peak is unknown when it stayed at or below the compiler's,
// because the cgroup cannot tell the two apart.
func (t *trailerWriter) finish() int64 {
	t.mu.Lock()
	held := t.held
	t.held = nil
	t.mu.Unlock()
	start := bytes.LastIndex(held, t.nonce)
	if start < 0 || !bytes.HasSuffix(held, []byte("\n")) {
		_, _ = t.next.Write(held)
		return -1
	}
	fields := bytes.Fields(held[start+len(t.nonce) : len(held)-1])
	if len(fields) != 2 {
		_, _ = t.next.Write(held)
		return -1
	}
	_, _ = t.next.Write(held[:start])
	peak, err := strconv.ParseInt(string(fields[0]), 10, 64)
	if err != nil {
		return -1
	}
	if before, err := strconv.ParseInt(string(fields[1]), 10, 64); err == nil && peak <= before {
		return -1
	}
	return peak
}
