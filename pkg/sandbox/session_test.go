package sandbox

import (
	"bytes"
	"strings"
	"testing"
)

func newTestSplitter(limit int, overflows *int) (*compileSplitter, *bytes.Buffer) {
	program := &bytes.Buffer{}
	split := &compileSplitter{
		marker:     []byte("\nnonce "),
		limit:      limit,
		program:    program,
		done:       make(chan struct{}),
		onOverflow: func() { *overflows++ },
	}
	return split, program
}

func TestCompileSplitterSplitsAtMarker(t *testing.T) {
	overflows := 0
	split, program := newTestSplitter(100, &overflows)

	// The marker and the status arrive split across writes.
	for _, chunk := range []string{"warning: x", "\nnon", "ce 0", "\nhello", " world\n"} {
		if _, err := split.Write([]byte(chunk)); err != nil {
			t.Fatalf("Write(%q): %v", chunk, err)
		}
	}

	if !split.finished() {
		t.Fatal("finished() = false after the marker line, want true")
	}
	if split.status != 0 {
		t.Errorf("status = %d, want 0", split.status)
	}
	if got := string(split.output()); got != "warning: x" {
		t.Errorf("compiler output = %q, want %q", got, "warning: x")
	}
	if got := program.String(); got != "hello world\n" {
		t.Errorf("program stdout = %q, want %q", got, "hello world\n")
	}
	if overflows != 0 {
		t.Errorf("onOverflow called %d times, want 0", overflows)
	}
}

func TestCompileSplitterIgnoresMarkerAfterOverflow(t *testing.T) {
	overflows := 0
	split, program := newTestSplitter(10, &overflows)

	if _, err := split.Write([]byte(strings.Repeat("e", 200))); err != nil {
		t.Fatalf("Write: %v", err)
	}
	// The container is being killed, so a marker that still arrives must
	// not end the step as a success.
	if _, err := split.Write([]byte("\nnonce 0\nprogram output\n")); err != nil {
		t.Fatalf("Write: %v", err)
	}

	if overflows != 1 {
		t.Errorf("onOverflow called %d times, want 1", overflows)
	}
	if split.finished() {
		t.Error("finished() = true after the output cap, want false")
	}
	if got := string(split.output()); got != strings.Repeat("e", 10) {
		t.Errorf("compiler output = %q, want the first 10 bytes", got)
	}
	if program.Len() != 0 {
		t.Errorf("program stdout = %q, want nothing", program.String())
	}
}
