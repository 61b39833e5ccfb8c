// handoff_test.go runs the protocol's scenarios against kfake in-process,
// with the memory store and with the backend compiled into this build.

package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestHandoff_cooperative(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			d, _ := testDeps(t, s, rec)
			ctx := ctxT(t)
			produced, stopProducing := flowing(t, ctx, cfg, 0)
			waitA := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 100 })
			bctx, stopB := context.WithCancel(ctx)
			waitB := invoke(bctx, cfg, d, invocation{"src", 0, 2000, "B"}, time.Minute)
			a, err := waitA()
			if err != nil || a.End != endHanded {
				t.Fatalf("A: %+v, %v; want handed over", a, err)
			}
			// 3,000 records at about one a millisecond, however slow the machine.
			waitFor(t, "3,000 records at the sink", 20*time.Second, func() bool { return rec.count("A")+rec.count("B") >= 3000 })
			stopProducing()
			total := produced()
			waitFor(t, "B to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopB()
			bo, err := waitB()
			if err != nil || bo.End != endReleased {
				t.Fatalf("B: %+v, %v; want released at shutdown", bo, err)
			}
			tl := rec.tally(total)
			if tl.Produced < 3000 || tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 || tl.Handoffs != 1 {
				t.Fatalf("sink: %+v; want every record once, in order, one handoff", tl)
			}
			if first := rec.first("B"); first != a.To {
				t.Fatalf("B's first offset %d, A handed over at %d", first, a.To)
			}
			if bo.From != a.To {
				t.Fatalf("B started from %d, A handed over at %d", bo.From, a.To)
			}
			t.Logf("%s: %d records, handoff at offset %d, gap %v", b.name, tl.Produced, a.To, rec.handoffs[0].Gap)
		})
	}
}

func TestHandoff_duplicate_tick_exits(t *testing.T) {
	testEarlyExit(t, 1000, endDuplicate)
}

func TestHandoff_stale_tick_exits(t *testing.T) {
	testEarlyExit(t, 999, endStale)
}

// testEarlyExit runs an owner at tick 1000, then a second invocation at
// tick; that one must end with want before it makes any Kafka client.
func testEarlyExit(t *testing.T, tick int64, want string) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			d, kafka := testDeps(t, s, rec)
			ctx, stop := context.WithCancel(ctxT(t))
			waitA := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to own", 5*time.Second, func() bool {
				l, err := s.load(ctx, leaseKey(cfg.Group, "src", 0))
				return err == nil && l.Owner == "A"
			})
			before := kafka.n.Load()
			d2, kafka2 := testDeps(t, s, rec)
			out, err := runInvocation(ctx, cfg, d2, invocation{"src", 0, tick, "A-again"})
			if err != nil || out.End != want {
				t.Fatalf("second delivery: %+v, %v; want %s", out, err, want)
			}
			if n := kafka2.n.Load(); n != 0 {
				t.Fatalf("second delivery made %d Kafka clients, want 0", n)
			}
			stop()
			if a, err := waitA(); err != nil || a.End != endReleased || kafka.n.Load() != before {
				t.Fatalf("owner: %+v, %v", a, err)
			}
		})
	}
}

// crashSink drops every write once the process it stands for is down.
type crashSink struct {
	sink
	down *atomic.Bool
}

func (c crashSink) write(ctx context.Context, r *kgo.Record) error {
	if c.down.Load() {
		return errCrashed
	}
	return c.sink.write(ctx, r)
}

