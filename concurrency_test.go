// concurrency_test.go tests -concurrency N: many records of a partition in
// the action at once, never two of one key, order kept per key at the
// sink, nothing lost, and exactly once with kafka+txn.

package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// concKeys is how many keys the keyed producer spreads records over.
const concKeys = 1000

// concKey is the key of the record at offset o: the producer numbers
// records from 0, so a sink that knows a record's offset knows its key.
func concKey(o int64) string { return strconv.FormatInt(o*7919%concKeys, 10) }

// produceKeyed writes batch records to src/0 every millisecond, value the
// record's number (its offset) and key concKey of it, until ctx ends; the
// function returned waits and gives the count acknowledged.
func produceKeyed(t testing.TB, ctx context.Context, brokers []string, batch int) func() []int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("src"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(1<<20))
	must(t, err)
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cl.Close()
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for n := int64(0); ctx.Err() == nil; {
			for range batch {
				r := &kgo.Record{Key: []byte(concKey(n)), Value: []byte(strconv.FormatInt(n, 10))}
				n++
				cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
					if err == nil {
						acked.Add(1)
					}
				})
			}
			select {
			case <-ctx.Done():
			case <-tk.C:
			}
		}
		_ = cl.Flush(context.Background())
	}()
	return func() []int64 { <-done; return []int64{acked.Load()} }
}

// keyGuard is an action that sleeps 0-5 ms a record, as a call to another
// service would, and watches what the run may not do: two records of one
// key in the action at once. most is the most records in it at once.
type keyGuard struct {
	mu          sync.Mutex
	in          map[string]bool
	now, most   int
	clash, seen int
}

func newKeyGuard() *keyGuard { return &keyGuard{in: map[string]bool{}} }

func (g *keyGuard) action(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	k := string(r.Key)
	g.mu.Lock()
	if g.in[k] {
		g.clash++
	}
	g.in[k] = true
	g.now++
	g.seen++
	g.most = max(g.most, g.now)
	g.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
	g.mu.Lock()
	delete(g.in, k)
	g.now--
	g.mu.Unlock()
	return append(out, r), nil
}

// wantConcurrent fails unless the action saw many records at once and
// never two of one key.
func (g *keyGuard) wantConcurrent(t testing.TB, least int) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.clash > 0 || g.most < least {
		t.Fatalf("action: %d records of a key in it at once (want 0); at most %d records at once (want %d or more)", g.clash, g.most, least)
	}
}

// wantKeyOrder fails unless, for every key, the records reached the sink
// in offset order when first delivered: a record read again after a crash
// repeats what came before, at-least-once, and breaks no order.
func wantKeyOrder(t testing.TB, ws []write) {
	t.Helper()
	last := map[string]int64{}
	seen := map[int64]bool{}
	for _, w := range ws {
		if seen[w.Offset] {
			continue
		}
		seen[w.Offset] = true
		k := concKey(w.Offset)
		if prev, ok := last[k]; ok && w.Offset < prev {
			t.Fatalf("key %s: offset %d reached the sink first after %d", k, w.Offset, prev)
		}
		last[k] = w.Offset
	}
}

// TestConcurrency_order_per_key: with -concurrency 64, an action that
// sleeps 0-5 ms, records of 1,000 keys flowing: A hands over to B, B
// crashes, C takes over. Every record reaches the sink, each key's in
// order, and the action never has two of one key at once. With kafka+txn a
// read_committed reader sees each record once.
func TestConcurrency_order_per_key(t *testing.T) {
	for _, sinkTo := range []string{"recorder", "kafka+txn"} {
		t.Run(sinkTo, func(t *testing.T) {
			eachBackend(t, true, func(t *testing.T, b backend) {
				testConcurrencyOrder(t, b, sinkTo)
			})
		})
	}
}

