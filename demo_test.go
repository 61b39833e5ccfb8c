// demo_test.go runs the embedded default that `go run .` shows.

package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDemo_hands_over_and_loses_nothing(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	start := time.Now()
	if err := runDemo(context.Background(), &out, testLogger(t)); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("demo took %v, want under 30s", took)
	}
	m := regexp.MustCompile(`produced=(\d+) delivered=(\d+) lost=(\d+) .* handoffs=(\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no tally line in:\n%s", out.String())
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	if n(1) == 0 || n(2) != n(1) || n(3) != 0 || n(4) < 3 {
		t.Fatalf("tally %q: want every record delivered, lost=0 and at least 3 handoffs", m[0])
	}
	if got := strings.Count(out.String(), "\nhandoff "); got != n(4) {
		t.Fatalf("%d handoff lines for handoffs=%d", got, n(4))
	}
}