func TestHandoff_crashed_owner(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			produced, _ := flowing(t, ctx, cfg, 3*time.Second)
			fa := newFaultStore(s)
			da, _ := testDeps(t, fa, nil)
			da.wrapSink = func(inv invocation, k sink) sink { return rec.wrap(inv, crashSink{k, &fa.down}) }
			actx, crashA := context.WithCancel(ctx)
			waitA := invoke(actx, cfg, da, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 500 })
			fa.down.Store(true) // from here A reaches neither the store nor the sink
			crashA()
			if a, err := waitA(); !errors.Is(err, errCrashed) {
				t.Fatalf("crashed A: %+v, %v", a, err)
			}
			key := leaseKey(cfg.Group, "src", 0)
			left, err := s.load(ctx, key)
			if err != nil || left.Owner != "A" || left.State != stateRunning {
				t.Fatalf("after the crash the lease must still be A's: %+v, %v", left, err)
			}
			db, _ := testDeps(t, s, rec)
			bctx, stopB := context.WithCancel(ctx)
			waitB := invoke(bctx, cfg, db, invocation{"src", 0, 2000, "B"}, time.Minute)
			total := produced()
			waitFor(t, "B to catch up", 15*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopB()
			bo, err := waitB()
			if err != nil || bo.From != left.Offset {
				t.Fatalf("B: %+v, %v; want a start at A's last commit %d", bo, err, left.Offset)
			}
			if took := time.UnixMilli(left.ExpiresAt).Add(cfg.Skew); rec.firstAt("B").Before(took) {
				t.Fatalf("B wrote at %v, before A's lease ended at %v", rec.firstAt("B"), took)
			}
			tl := rec.tally(total)
			afterCommit := rec.count("A") - int(left.Offset)
			if tl.Lost != 0 || tl.Reordered != 0 || tl.Duplicated > afterCommit {
				t.Fatalf("sink: %+v; want nothing lost and at most %d duplicates (A's writes after its last commit)", tl, afterCommit)
			}
			t.Logf("%s: A wrote %d, committed %d; B took over from %d; duplicates %d", b.name, rec.count("A"), left.Offset, bo.From, tl.Duplicated)
		})
	}
}

func TestHandoff_zombie_owner(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			cfg.StoreTimeout = 500 * time.Millisecond
			ctx := ctxT(t)
			produced, _ := flowing(t, ctx, cfg, 4*time.Second)
			fa := newFaultStore(s)
			da, _ := testDeps(t, fa, rec)
			waitA := invoke(ctx, cfg, da, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 300 })
			fa.frozen.Store(true)
			db, _ := testDeps(t, s, rec)
			bctx, stopB := context.WithCancel(ctx)
			waitB := invoke(bctx, cfg, db, invocation{"src", 0, 2000, "B"}, time.Minute)
			waitFor(t, "B to write", 10*time.Second, func() bool { return rec.count("B") > 0 })
			fa.frozen.Store(false) // A resumes and must find itself fenced
			a, err := waitA()
			if err != nil || a.End != endFenced {
				t.Fatalf("zombie A: %+v, %v; want fenced", a, err)
			}
			total := produced()
			waitFor(t, "B to catch up", 15*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopB()
			if _, err := waitB(); err != nil {
				t.Fatal(err)
			}
			if last, first := rec.lastAt("A"), rec.firstAt("B"); !last.Before(first) {
				t.Fatalf("A wrote at %v, after B's first write at %v", last, first)
			}
			if tl := rec.tally(total); tl.Lost != 0 || tl.Reordered != 0 {
				t.Fatalf("sink: %+v", tl)
			}
		})
	}
}

