// chaos_test.go is the seeded fault-injection harness: many short, overlapping
// invocations under crashes, freezes, duplicate and late ticks, store and
// broker faults and clock skew, then the invariants baton promises.
//
//	go test -run TestChaos -v ./...                          # the 20 CI seeds
//	go test -run TestChaos -chaos.seed 7 -v ./...             # one seed again
//	go test -run TestChaos -chaos.duration 10m -timeout 0 ./... # a soak
//
// A seed fixes the schedule and every fault drawn; goroutine timing still
// varies, so a rerun replays the same faults, not the same interleaving.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

var (
	chaosSeed     = flag.Uint64("chaos.seed", 0, "run this one chaos seed (0: the fixed CI set)")
	chaosDuration = flag.Duration("chaos.duration", 0, "soak: run seeds one after another for this long and print the totals")
)

const (
	chaosSeeds      = 20
	chaosPartitions = 3
	chaosWindow     = 4 * time.Second         // faults and ticks
	chaosLife       = 1200 * time.Millisecond // an invocation's deadline
	chaosEvery      = 800 * time.Millisecond  // the schedule: overlap of 400 ms
)

// chaosConfig: a 1 s lease, so frozen owners outlive it within a run.
func chaosConfig(t testing.TB, brokers []string) *config {
	c := testConfig(t, brokers, "src")
	c.TTL, c.Skew, c.CommitEvery = time.Second, 100*time.Millisecond, 150*time.Millisecond
	c.setTiming()
	c.NearHandoff, c.ReadEvery, c.WaitPoll = time.Hour, 20*time.Millisecond, 5*time.Millisecond
	c.MarginFloor, c.FetchWait, c.StoreTimeout = 100*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond
	// An injected NOT_LEADER makes the client refresh metadata, no sooner
	// than this after the last refresh (5 s by default, longer than an
	// invocation here): records keep flowing through the faults.
	c.KafkaOpts = append(c.KafkaOpts, kgo.MetadataMinAge(100*time.Millisecond))
	return c
}

// chaosStats are the totals a run (or a soak) reports.
type chaosStats struct {
	Runs, Invocations, Handoffs, Crashes, Retries, Freezes, Duplicates, Stales int64
	StoreFaults, BrokerFaults                                                  int64
	Produced, Lost, Reordered, Twice, Overlaps, Rewinds                        int64
	MaxGap                                                                     time.Duration
}

func (s *chaosStats) add(o chaosStats) {
	s.Runs += o.Runs
	s.Invocations += o.Invocations
	s.Handoffs += o.Handoffs
	s.Crashes += o.Crashes
	s.Retries += o.Retries
	s.Freezes += o.Freezes
	s.Duplicates += o.Duplicates
	s.Stales += o.Stales
	s.StoreFaults += o.StoreFaults
	s.BrokerFaults += o.BrokerFaults
	s.Produced += o.Produced
	s.Lost += o.Lost
	s.Reordered += o.Reordered
	s.Twice += o.Twice
	s.Overlaps += o.Overlaps
	s.Rewinds += o.Rewinds
	s.MaxGap = max(s.MaxGap, o.MaxGap)
}

func (s chaosStats) String() string {
	return fmt.Sprintf("runs=%d invocations=%d handoffs=%d crashes=%d same_tick_retries=%d freezes=%d duplicates_injected=%d stale_injected=%d store_faults=%d broker_faults=%d produced=%d lost=%d reordered=%d delivered_twice=%d owner_overlap_writes=%d sink_rewinds=%d max_handoff_gap_ms=%.1f",
		s.Runs, s.Invocations, s.Handoffs, s.Crashes, s.Retries, s.Freezes, s.Duplicates, s.Stales, s.StoreFaults, s.BrokerFaults,
		s.Produced, s.Lost, s.Reordered, s.Twice, s.Overlaps, s.Rewinds, float64(s.MaxGap.Microseconds())/1000)
}

// TestChaos is the harness with the at-least-once sink (kafka://): records
// may reach the sink twice, never out of order, and never from a fenced
// owner after its successor's first.
func TestChaos(t *testing.T) { chaosTest(t, false) }

