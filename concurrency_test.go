// concurrency_test.go tests -concurrency N: many records of a partition in
// the action at once, never two of one key, order kept per key at the
// sink, nothing lost, and exactly once with kafka+txn.

package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
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