func TestHandler_container_reuse(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			// The records are there before the first call: a producer
			// running beside the calls would start goroutines of its own.
			cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
			if err != nil {
				t.Fatal(err)
			}
			const total = 20000
			for i := range total {
				cl.Produce(ctx, &kgo.Record{Topic: "src", Value: fmt.Appendf(nil, "%d", i)}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			cl.Close()
			d, kafka := testDeps(t, s, rec)
			// A slow action, so the first call cannot read them all.
			d.action = func(r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
				time.Sleep(100 * time.Microsecond)
				return append(out, r), nil
			}
			h := handler(cfg, d)
			// The cluster and the store were made before the container's
			// first call; whatever else runs after a call leaked.
			ignore := []goleak.Option{goleak.IgnoreCurrent(),
				// The broker's side of each connection lives in the broker.
				goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
				goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"),
				goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
				// The store's idle connections are kept for the next call.
				goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
				goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")}
			var outs []outcome
			for i, tick := range []string{"2026-11-26T10:00:00Z", "2026-11-26T10:14:00Z"} {
				cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
				out, err := h(cctx, []byte(fmt.Sprintf(`{"topic":"src","partition":0,"tick":%q}`, tick)))
				cancel()
				if err != nil || out.End != endReleased {
					t.Fatalf("call %d: %+v, %v; want released at the deadline", i+1, out, err)
				}
				if err := goleak.Find(ignore...); err != nil {
					t.Fatalf("call %d left goroutines behind: %v", i+1, err)
				}
				if got, want := kafka.n.Load(), int32(i+1); got != want {
					t.Fatalf("after call %d: %d Kafka clients made, want %d", i+1, got, want)
				}
				outs = append(outs, out)
			}
			if outs[1].From != outs[0].To || outs[1].Epoch != outs[0].Epoch+1 || outs[1].Records == 0 {
				t.Fatalf("second call %+v must go on where the first %+v stopped", outs[1], outs[0])
			}
			tl := rec.tally([]int64{total})
			if tl.Duplicated != 0 || tl.Reordered != 0 {
				t.Fatalf("sink: %+v", tl)
			}
		})
	}
}

// Lambda retries a failed invocation with the same payload, so the retry
// of a crashed owner carries the owner's tick: once the lease is dead it
// takes over (epoch + 1) instead of exiting as a duplicate, and a run that
// released can be retried by its own tick too.
func TestHandoff_retry_after_crash_takes(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			produced, _ := flowing(t, ctx, cfg, 3*time.Second)
			fa := newFaultStore(s)
			da, _ := testDeps(t, fa, nil)
			da.wrapSink = func(inv invocation, k sink) sink { return rec.wrap(inv, crashSink{k, &fa.down}) }
			actx, crashA := context.WithCancel(ctx)
			waitA := invoke(actx, cfg, da, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 300 })
			fa.down.Store(true)
			crashA()
			if _, err := waitA(); !errors.Is(err, errCrashed) {
				t.Fatalf("crashed A: %v", err)
			}
			key := leaseKey(cfg.Group, "src", 0)
			left := mustLoad(t, s, key)
			// The retry arrives while the lease still looks live: a duplicate.
			dr, kr := testDeps(t, s, rec)
			if out, err := runInvocation(ctx, cfg, dr, invocation{"src", 0, 1000, "A-early"}); err != nil || out.End != endDuplicate || kr.n.Load() != 0 {
				t.Fatalf("same tick while A's lease is live: %+v, %v; want duplicate, no Kafka client", out, err)
			}
			dead := time.UnixMilli(left.ExpiresAt).Add(cfg.Skew)
			time.Sleep(time.Until(dead) + 10*time.Millisecond)
			rctx, stopRetry := context.WithCancel(ctx)
			waitR := invoke(rctx, cfg, dr, invocation{"src", 0, 1000, "A-retry"}, time.Minute)
			total := produced()
			waitFor(t, "the retry to catch up", 15*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopRetry()
			ro, err := waitR()
			if err != nil || ro.End != endReleased || ro.From != left.Offset || ro.Epoch != left.Epoch+1 {
				t.Fatalf("retry: %+v, %v; want it to own epoch %d from A's last commit %d", ro, err, left.Epoch+1, left.Offset)
			}
			gap := rec.firstAt("A-retry").Sub(dead)
			// A released run's own tick may run it again at once.
			again, err := runInvocation(ctx, cfg, dr, invocation{"src", 0, 1000, "A-retry2"})
			if err != nil || again.End == endDuplicate || again.From != ro.To {
				t.Fatalf("same tick after a release: %+v, %v; want a run from %d", again, err, ro.To)
			}
			tl := rec.tally(total)
			afterCommit := rec.count("A") - int(left.Offset)
			if tl.Lost != 0 || tl.Reordered != 0 || tl.Duplicated > afterCommit {
				t.Fatalf("sink: %+v; want nothing lost and at most %d duplicates", tl, afterCommit)
			}
			t.Logf("%s: the retry wrote %v after A's lease died (TTL %v, skew %v)", b.name, gap, cfg.TTL, cfg.Skew)
		})
	}
}