// TestChaosTxn is the harness with the exactly-once sink (kafka+txn): what
// counts is what a read_committed consumer of the sink topic sees, and a
// record delivered twice breaks an invariant.
func TestChaosTxn(t *testing.T) { chaosTest(t, true) }

func chaosTest(t *testing.T, txn bool) {
	// Not parallel: the goroutine check at the end needs the process to itself.
	ignore := goleak.IgnoreCurrent()
	name := map[bool]string{false: "TestChaos", true: "TestChaosTxn"}[txn]
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			var total chaosStats
			var mu sync.Mutex
			run := func(t *testing.T, seed uint64) {
				st := chaosRun(t, b, seed, txn)
				mu.Lock()
				total.add(st)
				mu.Unlock()
			}
			switch {
			case *chaosDuration > 0:
				end := time.Now().Add(*chaosDuration)
				for seed := uint64(1000); time.Now().Before(end); seed++ {
					if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { run(t, seed) }) {
						break
					}
				}
				fmt.Printf("%s soak %s %v: %s\n", name, b.name, *chaosDuration, total)
			case *chaosSeed != 0:
				t.Run(fmt.Sprintf("seed=%d", *chaosSeed), func(t *testing.T) { run(t, *chaosSeed) })
			default:
				t.Run("seeds", func(t *testing.T) {
					for seed := uint64(1); seed <= chaosSeeds; seed++ {
						t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
							t.Parallel()
							run(t, seed)
						})
					}
				})
			}
			t.Logf("%s: %s", b.name, total)
		})
	}
	if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")); err != nil {
		t.Errorf("invariant every-goroutine-ended: %v", err)
	}
}

