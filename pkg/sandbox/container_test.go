package sandbox

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestMinAgeToSweep(t *testing.T) {
	runner := &Runner{config: Config{PoolIdleTimeout: 10 * time.Minute}}
	maxAge := 5 * time.Minute
	idleLabels := map[string]string{LabelSubmission: "", LabelPool: "python"}
	tests := []struct {
		name      string
		container container.Summary
		want      time.Duration
	}{
		{"submission container", container.Summary{Names: []string{"/runbox-abc-1234"},
			Labels: map[string]string{LabelSubmission: "abc"}, State: "running"}, maxAge},
		{"renamed pool container", container.Summary{Names: []string{"/runbox-abc"},
			Labels: idleLabels, State: "running"}, maxAge},
		{"running idle pool container", container.Summary{Names: []string{"/eager_turing"},
			Labels: idleLabels, State: "running"}, 20 * time.Minute},
		{"exited idle pool container", container.Summary{Names: []string{"/eager_turing"},
			Labels: idleLabels, State: "exited"}, 0},
		{"never started idle pool container", container.Summary{Names: []string{"/eager_turing"},
			Labels: idleLabels, State: "created"}, startTimeout},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := runner.minAgeToSweep(test.container, maxAge); got != test.want {
				t.Errorf("minAgeToSweep = %s, want %s", got, test.want)
			}
		})
	}
}