func testConcurrencyOrder(t *testing.T, b backend, sinkTo string) {
	r := newRig(t, b.open(t), 1, "out")
	if sinkTo == "kafka+txn" {
		r.cfg = txnConfig(t, r.cfg.Brokers)
		r.key = leaseKey(r.cfg.Group, "src", 0)
	}
	r.cfg.Concurrency = 64
	g := newKeyGuard()
	deps := func(s store) *deps {
		d, _ := testDeps(t, s, r.rec)
		d.action = g.action
		return d
	}
	pctx, stopProducing := context.WithTimeout(r.ctx, 3*time.Second)
	defer stopProducing()
	produced := produceKeyed(t, pctx, r.cfg.Brokers, 4)

	_, waitA := r.writing(t, deps(r.s), 1000)
	fb := newFaultStore(r.s)
	db := deps(fb)
	db.wrapSink = func(inv invocation, k sink) sink { return r.rec.wrap(inv, crashSink{k, &fb.down}) }
	stopB, waitB := r.start(db, 2000, "B")
	a, err := waitA()
	wantEnd(t, "A", a, err, endHanded)
	waitFor(t, "B to write", 10*time.Second, func() bool { return r.rec.count("B") > 1000 })
	fb.down.Store(true)
	stopB()
	if bo, err := waitB(); !errors.Is(err, errCrashed) {
		t.Fatalf("crashed B: %+v, %v", bo, err)
	}
	stopC, waitC := r.start(deps(r.s), 3000, "C")
	total := produced()
	if sinkTo == "kafka+txn" {
		waitFor(t, "C to read everything", 20*time.Second, func() bool {
			l, err := r.s.load(r.ctx, r.key)
			return err == nil && l.Offset >= total[0]
		})
	} else {
		r.drain(t, func() []int64 { return total }, nil, 20*time.Second)
	}
	stopC()
	if _, err := waitC(); err != nil {
		t.Fatalf("C: %v", err)
	}
	g.wantConcurrent(t, 16)
	if sinkTo == "kafka+txn" {
		sr := newSinkReader(t, r.cfg.Brokers, "out", true)
		tl := sr.tally(r.ctx, total, time.Second)
		if tl.Lost != 0 || tl.Duplicated != 0 {
			t.Fatalf("read_committed sink: %+v; want every record once", tl)
		}
		wantKeyOrder(t, sr.rec.on(0))
		t.Logf("%s: %d records, exactly once; the action saw %d", b.name, tl.Produced, g.seen)
		return
	}
	tl := r.rec.tally(total)
	if tl.Lost != 0 {
		t.Fatalf("sink: %+v; want nothing lost", tl)
	}
	wantKeyOrder(t, r.rec.on(0))
	t.Logf("%s: %d records, %d delivered twice (B's since its last commit); at most %d in the action at once", b.name, tl.Produced, tl.Duplicated, g.most)
}

// misbehaving is an action that fails on the value "bad", panics on
// "boom", waits for its context on "hang" (a call that never answers), and
// keeps the rest.
func misbehaving(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	switch string(r.Value) {
	case "bad":
		return out, errBadValue
	case "boom":
		panic("the action fell over")
	case "hang":
		<-ctx.Done()
		return out, ctx.Err()
	}
	return append(out, r), nil
}

// keyed is records of src/0 with these values, each under its own key.
func keyed(values ...string) []*kgo.Record {
	var rs []*kgo.Record
	for i, v := range values {
		rs = append(rs, &kgo.Record{Topic: "src", Key: []byte("k" + strconv.Itoa(i)), Value: []byte(v)})
	}
	return rs
}

// TestConcurrency_failed_and_timed_out_records_dead_lettered: a record the
// action fails on and one whose call outlasts -action-timeout go to the
// dead-letter topic, one at a time and eight at once; the others reach the
// sink in order. Without -dlq the run stops at the first, uncommitted.
func TestConcurrency_failed_and_timed_out_records_dead_lettered(t *testing.T) {
	values := []string{"ok", "ok", "bad", "ok", "hang", "ok", "ok", "ok"}
	for _, n := range []int{1, 8} {
		t.Run("n"+strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, newMemStore(), 1, "dlq")
			r.cfg.DLQ, r.cfg.Concurrency, r.cfg.ActionTimeout = "dlq", n, 300*time.Millisecond
			d, _ := testDeps(t, r.s, r.rec)
			d.action = misbehaving
			mustProduce(t, r.cfg.Brokers, keyed(values...)...)
			out, err := runTo(t, r.cfg, d, 0, int64(len(values)))
			wantEnd(t, "A, past both records, at shutdown", out, err, endReleased)
			if got, want := sinkOffsets(r.rec, 0), []int64{0, 1, 3, 5, 6, 7}; !slices.Equal(got, want) || out.DeadLettered != 2 {
				t.Fatalf("sink offsets %v, %d dead letters; want %v and 2", got, out.DeadLettered, want)
			}
			dls := consumeN(t, r.cfg.Brokers, "dlq", 2)
			if h := headerMap(dls[1]); string(dls[1].Value) != "hang" || !strings.Contains(h["baton.error"], "-action-timeout") {
				t.Fatalf("second dead letter %q, error %q; want hang, and -action-timeout named", dls[1].Value, h["baton.error"])
			}
		})
		t.Run("n"+strconv.Itoa(n)+"/no-dlq", func(t *testing.T) {
			t.Parallel()
			r := newRig(t, newMemStore(), 1)
			r.cfg.Concurrency, r.cfg.ActionTimeout = n, 300*time.Millisecond
			d, _ := testDeps(t, r.s, r.rec)
			d.action = misbehaving
			mustProduce(t, r.cfg.Brokers, keyed("ok", "hang", "ok", "ok")...)
			out, err := invoke(r.ctx, r.cfg, d, invocation{"src", 0, 1000, "A"}, 5*time.Second)()
			if !errors.Is(err, errActionTimeout) || out.To != 1 {
				t.Fatalf("outcome %+v, %v; want the timeout's error, released at offset 1", out, err)
			}
			if got := sinkOffsets(r.rec, 0); !slices.Equal(got, []int64{0}) {
				t.Fatalf("sink offsets %v; want only what came before the record that hung", got)
			}
		})
	}
}