// chaosRun is one seeded run; it fails the test with the seed on any broken
// invariant.
func chaosRun(t *testing.T, b backend, seed uint64, txn bool) chaosStats {
	rng := rand.New(rand.NewPCG(seed, 0x62746f6e))
	name := map[bool]string{false: "TestChaos", true: "TestChaosTxn"}[txn]
	fail := func(invariant, format string, a ...any) {
		t.Helper()
		t.Errorf("invariant %s broken (seed %d; rerun with -run '%s/%s' -chaos.seed %d): %s",
			invariant, seed, name, b.name, seed, fmt.Sprintf(format, a...))
	}
	cluster := newCluster(t, chaosPartitions, "src", "out")
	cfg := chaosConfig(t, cluster.ListenAddrs())
	cfg.Sink, cfg.SinkScheme, cfg.SinkTopic = "kafka://out", "kafka", "out"
	if txn {
		cfg.Sink, cfg.SinkScheme = "kafka+txn://out", "kafka+txn"
	}
	st := chaosStats{Runs: 1}
	var brokerFaults atomic.Int64
	injectBrokerFaults(cluster, rand.New(rand.NewPCG(seed, 1)), &brokerFaults)

	obs := &observer{store: b.open(t)}
	rec := newRecorder(nil)
	ctx := ctxT(t)
	pctx, stopProducing := context.WithTimeout(ctx, chaosWindow)
	defer stopProducing()
	produced, err := produceAcked(pctx, cfg.Brokers, "src", chaosPartitions, 2*time.Millisecond, rec.acked)
	if err != nil {
		t.Fatal(err)
	}
	h := &chaosHarness{cfg: cfg, obs: obs, rec: rec, log: testLogger(t), seed: seed}
	// What reached the sink: the recorder's writes, or with kafka+txn what a
	// read_committed consumer of the sink topic reads.
	delivered := func(total []int64, _ time.Duration) tally { return rec.tally(total) }
	if txn {
		out := newSinkReader(t, cfg.Brokers, "out", true)
		delivered = func(total []int64, quiet time.Duration) tally { return out.tally(ctx, total, quiet) }
	}
	start := time.Now()
	for n := 0; time.Since(start) < chaosWindow; n++ {
		tick := start.Add(time.Duration(n) * chaosEvery)
		time.Sleep(time.Until(tick))
		for p := range int32(chaosPartitions) {
			h.tick(ctx, rng, p, tick, n)
		}
	}
	total := produced()
	// The faults stop; clean invocations finish the job, as the schedule would.
	deadline := time.Now().Add(20 * time.Second)
	for n := 1000; delivered(total, 300*time.Millisecond).Lost > 0 && time.Now().Before(deadline); n++ {
		tick := time.Now()
		for p := range int32(chaosPartitions) {
			h.start(ctx, invocation{"src", p, tick.UnixMilli(), fmt.Sprintf("clean-%d", n)}, plan{}, tick, 0)
		}
		time.Sleep(chaosEvery)
	}
	if !h.wait(10 * time.Second) {
		fail("every-handler-returned", "%d invocations still running 10s after the last deadline", h.running.Load())
	}
	tl := delivered(total, time.Second)
	if tl.Lost > 0 {
		fail("nothing-lost", "%d of %d produced records never reached the sink", tl.Lost, tl.Produced)
	}
	if tl.Reordered > 0 {
		fail("order-kept", "%d records reached the sink out of order (duplicates removed)", tl.Reordered)
	}
	if txn && tl.Duplicated > 0 {
		fail("exactly-once", "a read_committed consumer of the sink read %d records twice", tl.Duplicated)
	}
	if msg := obs.check(); msg != "" {
		fail("epoch-fencing", "%s", msg)
	}
	if msg := sinkEpochOrder(t, ctx, cfg.Brokers, "out", txn); msg != "" {
		fail("sink-epochs-in-order", "%s", msg)
	}
	st.Invocations, st.Crashes, st.Freezes = h.invocations.Load(), h.crashes.Load(), h.freezes.Load()
	st.Retries = h.retries.Load()
	st.Duplicates, st.Stales, st.StoreFaults = h.duplicates.Load(), h.stales.Load(), h.storeFaults.Load()
	st.BrokerFaults = brokerFaults.Load()
	st.Produced, st.Lost, st.Reordered, st.Twice = int64(tl.Produced), int64(tl.Lost), int64(tl.Reordered), int64(tl.Duplicated)
	writes := rec.tally(total) // handoffs are seen at the sink's writes
	st.Handoffs, st.MaxGap, st.Overlaps = int64(writes.Handoffs), writes.MaxGap, int64(rec.overlaps())
	st.Rewinds = h.rewinds.Load()
	for _, hd := range rec.handoffs {
		if hd.Gap > 3*cfg.TTL {
			t.Logf("seed %d: long handoff gap %v on p%d from %s to %s at offset %d", seed, hd.Gap, hd.Partition, hd.From, hd.To, hd.Offset)
		}
	}
	return st
}

// A plan is what goes wrong in one invocation, drawn from the seed.
type plan struct {
	crashAt   string // a store step, "batch" (mid-batch) or "" for none
	crashN    int    // at that step's n-th call (sink write, for batch)
	afterLand bool   // a crashing store write lands before the crash
	freezeAt  int    // freeze at this commit (0: never), longer than the lease
	faults    bool   // store calls fail, hang or lose answers at random
	skew      time.Duration
}

func drawPlan(rng *rand.Rand, skew time.Duration) plan {
	pl := plan{faults: rng.IntN(3) == 0, skew: time.Duration(rng.Int64N(int64(skew))) - skew/2}
	switch r := rng.IntN(100); {
	case r < 20:
		pl.crashAt = []string{"take", "ask", "batch", "commit", "handOver", "release"}[rng.IntN(6)]
		pl.crashN, pl.afterLand = 1+rng.IntN(3), rng.IntN(2) == 0
		if pl.crashAt == "batch" {
			pl.crashN = 1 + rng.IntN(500)
		}
	case r < 30:
		pl.freezeAt = 1 + rng.IntN(4)
	}
	return pl
}

// chaosHarness starts invocations and counts what it injected.
type chaosHarness struct {
	cfg  *config
	obs  *observer
	rec  *recorder
	log  *slog.Logger
	seed uint64

	wg                                                             sync.WaitGroup
	running                                                        atomic.Int64
	invocations, crashes, freezes, duplicates, stales, storeFaults atomic.Int64
	rewinds                                                        atomic.Int64 // the sink failed; read again in the run
	retries                                                        atomic.Int64 // a crashed invocation's event delivered again
}