// A successor that died while waiting stops renewing its ask: the owner
// keeps reading past it, and the next asker (here the dead successor's
// own retry, same tick) replaces it and gets the baton.
func TestHandoff_dead_successor_keeps_owner(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			produced, stopProducing := flowing(t, ctx, cfg, 0)
			d, _ := testDeps(t, s, rec)
			waitA := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 100 })
			key := leaseKey(cfg.Group, "src", 0)
			a := mustLoad(t, s, key)
			// D asked, and died before it renewed the ask.
			if err := s.ask(ctx, key, a.Epoch, claimAt("D", 2000, time.Now(), cfg.Skew), in(-time.Second)); err != nil {
				t.Fatal(err)
			}
			before := rec.count("A")
			time.Sleep(3 * cfg.CommitEvery)
			if got := mustLoad(t, s, key); got.Owner != "A" || got.Epoch != a.Epoch {
				t.Fatalf("A handed over to a dead successor: %+v", got)
			}
			if rec.count("A") <= before {
				t.Fatalf("A stopped writing after a dead ask (%d writes, %d before)", rec.count("A"), before)
			}
			rctx, stopR := context.WithCancel(ctx)
			waitR := invoke(rctx, cfg, d, invocation{"src", 0, 2000, "D-retry"}, time.Minute)
			ao, err := waitA()
			if err != nil || ao.End != endHanded {
				t.Fatalf("A: %+v, %v; want handed over to D's retry", ao, err)
			}
			waitFor(t, "D's retry to write", 5*time.Second, func() bool { return rec.count("D-retry") > 0 })
			stopProducing()
			total := produced()
			waitFor(t, "D's retry to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopR()
			if ro, err := waitR(); err != nil || ro.From != ao.To {
				t.Fatalf("D's retry: %+v, %v; want a start at A's hand-over offset %d", ro, err, ao.To)
			}
			if tl := rec.tally(total); tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 {
				t.Fatalf("sink: %+v; want every record once, in order", tl)
			}
		})
	}
}

// Whoever may receive the baton is connected: a successor whose ask landed
// but whose answer was lost still connects, and runs when the baton comes.
func TestHandoff_ask_answer_lost_connects(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			produced, stopProducing := flowing(t, ctx, cfg, 0)
			d, _ := testDeps(t, s, rec)
			waitA := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "A to write", 5*time.Second, func() bool { return rec.count("A") > 100 })
			var once atomic.Bool
			db, kb := testDeps(t, losing(s, true, func(call storeCall) bool { return call.op == "ask" && once.CompareAndSwap(false, true) }), rec)
			bctx, stopB := context.WithCancel(ctx)
			waitB := invoke(bctx, cfg, db, invocation{"src", 0, 2000, "B"}, time.Minute)
			if ao, err := waitA(); err != nil || ao.End != endHanded {
				t.Fatalf("A: %+v, %v; want handed over", ao, err)
			}
			if !once.Load() || kb.n.Load() != 1 {
				t.Fatalf("B: ask answer lost %v, Kafka clients %d; want a lost answer and one client", once.Load(), kb.n.Load())
			}
			waitFor(t, "B to write", 5*time.Second, func() bool { return rec.count("B") > 0 })
			stopProducing()
			total := produced()
			waitFor(t, "B to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopB()
			if bo, err := waitB(); err != nil || bo.End != endReleased {
				t.Fatalf("B: %+v, %v; want a clean run released at shutdown", bo, err)
			}
			if tl := rec.tally(total); tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 {
				t.Fatalf("sink: %+v; want every record once, in order", tl)
			}
		})
	}
}
