package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// told waits for a notice on changed.
func told(t *testing.T, changed <-chan struct{}, after string) {
	t.Helper()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatalf("no notice within 5 s after %s", after)
	}
}

// TestWatch_hand_over_and_release_are_told: a watcher hears of every
// hand-over and release written after it subscribed, and stop leaves no
// goroutine behind. DynamoDB cannot tell; its successor polls.
func TestWatch_hand_over_and_release_are_told(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s, key, ctx := b.open(t), testKey(t), ctxT(t)
			a := mustTake(t, s, key, lease{}, claim{Owner: "A", Tick: 100})
			ignore := goleak.IgnoreCurrent()
			changed, stop, err := watchOf(ctx, s, key)
			if b.name == "dynamodb" {
				if !errors.Is(err, errNoWatch) {
					t.Fatalf("dynamodb watch: %v; want errNoWatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			must(t, s.ask(ctx, key, a.Epoch, claim{Owner: "B", Tick: 200}, in(time.Minute)))
			a.Successor = "B"
			bl, err := s.handOver(ctx, a, 10, in(time.Minute))
			must(t, err)
			told(t, changed, "the hand-over")
			must(t, s.release(ctx, bl, 20))
			told(t, changed, "the release")
			stop()
			if err := goleak.Find(ignore); err != nil {
				t.Fatalf("after stop: %v", err)
			}
		})
	}
}

// TestHandoff_successor_told: with a store that tells, the successor is
// handed the baton long before its next poll would have read it.
func TestHandoff_successor_told(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "dynamodb" {
				t.Skip("dynamodb cannot tell a waiting successor; it polls every WaitPoll (TestHandoff_cooperative)")
			}
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			cfg.WaitPoll = time.Minute // a poll would never come in time
			d, _ := testDeps(t, s, rec)
			ctx := ctxT(t)
			pctx, stopProducing := context.WithCancel(ctx)
			produced, err := produce(pctx, cfg.Brokers, "src", 1, time.Millisecond)
			must(t, err)
			defer func() { stopProducing(); produced() }()
			waitA := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 10 })
			bctx, stopB := context.WithCancel(ctx)
			defer stopB()
			waitB := invoke(bctx, cfg, d, invocation{"src", 0, 2000, "B"}, time.Minute)
			if a, err := waitA(); err != nil || a.End != endHanded {
				t.Fatalf("A: %+v, %v; want handed over", a, err)
			}
			waitFor(t, "B to write", 5*time.Second, func() bool { return rec.count("B") > 0 })
			stopB()
			if bo, err := waitB(); err != nil || bo.End != endReleased || bo.WaitedMs > 5000 {
				t.Fatalf("B: %+v, %v; want released, having waited for one lease check of A", bo, err)
			}
			if gap := rec.handoffs[0].Gap; gap > time.Second {
				t.Fatalf("gap %v; want well under a second (no poll for a minute)", gap)
			}
		})
	}
}