// TestConcurrency_panic_in_the_action_is_caught: a panic on a worker ends
// the run as one in a lone action does, released at the last commit; the
// process lives on.
func TestConcurrency_panic_in_the_action_is_caught(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	r.cfg.Concurrency = 8
	d, _ := testDeps(t, r.s, r.rec)
	d.action = misbehaving
	mustProduce(t, r.cfg.Brokers, keyed("ok", "ok", "boom", "ok")...)
	out, err := invoke(r.ctx, r.cfg, d, invocation{"src", 0, 1000, "A"}, 5*time.Second)()
	if err == nil || !strings.Contains(err.Error(), "the action fell over") || out.End != endError {
		t.Fatalf("outcome %+v, %v; want the run ended by the panic", out, err)
	}
	if l := mustLoad(t, r.s, r.key); l.State != stateReleased || l.Offset > 2 {
		t.Fatalf("lease %+v; want released at or before the record that panicked", l)
	}
}

// TestConcurrency_hot_key_holds_back_its_key_then_fetching: while one key's
// call hangs, the records of other keys go on through the action up to
// the window's bound (windowPerWorker a worker), and then nothing more is
// fetched; once it answers, everything reaches the sink in order.
func TestConcurrency_hot_key_holds_back_its_key_then_fetching(t *testing.T) {
	t.Parallel()
	const n, total = 4, 200
	r := newRig(t, newMemStore(), 1)
	r.cfg.Concurrency = n
	release := make(chan struct{})
	var calls, hotCalls atomic.Int32
	d, _ := testDeps(t, r.s, r.rec)
	d.action = func(ctx context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		calls.Add(1)
		if string(rec.Key) == "hot" {
			if hotCalls.Add(1) == 1 {
				<-release
			}
		}
		return append(out, rec), nil
	}
	recs := numbered(0, total)
	for i, rec := range recs {
		rec.Key = []byte(concKey(int64(i)))
		if i%50 == 0 {
			rec.Key = []byte("hot")
		}
	}
	mustProduce(t, r.cfg.Brokers, recs...)
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	wait := invoke(ctx, r.cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
	time.Sleep(500 * time.Millisecond)
	// The hot record holds a place, and the window's others were called.
	if got, most := calls.Load(), int32(n*windowPerWorker); got < 2 || got > most {
		t.Fatalf("%d action calls while the hot key hung; want other keys going on, at most %d (the window)", got, most)
	}
	if got := r.rec.count("A"); got != 0 {
		t.Fatalf("%d records written while the first one hung; want none: the sink gets them in order", got)
	}
	close(release)
	waitCommitted(t, r.cfg, d, "src", 0, total)
	cancel()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	if tl := r.rec.tally([]int64{total}); tl.Lost != 0 || tl.Reordered != 0 || tl.Duplicated != 0 {
		t.Fatalf("sink: %+v; want every record once, in order", tl)
	}
}

// TestConcurrency_one_is_today: with -concurrency 1 (the default) the run
// starts no worker and calls the action on its own goroutine, one record
// at a time in offset order, and the hot path allocates nothing a record
// (hotAllocs, as TestHotPath_allocs: skipped under -race).
func TestConcurrency_one_is_today(t *testing.T) {
	t.Run("one at a time", func(t *testing.T) {
		r := newRig(t, newMemStore(), 1)
		r.cfg.Concurrency = 1
		var order []int64
		workers := -1
		d, _ := testDeps(t, r.s, r.rec)
		d.action = func(_ context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
			if workers < 0 {
				buf := make([]byte, 1<<20)
				workers = strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*inflight).worker")
			}
			order = append(order, rec.Offset) // no lock: a second goroutine here is a race -race reports
			return append(out, rec), nil
		}
		recs := numbered(0, 500)
		for i, rec := range recs {
			rec.Key = []byte(concKey(int64(i)))
		}
		mustProduce(t, r.cfg.Brokers, recs...)
		if _, err := runTo(t, r.cfg, d, 0, 500); err != nil {
			t.Fatal(err)
		}
		if workers != 0 || !slices.IsSorted(order) || len(order) != 500 {
			t.Fatalf("%d workers running; action saw %d records, in offset order: %v; want no worker, 500 in order", workers, len(order), slices.IsSorted(order))
		}
	})
	t.Run("allocs", func(t *testing.T) { hotAllocs(t, matching(nil, action)) })
}

// TestConcurrency_deadline_margin_counts_the_slowest_action: the run stops
// before the deadline by its margin and the slowest action call seen, since
// it waits for the calls in flight before it hands over.
func TestConcurrency_deadline_margin_counts_the_slowest_action(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	p := &run{cfg: &config{MarginFloor: 500 * time.Millisecond}, deadline: deadline}
	if got, want := p.stopAt(), deadline.Add(-500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("one at a time: stop at %v, want %v", got, want)
	}
	p.fly = &inflight{}
	p.fly.slowest.Store(int64(2 * time.Second))
	if got, want := p.stopAt(), deadline.Add(-2500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("with a 2 s action seen: stop at %v, want %v", got, want)
	}
}
