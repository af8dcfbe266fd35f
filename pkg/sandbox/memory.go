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
// on the stderr that the job script saved on fd 4. The trailer contains the
// nonce, the peak memory, and the peak before the run ("-" without a
// compile step). It is the container's last output, because the job script
// prints it after every process of the program has ended.
func memoryTrailerCommand(nonce string) string {
	return "runbox_read_peak\nprintf '%s %s %s\\n' '" + nonce + "' \"$runbox_peak\" \"${runbox_compile_peak:--}\" >&4\n"
}

// trailerWriter passes stderr on but delays the last bytes, which may be
// the memory trailer. finish strips a trailer with the job's nonce from the
// end and passes any other delayed bytes on.
type trailerWriter struct {
	mu    sync.Mutex
	nonce []byte
	// tail is the stderr not yet passed on, at most trailerMax bytes.
	tail []byte
	next *cappedBuffer
}

// trailerMax is the longest trailer: the nonce, two decimal numbers of up
// to 20 digits, the spaces and the newline.
func (t *trailerWriter) trailerMax() int { return len(t.nonce) + 2*20 + 3 }

func (t *trailerWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.tail = append(t.tail, p...)
	var out []byte
	if extra := len(t.tail) - t.trailerMax(); extra > 0 {
		out = append([]byte{}, t.tail[:extra]...)
		t.tail = append(t.tail[:0], t.tail[extra:]...)
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
	tail := t.tail
	t.tail = nil
	t.mu.Unlock()
	start := bytes.LastIndex(tail, t.nonce)
	if start < 0 || !bytes.HasSuffix(tail, []byte("\n")) {
		_, _ = t.next.Write(tail)
		return -1
	}
	fields := bytes.Fields(tail[start+len(t.nonce) : len(tail)-1])
	if len(fields) != 2 {
		_, _ = t.next.Write(tail)
		return -1
	}
	_, _ = t.next.Write(tail[:start])
	peak, err := strconv.ParseInt(string(fields[0]), 10, 64)
	if err != nil {
		return -1
	}
	if before, err := strconv.ParseInt(string(fields[1]), 10, 64); err == nil && peak <= before {
		return -1
	}
	return peak
}