// tick delivers one schedule tick for a partition: once, twice (a duplicate
// delivery), or once and then late again (a stale tick).
func (h *chaosHarness) tick(ctx context.Context, rng *rand.Rand, p int32, tick time.Time, n int) {
	owner := func(tag string) string { return fmt.Sprintf("t%d-p%d%s", n, p, tag) }
	inv := invocation{"src", p, tick.UnixMilli(), owner("")}
	h.start(ctx, inv, drawPlan(rng, h.cfg.Skew), tick, rng.Uint64())
	switch r := rng.IntN(100); {
	case r < 10:
		h.duplicates.Add(1)
		dup := inv
		dup.Owner = owner("-dup")
		h.start(ctx, dup, drawPlan(rng, h.cfg.Skew), tick, rng.Uint64())
	case r < 15 && n > 0:
		h.stales.Add(1)
		late := invocation{"src", p, tick.Add(-chaosEvery).UnixMilli(), owner("-late")}
		h.start(ctx, late, drawPlan(rng, h.cfg.Skew), tick.Add(chaosEvery/2), rng.Uint64())
	}
}

// start runs one invocation at its time, with its own faulty view of the
// store and the sink, and a deadline chaosLife after it.
func (h *chaosHarness) start(ctx context.Context, inv invocation, pl plan, at time.Time, seed uint64) {
	h.invocations.Add(1)
	h.running.Add(1)
	h.wg.Go(func() {
		defer h.running.Add(-1)
		time.Sleep(time.Until(at))
		ictx, cancel := context.WithDeadline(ctx, at.Add(chaosLife))
		defer cancel()
		cs := &chaosStore{inner: h.obs, plan: pl, rng: rand.New(rand.NewPCG(seed, 2)), h: h, crash: cancel}
		epoch := new(atomic.Int64)
		d := &deps{store: epochTap{settled{cs}, inv.Owner, epoch}, kafka: kgo.NewClient, log: h.log, stdout: io.Discard,
			now: func() time.Time { return time.Now().Add(pl.skew) },
			wrapSink: func(inv invocation, s sink) sink {
				return h.rec.wrap(inv, chaosSink{epochSink{s, epoch}, cs})
			}}
		out, err := runInvocation(ictx, h.cfg, d, inv)
		h.rewinds.Add(int64(out.Rewinds))
		h.log.Info("chaos invocation", "owner", inv.Owner, "plan", fmt.Sprintf("%+v", pl), "outcome", fmt.Sprintf("%+v", out), "err", err)
		if cs.down.Load() {
			h.retry(ctx, inv, seed)
		}
	})
}

// retry delivers a crashed invocation's event again, as Lambda does after
// a failed async invocation: the same tick, at most twice, about a minute
// and two to three minutes later (scaled to the chaos schedule, where an
// invocation's 1.2 s stands for 15 minutes).
func (h *chaosHarness) retry(ctx context.Context, inv invocation, seed uint64) {
	n := strings.Count(inv.Owner, "-retry")
	if n >= 2 || ctx.Err() != nil {
		return
	}
	h.retries.Add(1)
	rng := rand.New(rand.NewPCG(seed, 3))
	delay := chaosLife / 15 * time.Duration(1+n+rng.IntN(1+n))
	again := inv
	again.Owner = inv.Owner + "-retry"
	h.start(ctx, again, drawPlan(rng, h.cfg.Skew), time.Now().Add(delay), rng.Uint64())
}

// wait waits for every invocation, up to limit.
func (h *chaosHarness) wait(limit time.Duration) bool {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(chaosLife + limit):
		return false
	}
}

var errInjected = errors.New("injected: store unavailable")

