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

	"github.com/twmb/franz-go/pkg/kgo"
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
	tl, line := demoTally(t, out.String())
	if tl.Produced == 0 || tl.Delivered != tl.Produced || tl.Dropped != 0 || tl.Lost != 0 || tl.Handoffs < 3 {
		t.Fatalf("tally %q: want every record delivered, none dropped, lost=0 and at least 3 handoffs", line)
	}
	if got := strings.Count(out.String(), "\nhandoff "); got != tl.Handoffs {
		t.Fatalf("%d handoff lines for handoffs=%d", got, tl.Handoffs)
	}
}

// demoTally reads the demo's tally line.
func demoTally(t *testing.T, out string) (tally, string) {
	t.Helper()
	m := regexp.MustCompile(`produced=(\d+) delivered=(\d+) dropped=(\d+) lost=(\d+) .* handoffs=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no tally line in:\n%s", out)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return tally{Produced: n(1), Delivered: n(2), Dropped: n(3), Lost: n(4), Handoffs: n(5)}, m[0]
}

// A fork whose action filters passes the demo: what the action dropped is
// dropped, not lost (issue 22: lost=7354 and exit 1).
func TestDemo_filtering_action_counts_dropped(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := runDemoWith(context.Background(), &out, testLogger(t), thirdDropped); err != nil {
		t.Fatalf("demo with a filtering action: %v\n%s", err, out.String())
	}
	tl, line := demoTally(t, out.String())
	t.Log(line)
	if tl.Dropped < tl.Produced/4 || tl.Lost != 0 || tl.Delivered+tl.Dropped != tl.Produced {
		t.Fatalf("tally %q: want a third dropped, lost=0 and delivered+dropped=produced", line)
	}
}

// thirdDropped drops every third record.
func thirdDropped(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if r.Offset%3 == 0 {
		return out, nil
	}
	return append(out, r), nil
}

// losingSink takes one record without error and without passing it on:
// a loss of baton's that the tally must still see.
type losingSink struct {
	sink
	lose int64
}

func (s losingSink) write(ctx context.Context, r *kgo.Record) error {
	if r.Offset == s.lose {
		return nil
	}
	return s.sink.write(ctx, r)
}

// The recorder tells what the action dropped from what went missing after
// it, over a run's own path: a record the action kept and the sink lost
// is lost.
func TestDemo_tally_tells_dropped_from_lost(t *testing.T) {
	rec := newRecorder(nil)
	p := hotRun(losingSink{rec.wrap(invocation{Owner: "A"}, discardSink{}), 5}, rec.watch(thirdDropped))
	hotPass(context.Background(), t, p, hotBatch(10))
	// Offsets 0, 3, 6, 9 dropped; 5 lost; 1, 2, 4, 7, 8 delivered.
	want := tally{Produced: 10, Delivered: 5, Dropped: 4, Lost: 1}
	if got := rec.tally([]int64{10}); got != want {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
}
