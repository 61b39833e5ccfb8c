// outcome_test.go checks what an invocation's outcome reports beyond how
// it ended.

package main

import (
	"context"
	"testing"
	"time"
)

// TestOutcome_waited_ms_kept: B asks while A owns, and A's hand-over write
// is slow (50 ms here). B's outcome, once it owned and released, still
// says how long it waited for the baton.
func TestOutcome_waited_ms_kept(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
	const slow = 50 * time.Millisecond
	s := &hookStore{store: r.s, before: func(_ context.Context, call storeCall) error {
		if call.op == "handOver" {
			time.Sleep(slow)
		}
		return nil
	}}
	d, _ := testDeps(t, s, nil)
	stopA, waitA := r.start(d, 1000, "A")
	defer stopA()
	r.waitLease(t, "A to commit offset 10", func(l lease) bool { return l.Owner == "A" && l.Offset == 10 })
	start := time.Now()
	stopB, waitB := r.start(d, 2000, "B")
	r.waitLease(t, "B to own the lease", func(l lease) bool { return l.Owner == "B" })
	stopB()
	b, err := waitB()
	wantEnd(t, "B", b, err, endReleased)
	if took := time.Since(start); b.WaitedMs < slow.Milliseconds() || b.WaitedMs > took.Milliseconds() {
		t.Errorf("B waited_ms %d; want at least the hand-over's %v, at most B's whole run, %v", b.WaitedMs, slow, took)
	}
	a, err := waitA()
	wantEnd(t, "A", a, err, endHanded)
}