// chaosStore is one invocation's view of the store: its planned crash or
// freeze, and random faults: a call that fails, hangs, or lands and then
// loses its answer.
type chaosStore struct {
	inner *observer
	plan  plan
	h     *chaosHarness
	crash context.CancelFunc

	mu      sync.Mutex
	rng     *rand.Rand
	calls   map[string]int
	commits int
	down    atomic.Bool
}

// do runs one store step through the plan; write performs it.
func (c *chaosStore) do(ctx context.Context, op string, write func() error) error {
	if c.down.Load() {
		return errCrashed
	}
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[op]++
	n, roll := c.calls[op], c.rng.IntN(100)
	if op == "commit" {
		c.commits++
	}
	freeze := op == "commit" && c.commits == c.plan.freezeAt
	c.mu.Unlock()
	if freeze {
		// Frozen like a paused process: the clock runs, nothing else does.
		c.h.freezes.Add(1)
		time.Sleep(c.h.cfg.TTL + c.h.cfg.Skew + 300*time.Millisecond)
	}
	if op == c.plan.crashAt && n == c.plan.crashN {
		if c.plan.afterLand {
			write()
		}
		c.die()
		return errCrashed
	}
	if c.plan.faults && op != "load" {
		switch {
		case roll < 4:
			c.h.storeFaults.Add(1)
			return errInjected
		case roll < 6:
			c.h.storeFaults.Add(1)
			<-ctx.Done()
			return ctx.Err()
		case roll < 10:
			c.h.storeFaults.Add(1)
			if err := write(); err != nil {
				return err
			}
			return errLost
		}
	}
	return write()
}

func (c *chaosStore) die() {
	if !c.down.Swap(true) {
		c.h.crashes.Add(1)
		c.crash()
	}
}

func (c *chaosStore) load(ctx context.Context, key string) (l lease, err error) {
	err = c.do(ctx, "load", func() error { l, err = c.inner.load(ctx, key); return err })
	return l, err
}

func (c *chaosStore) take(ctx context.Context, key string, seen lease, cl claim, exp int64) (l lease, err error) {
	err = c.do(ctx, "take", func() error { l, err = c.inner.take(ctx, key, seen, cl, exp); return err })
	return l, err
}

func (c *chaosStore) ask(ctx context.Context, key string, epoch int64, cl claim, until int64) error {
	return c.do(ctx, "ask", func() error { return c.inner.ask(ctx, key, epoch, cl, until) })
}

func (c *chaosStore) handOver(ctx context.Context, x lease, offset, exp int64) (l lease, err error) {
	err = c.do(ctx, "handOver", func() error { l, err = c.inner.handOver(ctx, x, offset, exp); return err })
	return l, err
}

func (c *chaosStore) commit(ctx context.Context, x lease, offset, exp int64) (l lease, err error) {
	err = c.do(ctx, "commit", func() error { l, err = c.inner.commit(ctx, x, offset, exp); return err })
	return l, err
}

func (c *chaosStore) release(ctx context.Context, x lease, offset int64) error {
	return c.do(ctx, "release", func() error { return c.inner.release(ctx, x, offset) })
}

// chaosSink crashes its invocation mid-batch when the plan says so, and
// takes nothing once it is down.
type chaosSink struct {
	sink
	c *chaosStore
}

func (s chaosSink) write(ctx context.Context, r *kgo.Record) error {
	if s.c.down.Load() {
		return errCrashed
	}
	if s.c.plan.crashAt == "batch" {
		s.c.mu.Lock()
		s.c.calls["batch"]++
		n := s.c.calls["batch"]
		s.c.mu.Unlock()
		if n == s.c.plan.crashN {
			s.c.die()
			return errCrashed
		}
	}
	return s.sink.write(ctx, r)
}

// observer sits on the real store and keeps every write that landed: the
// epoch it was made under and the epoch it left.
type observer struct {
	store
	mu     sync.Mutex
	writes []landed
}

type landed struct {
	key, op    string
	owner      string
	start, end time.Time
	held, made int64
}

func (o *observer) note(key, op, owner string, start time.Time, held, made int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes = append(o.writes, landed{key, op, owner, start, time.Now(), held, made})
}

func (o *observer) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	start := time.Now()
	l, err := o.store.take(ctx, key, seen, c, exp)
	if err == nil {
		o.note(key, "take", c.Owner, start, seen.Epoch, l.Epoch)
	}
	return l, err
}

func (o *observer) ask(ctx context.Context, key string, epoch int64, c claim, until int64) error {
	start := time.Now()
	err := o.store.ask(ctx, key, epoch, c, until)
	if err == nil {
		o.note(key, "ask", c.Owner, start, epoch, epoch)
	}
	return err
}

func (o *observer) handOver(ctx context.Context, x lease, offset, exp int64) (lease, error) {
	start := time.Now()
	l, err := o.store.handOver(ctx, x, offset, exp)
	if err == nil {
		o.note(x.Key, "handOver", x.Owner, start, x.Epoch, l.Epoch)
	}
	return l, err
}

func (o *observer) commit(ctx context.Context, x lease, offset, exp int64) (lease, error) {
	start := time.Now()
	l, err := o.store.commit(ctx, x, offset, exp)
	if err == nil {
		o.note(x.Key, "commit", x.Owner, start, x.Epoch, l.Epoch)
	}
	return l, err
}

func (o *observer) release(ctx context.Context, x lease, offset int64) error {
	start := time.Now()
	err := o.store.release(ctx, x, offset)
	if err == nil {
		o.note(x.Key, "release", x.Owner, start, x.Epoch, x.Epoch)
	}
	return err
}

// epochTap notes the epoch an invocation owns the lease under, from the
// store's answers to it: a take, or a load showing the baton handed over.
// It sits above settled, so a take whose answer was lost and read back
// counts too.
type epochTap struct {
	store
	owner string
	epoch *atomic.Int64
}

func (e epochTap) saw(l lease, err error) (lease, error) {
	if err == nil && l.Owner == e.owner {
		e.epoch.Store(l.Epoch)
	}
	return l, err
}

func (e epochTap) load(ctx context.Context, key string) (lease, error) {
	return e.saw(e.store.load(ctx, key))
}

func (e epochTap) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	return e.saw(e.store.take(ctx, key, seen, c, exp))
}

// epochHeader carries the epoch of the owner that wrote a sink record.
const epochHeader = "baton.test.epoch"

// epochSink tags each record an owner writes with its epoch.
type epochSink struct {
	sink
	epoch *atomic.Int64
}

func (s epochSink) write(ctx context.Context, r *kgo.Record) error {
	tagged := *r // the action may hand on the fetched record itself
	e := strconv.AppendInt(nil, s.epoch.Load(), 10)
	tagged.Headers = append(slices.Clip(r.Headers), kgo.RecordHeader{Key: epochHeader, Value: e})
	return s.sink.write(ctx, &tagged)
}

// sinkEpochOrder reads the sink topic (what a read_committed consumer sees,
// with kafka+txn) and checks each partition: no record from an epoch after
// the first record of a newer one. A fenced owner's produces must settle
// before its lease can pass on, let alone before the next owner writes.
func sinkEpochOrder(t *testing.T, ctx context.Context, brokers []string, topic string, committed bool) string {
	t.Helper()
	cl := newSinkReader(t, brokers, topic, committed).cl
	type first struct{ epoch, offset int64 }
	newest := map[int32]first{}
	var problems []string
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			e := int64(-1)
			for _, h := range r.Headers {
				if h.Key == epochHeader {
					e, _ = strconv.ParseInt(string(h.Value), 10, 64)
				}
			}
			switch top := newest[r.Partition]; {
			case e <= 0:
				problems = append(problems, fmt.Sprintf("partition %d offset %d: no owner's epoch", r.Partition, r.Offset))
			case e < top.epoch:
				problems = append(problems, fmt.Sprintf("partition %d offset %d from epoch %d, after offset %d from epoch %d",
					r.Partition, r.Offset, e, top.offset, top.epoch))
			case e > top.epoch:
				newest[r.Partition] = first{e, r.Offset}
			}
		})
		if n == 0 {
			break
		}
	}
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
	}
	return strings.Join(problems, "; ")
}

// check: on each key, no write was accepted under an epoch older than one
// already written before it began, and the epoch never went down.
func (o *observer) check() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	byEnd := slices.Clone(o.writes)
	slices.SortFunc(byEnd, func(a, b landed) int { return a.end.Compare(b.end) })
	var problems []string
	for _, w := range o.writes {
		for _, v := range byEnd {
			if !v.end.Before(w.start) {
				break
			}
			if v.key == w.key && (v.made > w.held || v.made > w.made) {
				problems = append(problems, fmt.Sprintf("%s by %s under epoch %d (leaving %d) accepted after %s by %s had left epoch %d",
					w.op, w.owner, w.held, w.made, v.op, v.owner, v.made))
				break
			}
		}
	}
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
	}
	return strings.Join(problems, "; ")
}

// overlaps counts sink writes by an owner after a newer owner's first write
// to the same partition: zero means ownership at the sink never overlapped.
func (r *recorder) overlaps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ws := range r.writes {
		newest, seen := "", map[string]bool{}
		for _, w := range ws {
			switch {
			case !seen[w.Owner]:
				seen[w.Owner], newest = true, w.Owner
			case w.Owner != newest:
				n++
			}
		}
	}
	return n
}

// injectBrokerFaults makes the broker answer some fetches and produces with
// partition errors (not leader, request timed out), as a broker in trouble
// does, and some transaction requests with errors; clients must retry
// through them.
func injectBrokerFaults(c *kfake.Cluster, rng *rand.Rand, count *atomic.Int64) {
	var mu sync.Mutex
	roll := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(100) < 3
	}
	c.ControlKey(int16(kmsg.Fetch), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !roll() {
			return nil, nil, false
		}
		count.Add(1)
		req := kr.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	// Transactions (kafka+txn only): a commit refused before it applies
	// (the owner aborts and reads again), and an offset commit that applies
	// but answers REQUEST_TIMED_OUT (the owner sends it again).
	c.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.EndTxnRequest)
		if !req.Commit || !roll() {
			return nil, nil, false
		}
		count.Add(1)
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.RequestTimedOut, Count: -1,
		When: func(kmsg.Request) bool {
			if !roll() {
				return false
			}
			count.Add(1)
			return true
		}})
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !roll() {
			return nil, nil, false
		}
		count.Add(1)
		code := kerr.NotLeaderForPartition.Code
		if count.Load()%2 == 0 {
			code = kerr.RequestTimedOut.Code
		}
		return refuseProduce(kr.(*kmsg.ProduceRequest), code), nil, true
	})
}

// refuseProduce answers every partition of a produce request with code.
func refuseProduce(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// control is the operator's, not the invocation's: it passes through.
func (c *chaosStore) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	return c.inner.control(ctx, l, seek, paused)
}

func (c *chaosStore) reset(ctx context.Context, l lease) (lease, error) {
	return c.inner.reset(ctx, l)
}

func (c *chaosStore) withdraw(ctx context.Context, key string, cl claim) (l lease, err error) {
	err = c.do(ctx, "withdraw", func() error { l, err = c.inner.withdraw(ctx, key, cl); return err })
	return l, err
}

// TestChaos_sink_epoch_check_sees_a_late_record: the check flags a record
// of an epoch that lands after a newer epoch's first, and nothing else.
func TestChaos_sink_epoch_check_sees_a_late_record(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 2, "out")
	tagged := func(p int32, epoch string) *kgo.Record {
		return &kgo.Record{Topic: "out", Partition: p, Headers: []kgo.RecordHeader{{Key: epochHeader, Value: []byte(epoch)}}}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctxT(t), tagged(0, "1"), tagged(0, "1"), tagged(0, "3"), tagged(0, "3"),
		tagged(1, "1"), tagged(1, "2"), tagged(1, "1"), tagged(1, "2")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := sinkEpochOrder(t, ctxT(t), cluster.ListenAddrs(), "out", false)
	if want := "partition 1 offset 2 from epoch 1, after offset 1 from epoch 2"; got != want {
		t.Fatalf("check says %q, want %q", got, want)
	}
}
