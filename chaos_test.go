// chaos_test.go is the seeded fault-injection harness: many short, overlapping
// invocations under crashes (a successor's while it waits among them),
// freezes, duplicate, late and same-tick-retry ticks, store faults (lost
// answers, an ask's among them), broker faults and clock skew; and per run a
// stdout that fails now and then, a produce refused while the source
// partition is idle, records too large for the sink, lease records deleted
// behind the store's back, an action slow for a stretch of records, and a
// renewal held in flight across a taker's read. Then the invariants baton
// promises, one writer at a time per partition among them.
//
// Each seed runs with -concurrency 1 (subtests n1) and, every fourth of
// the CI set, with 16 (n16): keyed records, an action that takes 0-2 ms,
// and the checks that each key's records reach the sink in order and
// never two of a key are in the action at once.
//
//	go test -run TestChaos -v ./...                          # the 20 CI seeds; 1, 5, 9, 13, 17 with N=16 too
//	go test -run TestChaos -chaos.seed 7 -v ./...             # one seed again, with N=1 and N=16
//	go test -run TestChaos -chaos.seed 7 -chaos.concurrency 16 ./... # with N=16 only
//	go test -run TestChaos -chaos.duration 10m -timeout 0 ./... # a soak, half its time each
//
// A seed fixes the schedule and every fault drawn; goroutine timing still
// varies, so a rerun replays the same faults, not the same interleaving.

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	chaosN        = flag.Int("chaos.concurrency", 0, "run the seeds with this -concurrency only (0: with 1, and with 16 on every fourth CI seed)")
	chaosBugs     = flag.Bool("chaos.bugs", false, "run the tests of known bugs the chaos runs found, which fail until fixed")
)

const (
	chaosSeeds = 20
	// With -concurrency 16 the CI runs every fourth seed only (1, 5, 9,
	// 13, 17: between them, each kind of fault the run plans draw, in
	// TestChaos and TestChaosTxn): each seed costs about 7 s of 4
	// parallel slots, and all 20 would add nearly 3 minutes a build to
	// a tight CI budget.
	chaosConcurrency     = 16
	chaosEveryConcurrent = 4
	chaosKeys            = 64 // the keys the source's records spread over with -concurrency above 1
	chaosPartitions      = 3
	chaosWindow          = 4 * time.Second         // faults and ticks
	chaosLife            = 1200 * time.Millisecond // an invocation's deadline
	chaosEvery           = 800 * time.Millisecond  // the schedule: overlap of 400 ms
	chaosIdle            = 500 * time.Millisecond  // a source partition's idle while
	chaosSinkLimit       = 16 << 10                // the sink producer's batch limit in runs with oversized records
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

// chaosStats count what a run injected and saw, the harness as it goes;
// a soak adds its runs up.
type chaosStats struct {
	runs, invocations, handoffs, crashes, retries, successorsKilled, freezes, duplicates, stales atomic.Int64
	storeFaults, asksLost, brokerFaults, stdoutFaults, refused, oversized, deleted               atomic.Int64
	slowed, lateRenewals                                                                         atomic.Int64
	produced, lost, reordered, twice, doubleWriters, doubleWrites, lostRecordOverlaps, rewinds   atomic.Int64
	keysReordered, keyClashes, knownBug                                                          atomic.Int64
	maxGap                                                                                       atomic.Int64 // ns, printed apart
	mostInFlight                                                                                 atomic.Int64 // records in one run's action at once, printed apart
}

// counts are the stats line's names and counts, in its order.
func (s *chaosStats) counts() ([]string, []*atomic.Int64) {
	return strings.Fields(`runs invocations handoffs crashes same_tick_retries successors_killed freezes duplicates_injected
		stale_injected store_faults asks_lost broker_faults stdout_write_faults refused_produces oversized_records records_deleted
		slow_records takes_read_before_a_renewal
		produced lost reordered delivered_twice double_writers double_writes lost_record_overlap_writes sink_rewinds
		keys_reordered key_clashes reordered_by_known_bug`),
		[]*atomic.Int64{&s.runs, &s.invocations, &s.handoffs, &s.crashes, &s.retries, &s.successorsKilled, &s.freezes, &s.duplicates,
			&s.stales, &s.storeFaults, &s.asksLost, &s.brokerFaults, &s.stdoutFaults, &s.refused, &s.oversized, &s.deleted,
			&s.slowed, &s.lateRenewals,
			&s.produced, &s.lost, &s.reordered, &s.twice, &s.doubleWriters, &s.doubleWrites, &s.lostRecordOverlaps, &s.rewinds,
			&s.keysReordered, &s.keyClashes, &s.knownBug}
}

// add is not safe for concurrent use: the gap's maximum is a load and a store.
func (s *chaosStats) add(o *chaosStats) {
	_, to := s.counts()
	_, from := o.counts()
	for i, n := range from {
		to[i].Add(n.Load())
	}
	s.maxGap.Store(max(s.maxGap.Load(), o.maxGap.Load()))
	s.mostInFlight.Store(max(s.mostInFlight.Load(), o.mostInFlight.Load()))
}

func (s *chaosStats) String() string {
	names, ns := s.counts()
	var b strings.Builder
	for i, n := range ns {
		fmt.Fprintf(&b, "%s=%d ", names[i], n.Load())
	}
	return fmt.Sprintf("%smax_handoff_gap_ms=%.1f most_in_flight=%d", b.String(), float64(time.Duration(s.maxGap.Load()).Microseconds())/1000,
		s.mostInFlight.Load())
}

// TestChaos is the harness with the at-least-once sink (kafka://, or in
// some runs stdout): records may reach the sink twice, never out of order,
// and never from a fenced owner after its successor's first; no owner
// writes after a newer owner's first write.
func TestChaos(t *testing.T) { chaosTest(t, false) }

// TestChaosTxn is the harness with the exactly-once sink (kafka+txn): what
// counts is what a read_committed consumer of the sink topic sees, and a
// record delivered twice breaks an invariant.
func TestChaosTxn(t *testing.T) { chaosTest(t, true) }

func chaosTest(t *testing.T, txn bool) {
	// Not parallel: the goroutine check at the end needs the process to itself.
	ignore := goleak.IgnoreCurrent()
	name := t.Name()
	eachOf(t, chaosBackends(t), false, func(t *testing.T, b backend) {
		totals := map[int]*chaosStats{}
		for _, n := range chaosConcurrencies() {
			totals[n] = new(chaosStats)
		}
		var mu sync.Mutex
		run := func(t *testing.T, seed uint64, n int, parallel bool) bool {
			return t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				if parallel {
					t.Parallel()
				}
				st := chaosRun(t, b, seed, txn, n)
				mu.Lock()
				defer mu.Unlock()
				totals[n].add(st)
			})
		}
		// each runs f in a subtest per -concurrency, named n1 or n16; in
		// parallel, the groups' seeds share the slots, and the shorter
		// group fills the other's tail. Once its seeds are done, a group
		// with more than one record at a time must have had records
		// overlap in the action, or it tested nothing new.
		each := func(t *testing.T, parallel bool, f func(t *testing.T, n int)) {
			for _, n := range chaosConcurrencies() {
				t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
					if parallel {
						t.Parallel()
					}
					t.Cleanup(func() {
						mu.Lock()
						defer mu.Unlock()
						if most := totals[n].mostInFlight.Load(); n > 1 && !t.Failed() && most < int64(n/2) {
							t.Errorf("invariant records-overlap broken: at most %d records were in the action at once with -concurrency %d; want %d or more in some run",
								most, n, n/2)
						}
					})
					f(t, n)
				})
			}
		}
		switch {
		case *chaosDuration > 0:
			// Each -concurrency soaks for its share of the time.
			share := *chaosDuration / time.Duration(len(chaosConcurrencies()))
			each(t, false, func(t *testing.T, n int) {
				end := time.Now().Add(share)
				for seed := uint64(1000); time.Now().Before(end) && run(t, seed, n, false); seed++ {
				}
			})
			for _, n := range chaosConcurrencies() {
				fmt.Printf("%s soak %s n%d %v: %s\n", name, b.name, n, *chaosDuration, totals[n])
			}
		case *chaosSeed != 0:
			each(t, false, func(t *testing.T, n int) { run(t, *chaosSeed, n, false) })
		default:
			t.Run("seeds", func(t *testing.T) {
				each(t, true, func(t *testing.T, n int) {
					step := uint64(1)
					if n > 1 && *chaosN == 0 {
						step = chaosEveryConcurrent
					}
					for seed := uint64(1); seed <= chaosSeeds; seed += step {
						run(t, seed, n, true)
					}
				})
			})
		}
		for _, n := range chaosConcurrencies() {
			t.Logf("%s n%d: %s", b.name, n, totals[n])
		}
	})
	if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")); err != nil {
		t.Errorf("invariant every-goroutine-ended: %v", err)
	}
}

// chaosConcurrencies are the -concurrency values the seeds run with.
func chaosConcurrencies() []int {
	if *chaosN > 0 {
		return []int{*chaosN}
	}
	return []int{1, chaosConcurrency}
}

// A runPlan is what goes wrong in a run beyond its invocations' plans,
// drawn from the seed. Times count from the run's start.
type runPlan struct {
	stdout bool          // the stdout sink, through a writer that fails now and then (TestChaos only)
	idle   []*idleWindow // source partitions that go idle, the sink refusing a produce meanwhile
	big    []timed       // records larger than the sink's producer takes, dead-lettered (-dlq set)
	lose   []timed       // lease records deleted behind the store's back
	slow   *slowStretch  // an action slow for a stretch of records; nil: none
	late   *timed        // a renewal held in flight across a taker's read (lateRenewal); nil: none
}

type timed struct {
	p  int32
	at time.Duration
}

// An idleWindow: from its start nothing more is produced to the source
// partition but one last record, so the owner's produce of what it read
// last is refused when nothing more comes to read: the failure shows only
// at the commit's flush.
type idleWindow struct {
	p        int32
	from, to time.Duration
	last     atomic.Bool // the last record is produced
	refused  atomic.Bool // a produce was refused in the window
}

// A slowStretch: the first invocation to own partition p from at on
// takes d over each of its first records, left of them (read again ones
// included): an action calling something slow from that invocation. d is
// up to most of the renew margin, the stretch one to two and a half
// leases (with -concurrency N, N times the records: N are slow at once).
// An owner that renews meanwhile yields between records and hands over to
// a successor that asks; with stall its lease store writes fail too while
// the stretch lasts (its network is slow), so its lease ends in the middle
// of a batch while a successor waits, who is not slow.
type slowStretch struct {
	p     int32
	at    time.Duration
	d     time.Duration
	stall bool
	left  atomic.Int64
	owner atomic.Pointer[string] // the slow invocation's name
}

// slows reports whether the action of the invocation named owner takes d
// over its record, since after the run's start, the invocation's first
// record if first: its first record from at on claims the stretch.
func (s *slowStretch) slows(owner string, first bool, since time.Duration) bool {
	mine := s.is(owner) || first && since >= s.at && s.owner.CompareAndSwap(nil, &owner)
	return mine && s.left.Add(-1) >= 0
}

// is reports whether the invocation named owner is the slow one.
func (s *slowStretch) is(owner string) bool {
	o := s.owner.Load()
	return o != nil && *o == owner
}

// stalls reports whether the store writes of invocation owner of
// partition p fail: it is the slow one, stalling, and still slow.
func (s *slowStretch) stalls(p int32, owner string) bool {
	return s != nil && s.stall && p == s.p && s.is(owner) && s.left.Load() > 0
}

// drawRunPlan draws a run's plan from its seed. Faults added later draw
// after the earlier ones, so a seed keeps the faults it had.
func drawRunPlan(seed uint64, txn bool, cfg *config) *runPlan {
	rng := rand.New(rand.NewPCG(seed, 4))
	between := func(from, to time.Duration) time.Duration { return from + time.Duration(rng.Int64N(int64(to-from))) }
	rp := &runPlan{stdout: !txn && rng.IntN(10) < 3}
	ps := rng.Perm(chaosPartitions)
	if !rp.stdout && rng.IntN(2) == 0 {
		for _, p := range ps[:2] {
			from := between(300*time.Millisecond, chaosWindow-chaosIdle-300*time.Millisecond)
			rp.idle = append(rp.idle, &idleWindow{p: int32(p), from: from, to: from + chaosIdle})
		}
	}
	if !rp.stdout && rng.IntN(2) == 0 {
		for range 1 + rng.IntN(3) {
			rp.big = append(rp.big, timed{int32(rng.IntN(chaosPartitions)), between(200*time.Millisecond, chaosWindow-500*time.Millisecond)})
		}
		slices.SortFunc(rp.big, func(a, b timed) int { return int(a.at - b.at) })
	}
	if rng.IntN(2) == 0 {
		rp.lose = append(rp.lose, timed{int32(ps[2]), between(chaosWindow/4, chaosWindow*3/4)})
	}
	if rng.IntN(2) == 0 {
		s := &slowStretch{p: int32(rng.IntN(chaosPartitions)), at: between(200*time.Millisecond, chaosWindow-time.Second),
			d: between(20*time.Millisecond, cfg.RenewMargin*3/5), stall: rng.IntN(2) == 0}
		s.left.Store((int64(between(cfg.TTL, cfg.TTL*5/2)/s.d) + 1) * int64(max(1, cfg.Concurrency)))
		rp.slow = s
	}
	if rng.IntN(2) == 0 {
		rp.late = &timed{int32(rng.IntN(chaosPartitions)), between(chaosWindow/4, chaosWindow*3/4)}
	}
	return rp
}

// String says what of the plan a broken invariant may come from.
func (rp *runPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plan: stdout %v, %d idle windows, %d oversized records, %d lease records deleted", rp.stdout, len(rp.idle), len(rp.big), len(rp.lose))
	if s := rp.slow; s != nil {
		fmt.Fprintf(&b, ", the action slow on p%d from %v (%v a record, store writes failing %v)", s.p, s.at.Round(time.Millisecond), s.d.Round(time.Millisecond), s.stall)
		if o := s.owner.Load(); o != nil {
			fmt.Fprintf(&b, " in %s", *o)
		}
	}
	if l := rp.late; l != nil {
		fmt.Fprintf(&b, ", a renewal of p%d held across a take from %v", l.p, l.at.Round(time.Millisecond))
	}
	return b.String()
}

// window is the idle window source partition p is in at since, if any (no
// two windows share a partition).
func (rp *runPlan) window(p int32, since time.Duration) *idleWindow {
	for _, w := range rp.idle {
		if w.p == p && since >= w.from && since < w.to {
			return w
		}
	}
	return nil
}

// idling reports whether the source partition is idle at since; the first
// call in a window is told no, for the window's one last record.
func (rp *runPlan) idling(p int32, since time.Duration) bool {
	w := rp.window(p, since)
	return w != nil && w.last.Swap(true)
}

// refuse picks, for refuseOut, the first produce to a partition of the
// sink in each idle window of its source partition.
func (rp *runPlan) refuse(start time.Time) func(*kmsg.ProduceRequest) bool {
	return func(req *kmsg.ProduceRequest) bool {
		since := time.Since(start)
		return slices.ContainsFunc(req.Topics[0].Partitions, func(tp kmsg.ProduceRequestTopicPartition) bool {
			w := rp.window(tp.Partition, since)
			return w != nil && w.refused.CompareAndSwap(false, true)
		})
	}
}

// chaosSource produces the source topic as produce does (a numbered record
// a partition every 2 ms), except while the run plan idles a partition, and
// the plan's oversized records at their times. With keyed, each numbered
// record has a key, chaosKey of its number, so the run's records spread
// over lanes; the oversized ones have none. Its wait gives the count the
// broker took per partition and where the oversized records landed.
func chaosSource(ctx context.Context, brokers []string, rp *runPlan, start time.Time, keyed bool, acked func(*kgo.Record)) (wait func() ([]int64, []ackKey), err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	counts, big := make([]int64, chaosPartitions), []ackKey(nil)
	done := func(r *kgo.Record, err error) {
		if err != nil {
			return
		}
		mu.Lock()
		counts[r.Partition]++
		if len(r.Value) == len(bigValue) {
			big = append(big, ackKey{r.Partition, r.Offset})
		}
		mu.Unlock()
		acked(r)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cl.Close()
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		sent := 0
		for n := 0; ctx.Err() == nil; n++ {
			since := time.Since(start)
			for p := range int32(chaosPartitions) {
				if !rp.idling(p, since) {
					r := &kgo.Record{Topic: "src", Partition: p, Value: []byte(strconv.Itoa(n))}
					if keyed {
						r.Key = chaosKey(n)
					}
					cl.Produce(context.Background(), r, done)
				}
			}
			for ; sent < len(rp.big) && rp.big[sent].at <= since; sent++ {
				cl.Produce(context.Background(), &kgo.Record{Topic: "src", Partition: rp.big[sent].p, Value: bigValue,
					Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("big")}}}, done)
			}
			select {
			case <-ctx.Done():
			case <-tk.C:
			}
		}
		cl.Flush(context.Background())
	})
	return func() ([]int64, []ackKey) {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(counts), slices.Clone(big)
	}, nil
}

// chaosKey is the key of the source's record number n: one of chaosKeys,
// by a hash, so a key's records come at uneven spacing and two of a key are
// often in the window together.
func chaosKey(n int) []byte {
	h := fnv.New32a()
	h.Write(strconv.AppendInt(nil, int64(n), 10))
	return strconv.AppendUint(nil, uint64(h.Sum32()%chaosKeys), 10)
}

// chaosRun is one seeded run with -concurrency n; it fails the test with
// the seed on any broken invariant.
func chaosRun(t *testing.T, b backend, seed uint64, txn bool, n int) *chaosStats {
	rng := rand.New(rand.NewPCG(seed, 0x62746f6e))
	fail := func(invariant, msg string) {
		t.Helper()
		t.Errorf("invariant %s broken (seed %d, -concurrency %d; rerun with -run '%s' -chaos.seed %d -chaos.concurrency %d): %s",
			invariant, seed, n, strings.Join(strings.SplitN(t.Name(), "/", 3)[:2], "/"), seed, n, msg)
	}
	cluster := newCluster(t, chaosPartitions, "src", "out", "dlq")
	cfg := chaosConfig(t, cluster.ListenAddrs())
	cfg.Concurrency = n
	rp := drawRunPlan(seed, txn, cfg)
	h := &chaosHarness{cfg: cfg, plan: rp, rec: newRecorder(nil), log: testLogger(t), stdout: io.Discard, tags: map[ownerKey]*ownerTag{}}
	scheme := map[bool]string{false: "kafka", true: "kafka+txn"}[txn]
	cfg.Sink, cfg.SinkScheme, cfg.SinkTopic = scheme+"://out", scheme, "out"
	var stdout *chaosStdout
	if rp.stdout {
		stdout = &chaosStdout{rng: rand.New(rand.NewPCG(seed, 6)), faults: &h.stdoutFaults}
		cfg.Sink, cfg.SinkScheme, cfg.SinkTopic, h.stdout = "stdout", "stdout", "", stdout
	}
	if len(rp.big) > 0 {
		cfg.DLQ = "dlq"
		cfg.KafkaOpts = append(cfg.KafkaOpts, kgo.ProducerBatchMaxBytes(chaosSinkLimit))
	}
	injectBrokerFaults(cluster, rand.New(rand.NewPCG(seed, 1)), &h.brokerFaults)
	start := time.Now()
	h.began = start
	if rp.late != nil {
		h.late = &lateRenewal{key: leaseKey(cfg.Group, "src", rp.late.p), at: start.Add(rp.late.at), limit: cfg.TTL + cfg.Skew + chaosEvery,
			count: &h.lateRenewals, taking: make(chan struct{}), landed: make(chan struct{})}
	}
	refused, refusedBatches := new(atomic.Int64), newRefusedSet()
	if len(rp.idle) > 0 {
		refused = refuseOut(cluster, refusedBatches.noting(rp.refuse(start)), kerr.PolicyViolation.Code)
	}
	open := func(t testing.TB, b backend) (store, func(string)) { return b.open(t), nil }
	if len(rp.lose) > 0 {
		open = losable // with a hand that deletes records behind the store's back
	}
	s, lose := open(t, b)
	h.obs = newObserver(s)
	ctx := ctxT(t)
	pctx, stopProducing := context.WithTimeout(ctx, chaosWindow)
	defer stopProducing()
	produced, err := chaosSource(pctx, cfg.Brokers, rp, start, n > 1, h.rec.acked)
	if err != nil {
		t.Fatal(err)
	}
	view := newSinkView(t, cfg, txn, stdout)
	delivered := func(total []int64, quiet time.Duration) tally {
		view.read(ctx, quiet)
		return view.tally(total)
	}
	var losses sync.WaitGroup
	keys := []string{}
	for p := range int32(chaosPartitions) {
		keys = append(keys, leaseKey(cfg.Group, "src", p))
	}
	for _, l := range rp.lose {
		losses.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(l.at))):
			}
			n := h.obs.lose(ctx, lose, keys[l.p], keys)
			h.deleted.Add(int64(n))
			h.log.Info("chaos: lease record deleted", "key", keys[l.p], "records_lost", n)
		})
	}
	for n := 0; time.Since(start) < chaosWindow; n++ {
		tick := start.Add(time.Duration(n) * chaosEvery)
		time.Sleep(time.Until(tick))
		for p := range int32(chaosPartitions) {
			h.tick(ctx, rng, p, tick, n)
		}
	}
	total, big := produced()
	// The faults stop; clean invocations finish the job, as the schedule would.
	// Long enough for a loaded CI machine (a clean phase there once needed
	// more than 20 s); a record truly lost is never delivered, however long.
	deadline := time.Now().Add(45 * time.Second)
	for n := 1000; delivered(total, 300*time.Millisecond).Lost > 0 && time.Now().Before(deadline); n++ {
		tick := time.Now()
		for p := range int32(chaosPartitions) {
			h.start(ctx, invocation{"src", p, tick.UnixMilli(), fmt.Sprintf("clean-%d", n)}, plan{}, tick, 0)
		}
		time.Sleep(chaosEvery)
	}
	returned := make(chan struct{})
	go func() { h.wg.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(chaosLife + 10*time.Second):
		fail("every-handler-returned", fmt.Sprintf("%d invocations still running 10s after the last deadline", h.running.Load()))
	}
	losses.Wait()
	tl := delivered(total, time.Second)
	// With kafka+txn the broker fences an owner whose lease record was lost
	// too (the next owner's InitProducerID); otherwise it is fenced at its
	// next commit, and may write until then.
	order, cross := epochOrder(view.out, txn, view.place)
	writers, doubled, double := h.doubleWriting()
	// The known bug (DESIGN.md, failure and recovery): with kafka://, the
	// records of a refused batch may land behind a later one. They are
	// counted apart; any other record out of order breaks the check.
	excused := func(p int32, source int64) bool { return !txn && refusedBatches.has(p, source) }
	keysReordered, keyMsg, keysExcused := 0, "", 0
	if n > 1 { // one record at a time: order-kept is the check
		keysReordered, keyMsg, keysExcused = keyOrder(view.out, view.place, excused)
	}
	reordered, excusedReordered := partitionOrder(view.out, excused)
	for _, c := range [][2]string{
		{"nothing-lost", brokenIf(tl.Lost > 0, "%d of %d produced records never reached the sink (nor the dead-letter topic): %s",
			tl.Lost, tl.Produced, strings.Join(view.missing, ", "))},
		{"order-kept", brokenIf(reordered > 0, "%d records reached the sink out of order (duplicates removed; %d more from a refused batch, the known bug)", reordered, excusedReordered)},
		{"key-order-kept", keyMsg},
		{"one-key-at-a-time", brokenIf(h.keyClashes.Load() > 0, "the action had a record of a key while one of the same key was in it, %d times", h.keyClashes.Load())},
		{"exactly-once", brokenIf(txn && tl.Duplicated > 0, "a read_committed consumer of the sink read %d records twice", tl.Duplicated)},
		{"stdout-lines-whole", brokenIf(len(view.broken) > 0, "%d lines are not one JSON object each, first %s",
			len(view.broken), strings.Join(view.broken[:min(1, len(view.broken))], ""))},
		{"oversized-dead-lettered", view.deadLetters(big, txn)},
		{"epoch-fencing", h.obs.check()},
		{"sink-epochs-in-order", order},
		{"one-writer-at-a-time", double},
		{"late-renewal-keeps-the-lease", h.late.check()},
	} {
		if c[1] != "" {
			fail(c[0], c[1])
		}
	}
	writes := h.rec.tally(total) // handoffs are seen at the sink's writes
	for n, v := range map[*atomic.Int64]int{&h.runs: 1, &h.oversized: len(big), &h.produced: tl.Produced, &h.lost: tl.Lost,
		&h.reordered: reordered, &h.twice: tl.Duplicated, &h.handoffs: writes.Handoffs, &h.doubleWriters: writers,
		&h.doubleWrites: doubled, &h.lostRecordOverlaps: cross, &h.maxGap: int(writes.MaxGap), &h.refused: int(refused.Load()),
		&h.keysReordered: keysReordered, &h.knownBug: excusedReordered + keysExcused} {
		n.Store(int64(v))
	}
	if t.Failed() {
		t.Logf("seed %d: %s", seed, rp)
	}
	for _, hd := range h.rec.handoffs {
		if hd.Gap > 3*cfg.TTL {
			t.Logf("seed %d: long handoff gap %v on p%d from %s to %s at offset %d", seed, hd.Gap, hd.Partition, hd.From, hd.To, hd.Offset)
		}
	}
	return &h.chaosStats
}

// brokenIf is the message an invariant check gives: "" when it holds.
func brokenIf(broken bool, format string, a ...any) string {
	if !broken {
		return ""
	}
	return fmt.Sprintf(format, a...)
}

// few joins the first three problems, and says how many more there are.
func few(problems []string) string {
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
	}
	return strings.Join(problems, "; ")
}

// A plan is what goes wrong in one invocation, drawn from the seed.
type plan struct {
	crashAt   string // a store step, "batch" (mid-batch) or "" for none
	crashN    int    // at that step's n-th call (sink write, for batch)
	afterLand bool   // a crashing store write lands before the crash
	freezeAt  int    // freeze at this commit (0: never), longer than the lease
	faults    bool   // store calls fail, hang or lose answers at random
	loseAsk   bool   // the first ask lands and its answer is lost
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
	pl.loseAsk = rng.IntN(10) == 0
	return pl
}

// chaosHarness starts invocations and counts what it injected.
type chaosHarness struct {
	chaosStats
	cfg     *config
	plan    *runPlan
	began   time.Time // the run's start, which the plan's times count from
	late    *lateRenewal
	obs     *observer
	rec     *recorder
	log     *slog.Logger
	stdout  io.Writer // the invocations' stdout: the run's chaosStdout with the stdout sink
	wg      sync.WaitGroup
	running atomic.Int64

	mu   sync.Mutex
	tags map[ownerKey]*ownerTag // every invocation's, for doubleWriting
}

// An ownerKey names an invocation: the clean ones share owner names
// across partitions.
type ownerKey struct {
	p     int32
	owner string
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
		h.start(ctx, invocation{"src", p, inv.Tick, owner("-dup")}, drawPlan(rng, h.cfg.Skew), tick, rng.Uint64())
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
		cs := &chaosStore{inner: h.obs, plan: pl, rng: rand.New(rand.NewPCG(seed, 2)), h: h, crash: cancel, inv: inv}
		tag := &ownerTag{owner: inv.Owner}
		h.mu.Lock()
		h.tags[ownerKey{inv.Partition, inv.Owner}] = tag
		h.mu.Unlock()
		// The recorder under the crash: it sees the writes that reach the sink.
		d := &deps{store: epochTap(settled{cs}, inv.Owner, tag, h.obs), kafka: kgo.NewClient, log: h.log, stdout: h.stdout,
			now: func() time.Time { return time.Now().Add(pl.skew) }, action: h.action(inv),
			wrapSink: func(inv invocation, s sink) sink {
				return chaosSink{h.rec.wrap(inv, epochSink{s, tag}), cs}
			}}
		out, err := runInvocation(ictx, h.cfg, d, inv)
		h.rewinds.Add(int64(out.Rewinds))
		h.log.Info("chaos invocation", "owner", inv.Owner, "plan", fmt.Sprintf("%+v", pl), "outcome", fmt.Sprintf("%+v", out), "err", err)
		if cs.down.Load() {
			h.retry(ctx, inv, seed)
		}
	})
}

// action is an invocation's: it keeps every record, and is slow over the
// plan's slow stretch when the invocation is the slow one. With
// -concurrency above 1 it takes 0-2 ms a record besides, as a call to
// another service would, so the records of a run overlap in it; and it
// counts how many are in it at once, and two of one key in it at once.
func (h *chaosHarness) action(inv invocation) actionFunc {
	a := &chaosAction{h: h, inv: inv, in: map[string]int{}}
	a.first.Store(true)
	return a.act
}

// chaosAction is one invocation's action; the run calls it from its
// workers at once with -concurrency above 1.
type chaosAction struct {
	h     *chaosHarness
	inv   invocation
	first atomic.Bool // no record came yet

	mu  sync.Mutex
	in  map[string]int // per key: its records in the action now
	now int            // records in the action now
}

func (a *chaosAction) act(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	defer a.enter(string(r.Key))()
	s, first := a.h.plan.slow, a.first.Swap(false)
	switch {
	case s != nil && a.inv.Partition == s.p && s.slows(a.inv.Owner, first, time.Since(a.h.began)):
		a.h.slowed.Add(1)
		time.Sleep(s.d)
	case a.h.cfg.Concurrency > 1:
		time.Sleep(rand.N(2 * time.Millisecond))
	}
	return append(out, r), nil
}

// enter notes a record of key in the action, and returns its leaving.
func (a *chaosAction) enter(key string) (leave func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.in[key] > 0 {
		a.h.keyClashes.Add(1)
	}
	a.in[key]++
	a.now++
	for most := a.h.mostInFlight.Load(); int64(a.now) > most && !a.h.mostInFlight.CompareAndSwap(most, int64(a.now)); {
		most = a.h.mostInFlight.Load()
	}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.in[key]--
		a.now--
	}
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
	h.start(ctx, invocation{inv.Topic, inv.Partition, inv.Tick, inv.Owner + "-retry"}, drawPlan(rng, h.cfg.Skew), time.Now().Add(delay), rng.Uint64())
}

var errInjected = errors.New("injected: store unavailable")

// chaosStore is one invocation's view of the store: its planned crash or
// freeze, random faults (a call that fails, hangs, or lands and then loses
// its answer), writes that fail while it is slow and stalling, and the
// run's late renewal.
type chaosStore struct {
	inner *observer
	plan  plan
	h     *chaosHarness
	crash context.CancelFunc
	inv   invocation

	mu    sync.Mutex
	rng   *rand.Rand
	calls map[string]int
	down  atomic.Bool
}

// nth counts a call of op (a store step, or "batch" for a sink write) and
// draws the roll a store step's faults go by.
func (c *chaosStore) nth(op string) (n, roll int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[op]++
	if op != "batch" {
		roll = c.rng.IntN(100)
	}
	return c.calls[op], roll
}

// do runs one store step through the plan.
func (c *chaosStore) do(ctx context.Context, op string, step func() (lease, error)) (lease, error) {
	if c.down.Load() {
		return lease{}, errCrashed
	}
	if op != "load" && c.h.plan.slow.stalls(c.inv.Partition, c.inv.Owner) {
		c.h.storeFaults.Add(1)
		return lease{}, errInjected
	}
	n, roll := c.nth(op)
	if op == "commit" && n == c.plan.freezeAt {
		// Frozen like a paused process: the clock runs, nothing else does.
		c.h.freezes.Add(1)
		time.Sleep(c.h.cfg.TTL + c.h.cfg.Skew + 300*time.Millisecond)
	}
	// lost lands the step and then loses its answer.
	lost := func(ask bool) (lease, error) {
		got, err := step()
		if err != nil {
			return got, err
		}
		if ask {
			c.h.asksLost.Add(1)
		}
		return got, errLost
	}
	switch {
	case op == c.plan.crashAt && n == c.plan.crashN:
		landed := c.plan.afterLand && errOf(step()) == nil
		if op == "ask" && (landed || n > 1) {
			// Its ask is in the record (a renewal of it at least): a
			// successor dies while it waits, and its ask must lapse.
			c.h.successorsKilled.Add(1)
		}
		c.die()
		return lease{}, errCrashed
	case op == "ask" && n == 1 && c.plan.loseAsk:
		return lost(true)
	case !c.plan.faults || op == "load" || roll >= 10:
		return step()
	}
	c.h.storeFaults.Add(1)
	switch {
	case roll < 4:
		return lease{}, errInjected
	case roll < 6:
		<-ctx.Done()
		return lease{}, ctx.Err()
	}
	return lost(op == "ask")
}

func (c *chaosStore) die() {
	if !c.down.Swap(true) {
		c.h.crashes.Add(1)
		c.crash()
	}
}

func (c *chaosStore) load(ctx context.Context, key string) (lease, error) {
	return c.do(ctx, "load", func() (lease, error) { return c.inner.load(ctx, key) })
}

func (c *chaosStore) take(ctx context.Context, key string, seen lease, cl claim, exp int64) (lease, error) {
	return c.do(ctx, "take", func() (lease, error) {
		return c.h.late.take(seen, cl.Owner, func() (lease, error) { return c.inner.take(ctx, key, seen, cl, exp) })
	})
}

func (c *chaosStore) ask(ctx context.Context, key string, epoch int64, cl claim, until int64) error {
	return errOf(c.do(ctx, "ask", func() (lease, error) { return lease{}, c.inner.ask(ctx, key, epoch, cl, until) }))
}

func (c *chaosStore) handOver(ctx context.Context, x lease, offset, exp int64) (lease, error) {
	return c.do(ctx, "handOver", func() (lease, error) { return c.inner.handOver(ctx, x, offset, exp) })
}

func (c *chaosStore) commit(ctx context.Context, x lease, offset, exp int64) (lease, error) {
	return c.do(ctx, "commit", func() (lease, error) {
		return c.h.late.commit(ctx, x, func(ctx context.Context) (lease, error) { return c.inner.commit(ctx, x, offset, exp) })
	})
}

func (c *chaosStore) release(ctx context.Context, x lease, offset int64) error {
	return errOf(c.do(ctx, "release", func() (lease, error) { return lease{}, c.inner.release(ctx, x, offset) }))
}

func (c *chaosStore) withdraw(ctx context.Context, key string, cl claim) (lease, error) {
	return c.do(ctx, "withdraw", func() (lease, error) { return c.inner.withdraw(ctx, key, cl) })
}

// control and reset are the operator's, not the invocation's: they pass through.
func (c *chaosStore) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	return c.inner.control(ctx, l, seek, paused)
}

func (c *chaosStore) reset(ctx context.Context, l lease) (lease, error) {
	return c.inner.reset(ctx, l)
}

// A lateRenewal holds the first commit on key from at on in flight until
// a taker that read the lease as it was before that commit, and judged it
// over, calls take (or limit passes); then lets the commit land, and the
// take after it. The owner waits on its commit meanwhile, as on a network
// that delays one request; if its call's time ran out by then, its answer
// is lost (settled reads it back). The take must fail: the owner renewed
// after the taker's read, so it lives. Its answer is checked itself: were
// it to land, the owner would rarely write after it here (its renewal's
// answer shows the taker's ask, so it hands over and is fenced, or its
// renewal's expiry counts from before the hold and has run out), so one
// writer at a time would hold by luck.
type lateRenewal struct {
	key   string
	at    time.Time
	limit time.Duration
	count *atomic.Int64 // takes that came between the read and the landed renewal

	mu       sync.Mutex
	held     lease         // the record the held commit was made on; Epoch 0: none yet
	renewed  bool          // the held commit landed
	problems []string      // takes that landed over the renewal
	once     sync.Once     // closes taking
	taking   chan struct{} // a taker that read held came
	landed   chan struct{} // the held commit landed (or failed)
}

// commit runs land, the commit of an owner that holds x, unless it is the
// one to hold.
func (lr *lateRenewal) commit(ctx context.Context, x lease, land func(context.Context) (lease, error)) (lease, error) {
	if lr == nil || x.Key != lr.key || time.Now().Before(lr.at) {
		return land(ctx)
	}
	lr.mu.Lock()
	hold := lr.held.Epoch == 0
	if hold {
		lr.held = x
	}
	lr.mu.Unlock()
	if !hold {
		return land(ctx)
	}
	select {
	case <-lr.taking:
	case <-time.After(lr.limit):
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	got, err := land(lctx)
	lr.mu.Lock()
	lr.renewed = err == nil
	lr.mu.Unlock()
	close(lr.landed)
	if ctx.Err() != nil {
		return lease{}, ctx.Err()
	}
	return got, err
}

// take runs take, a take made on seen; one made on the lease the held
// commit was made on waits until that commit has landed.
func (lr *lateRenewal) take(seen lease, owner string, take func() (lease, error)) (lease, error) {
	if lr == nil {
		return take()
	}
	lr.mu.Lock()
	held := lr.held
	lr.mu.Unlock()
	if held.Epoch == 0 || seen.Key != held.Key || seen.Epoch != held.Epoch || seen.Owner != held.Owner ||
		seen.ExpiresAt != held.ExpiresAt || seen.State != stateRunning {
		return take()
	}
	lr.once.Do(func() { close(lr.taking) })
	<-lr.landed
	lr.count.Add(1)
	got, err := take()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if err == nil && lr.renewed {
		lr.problems = append(lr.problems, fmt.Sprintf("%s took epoch %d from %s, whose renewal landed after %s read the lease",
			owner, got.Epoch, held.Owner, owner))
	}
	return got, err
}

// check says which takes landed over a renewal made after their read.
func (lr *lateRenewal) check() string {
	if lr == nil {
		return ""
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return few(lr.problems)
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
		if n, _ := s.c.nth("batch"); n == s.c.plan.crashN {
			s.c.die()
			return errCrashed
		}
	}
	return s.sink.write(ctx, r)
}

// chaosStdout is a run's stdout for the stdout sink: a flakyWriter whose
// failures are drawn from the seed as the writes come, about one in 30:
// ENOSPC after part of the bytes (a line cut short), or EIO.
type chaosStdout struct {
	flakyWriter
	mu     sync.Mutex // the draw and the write together
	rng    *rand.Rand
	faults *atomic.Int64
}

func (w *chaosStdout) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rng.IntN(30) == 0 {
		var err error = syscall.EIO
		if len(p) > 1 && w.rng.IntN(2) == 0 { // flakyWriter cuts at half, so two bytes at least
			err = syscall.ENOSPC
		}
		w.faults.Add(1)
		n := w.calls() + 1
		w.flakyWriter.mu.Lock()
		if w.fail == nil {
			w.fail = map[int]error{}
		}
		w.fail[n] = err
		w.flakyWriter.mu.Unlock()
	}
	return w.flakyWriter.Write(p)
}

// observer sits on the real store and keeps every write that landed: the
// epoch it was made under and the epoch it left, in which generation of
// the record (one more each time the record is lost, when epochs start
// again from 1).
type observer struct {
	hookStore
	mu     sync.Mutex
	writes []landed
	gens   map[string]int64    // per key: how many times its record was lost
	owners map[[2]string]int64 // per key and owner: the generation it got its epoch in

	// gate lets a record be lost between two writes, never during one.
	gate sync.RWMutex
}

type landed struct {
	key, op    string
	owner      string
	start, end time.Time
	gen        int64
	held, made int64
}

func newObserver(s store) *observer {
	o := &observer{gens: map[string]int64{}, owners: map[[2]string]int64{}}
	o.hookStore = hookStore{store: s, before: o.before, after: o.after}
	return o
}

// owns notes that owner gets key's epoch, if its write lands, in the
// record's current generation (which the gate keeps until it lands).
func (o *observer) owns(key, owner string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owners[[2]string{key, owner}] = o.gens[key]
}

// genOf is the generation of key's record owner got its epoch in.
func (o *observer) genOf(key, owner string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owners[[2]string{key, owner}]
}

// lose deletes key's record behind the store's back with drop, between
// two writes, and starts a new generation for every one of keys whose
// record is gone (Redis loses the whole database). It returns how many
// records were lost.
func (o *observer) lose(ctx context.Context, drop func(key string), key string, keys []string) int {
	o.gate.Lock()
	defer o.gate.Unlock()
	had := map[string]bool{}
	for _, k := range keys {
		_, err := o.store.load(ctx, k)
		had[k] = err == nil
	}
	drop(key)
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, k := range keys {
		if _, err := o.store.load(ctx, k); had[k] && errors.Is(err, errNotFound) {
			o.gens[k]++
			n++
		}
	}
	return n
}

// observed are the writes the observer keeps.
var observed = map[string]bool{"take": true, "ask": true, "handOver": true, "commit": true, "release": true}

// before holds the gate for the write, and notes whose epoch a take or a
// hand-over makes before it lands: its answer may be read back first.
func (o *observer) before(_ context.Context, call storeCall) error {
	if !observed[call.op] {
		return nil
	}
	o.gate.RLock()
	switch call.op {
	case "take":
		o.owns(call.key, call.c.Owner)
	case "handOver":
		o.owns(call.key, call.l.Successor)
	}
	return nil
}

// after keeps a write that landed: the epoch it was made under (the one
// the writer read) and the one it left.
func (o *observer) after(call storeCall, got lease, err error) error {
	if !observed[call.op] {
		return err
	}
	defer o.gate.RUnlock()
	if err != nil {
		return err
	}
	owner, made := call.l.Owner, call.l.Epoch
	switch call.op {
	case "take":
		owner, made = call.c.Owner, got.Epoch
	case "ask":
		owner = call.c.Owner
	case "handOver", "commit":
		made = got.Epoch
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes = append(o.writes, landed{call.key, call.op, owner, call.at, time.Now(), o.gens[call.key], call.l.Epoch, made})
	return nil
}

// check: on each key, no write was accepted under an epoch older than one
// already written before it began, and the epoch never went down; a lost
// record starts a generation newer than every epoch before it.
func (o *observer) check() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	newer := func(g1, e1, g2, e2 int64) bool { return g1 > g2 || g1 == g2 && e1 > e2 }
	byEnd := slices.Clone(o.writes)
	slices.SortFunc(byEnd, func(a, b landed) int { return a.end.Compare(b.end) })
	var problems []string
	for _, w := range o.writes {
		for _, v := range byEnd {
			if !v.end.Before(w.start) {
				break
			}
			if v.key == w.key && (newer(v.gen, v.made, w.gen, w.held) || newer(v.gen, v.made, w.gen, w.made)) {
				problems = append(problems, fmt.Sprintf("%s by %s under epoch %d (leaving %d, generation %d) accepted after %s by %s had left epoch %d (generation %d)",
					w.op, w.owner, w.held, w.made, w.gen, v.op, v.owner, v.made, v.gen))
				break
			}
		}
	}
	return few(problems)
}

// epochTap notes the epoch an invocation owns the lease under, and the
// record's generation, from the store's answers to it: a take, or a load
// showing the baton handed over. It sits above settled, so a take whose
// answer was lost and read back counts too.
func epochTap(s store, owner string, tag *ownerTag, obs *observer) *hookStore {
	return &hookStore{store: s, after: func(call storeCall, got lease, err error) error {
		if (call.op == "load" || call.op == "take") && err == nil && got.Owner == owner {
			tag.gen.Store(obs.genOf(call.key, owner))
			tag.epoch.Store(got.Epoch)
		}
		return err
	}}
}

// ownerTag is what an invocation's sink records carry of it and its lease.
type ownerTag struct {
	owner      string
	epoch, gen atomic.Int64
}

// Headers the chaos sink wrapper adds: the epoch and the generation of
// the lease record its owner holds, the source offset, and the owner.
const (
	epochHeader  = "baton.test.epoch"
	genHeader    = "baton.test.gen"
	offsetHeader = "baton.test.offset"
	ownerHeader  = "baton.test.owner"
)

// epochSink tags each record an owner writes with its lease and source offset.
type epochSink struct {
	sink
	tag *ownerTag
}

func (s epochSink) write(ctx context.Context, r *kgo.Record) error {
	tagged := *r // the action may hand on the fetched record itself
	tagged.Headers = append(slices.Clip(r.Headers),
		kgo.RecordHeader{Key: epochHeader, Value: strconv.AppendInt(nil, s.tag.epoch.Load(), 10)},
		kgo.RecordHeader{Key: genHeader, Value: strconv.AppendInt(nil, s.tag.gen.Load(), 10)},
		kgo.RecordHeader{Key: offsetHeader, Value: strconv.AppendInt(nil, r.Offset, 10)},
		kgo.RecordHeader{Key: ownerHeader, Value: []byte(s.tag.owner)})
	return s.sink.write(ctx, &tagged)
}

// sinkRecord is a record at the sink as the checks see it.
type sinkRecord struct {
	partition  int32
	at         int64 // its offset in the sink topic, or its line on stdout
	source     int64 // the source offset it came from; -1: not tagged
	gen, epoch int64 // its owner's lease generation and epoch; epoch -1: not tagged
	owner      string
	key        string // the record's key, as the source gave it
}

func tagged(partition int32, at int64, key string, h map[string]string) sinkRecord {
	num := func(k string, none int64) int64 {
		if v, err := strconv.ParseInt(h[k], 10, 64); err == nil {
			return v
		}
		return none
	}
	return sinkRecord{partition, at, num(offsetHeader, -1), num(genHeader, 0), num(epochHeader, -1), h[ownerHeader], key}
}

// sinkView reads what reached the sink: the sink topic and the dead-letter
// topic (read_committed with kafka+txn), or the lines a run's stdout holds.
type sinkView struct {
	cl     *kgo.Client
	dlq    string
	stdout *chaosStdout
	place  string // what at counts: "offset", or "line" on stdout

	out     []sinkRecord  // in the order a reader sees them
	dead    []*kgo.Record // the dead letters
	broken  []string      // stdout lines that are not one JSON object
	missing []string      // the first few records the last tally found lost
}

func newSinkView(t testing.TB, cfg *config, committed bool, stdout *chaosStdout) *sinkView {
	if stdout != nil {
		return &sinkView{stdout: stdout, place: "line"}
	}
	// The sink topic's reader (txn_test.go's), reading the dead-letter topic too.
	v := &sinkView{cl: newSinkReader(t, cfg.Brokers, cfg.SinkTopic, committed).cl, dlq: cfg.DLQ, place: "offset"}
	if cfg.DLQ != "" {
		v.cl.AddConsumeTopics(cfg.DLQ)
	}
	return v
}

// read takes in what arrived since the last read, until the topics have
// been quiet for quiet (a fetch the broker fails is not quiet); stdout is
// read whole again, up to its last newline.
func (v *sinkView) read(ctx context.Context, quiet time.Duration) {
	if v.stdout != nil {
		out := v.stdout.bytes()
		v.out, v.broken = nil, nil
		n := int64(0)
		for line := range strings.Lines(string(out[:bytes.LastIndexByte(out, '\n')+1])) {
			n++
			var l stdoutLine
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				v.broken = append(v.broken, fmt.Sprintf("line %d %.80q: %v", n, line, err))
				continue
			}
			h := map[string]string{}
			for _, x := range l.Headers {
				if x.Value != nil {
					h[x.Key] = *x.Value
				}
			}
			key := ""
			if l.Key != nil {
				key = *l.Key
			}
			r := tagged(l.Partition, n, key, h)
			r.source = l.Offset
			v.out = append(v.out, r)
		}
		return
	}
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, quiet)
		fs := v.cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if r.Topic == v.dlq {
				v.dead = append(v.dead, r)
			} else {
				v.out = append(v.out, tagged(r.Partition, r.Offset, string(r.Key), headerMap(r)))
			}
		})
		failed := slices.ContainsFunc(fs.Errors(), func(e kgo.FetchError) bool {
			return !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled)
		})
		if n == 0 && !failed {
			return
		}
	}
}

// deadSource is the source partition and offset a dead letter's headers name.
func deadSource(h map[string]string) (ackKey, bool) {
	p, perr := strconv.ParseInt(h["baton.source.partition"], 10, 32)
	o, oerr := strconv.ParseInt(h["baton.source.offset"], 10, 64)
	return ackKey{int32(p), o}, perr == nil && oerr == nil
}

// deadOffsets counts the dead letters per source partition and offset.
func (v *sinkView) deadOffsets() map[ackKey]int {
	m := map[ackKey]int{}
	for _, r := range v.dead {
		if k, ok := deadSource(headerMap(r)); ok {
			m[k]++
		}
	}
	return m
}

// tally counts what was read against produced[p] records at offsets 0.. of
// each partition: a record reaches the sink, or the dead-letter topic.
func (v *sinkView) tally(produced []int64) tally {
	var t tally
	dead := v.deadOffsets()
	v.missing = nil
	for p, n := range produced {
		var offsets []int64
		for _, r := range v.out {
			if r.partition == int32(p) {
				offsets = append(offsets, r.source)
			}
		}
		for _, o := range t.add(offsets, n, func(o int64) bool { return dead[ackKey{int32(p), o}] > 0 }) {
			if len(v.missing) < 5 {
				v.missing = append(v.missing, fmt.Sprintf("p%d offset %d", p, o))
			}
		}
	}
	return t
}

// deadLetters checks the dead-letter topic: each oversized record the
// source took is there (with kafka+txn once), with the headers that say
// where it came from and why, and the start of its value; nothing else is.
func (v *sinkView) deadLetters(big []ackKey, once bool) string {
	var problems []string
	dead := v.deadOffsets()
	for _, k := range big {
		if n := dead[k]; n == 0 || (once && n > 1) {
			problems = append(problems, fmt.Sprintf("p%d offset %d dead-lettered %d times", k.partition, k.offset, n))
		}
	}
	for _, r := range v.dead {
		h := headerMap(r)
		at := fmt.Sprintf("dead letter at offset %d (p%s offset %s)", r.Offset, h["baton.source.partition"], h["baton.source.offset"])
		switch k, _ := deadSource(h); {
		case !slices.Contains(big, k):
			problems = append(problems, at+": not an oversized record")
		case h["trace"] != "big" || h["baton.source.topic"] != "src" || !strings.Contains(h["baton.error"], "MESSAGE_TOO_LARGE"):
			problems = append(problems, fmt.Sprintf("%s: headers %v", at, h))
		case h["baton.truncated"] != strconv.Itoa(len(bigValue)) || len(r.Value) == 0 || len(r.Value) >= chaosSinkLimit || !bytes.HasPrefix(bigValue, r.Value):
			problems = append(problems, fmt.Sprintf("%s: value of %d bytes, truncated %q; want the start of the record's %d, under %d",
				at, len(r.Value), h["baton.truncated"], len(bigValue), chaosSinkLimit))
		}
	}
	return few(problems)
}

// epochOrder checks each partition of the sink: no record from an epoch
// after the first record of a newer one of the same lease record. A fenced
// owner's produces must settle before its lease can pass on, let alone
// before the next owner writes. A record that was lost starts again at
// epoch 1, in a new generation; strict holds the older generation's
// owners to the same rule, otherwise their records after the newer
// generation's first are only counted (cross): such an owner is fenced at
// its next write to the store, and writes until then.
func epochOrder(rs []sinkRecord, strict bool, place string) (msg string, cross int) {
	type first struct {
		epoch, at int64
		owner     string
	}
	by := func(owner string) string {
		if owner == "" {
			return ""
		}
		return " (" + owner + ")"
	}
	newest := map[[2]int64]first{} // per partition and generation
	top := map[int32]sinkRecord{}  // per partition: the first record of the newest generation
	var problems []string
	for _, r := range rs {
		if r.epoch <= 0 {
			problems = append(problems, fmt.Sprintf("partition %d %s %d: no owner's epoch", r.partition, place, r.at))
			continue
		}
		gen := ""
		if r.gen > 0 {
			gen = fmt.Sprintf(" (lease record generation %d)", r.gen)
		}
		pg := [2]int64{int64(r.partition), r.gen}
		switch f, ok := newest[pg]; {
		case ok && r.epoch < f.epoch:
			problems = append(problems, fmt.Sprintf("partition %d %s %d from epoch %d%s, after %s %d from epoch %d%s%s",
				r.partition, place, r.at, r.epoch, by(r.owner), place, f.at, f.epoch, by(f.owner), gen))
		case !ok || r.epoch > f.epoch:
			newest[pg] = first{r.epoch, r.at, r.owner}
		}
		switch g, ok := top[r.partition]; {
		case ok && r.gen < g.gen && strict:
			problems = append(problems, fmt.Sprintf("partition %d %s %d from generation %d epoch %d%s, after %s %d from generation %d epoch %d%s",
				r.partition, place, r.at, r.gen, r.epoch, by(r.owner), place, g.at, g.gen, g.epoch, by(g.owner)))
		case ok && r.gen < g.gen:
			cross++
		case !ok || r.gen > g.gen:
			top[r.partition] = r
		}
	}
	return few(problems), cross
}

// keyOrder checks each key of each partition of the sink: the records of a
// key reach it first in source offset order. A record read again after a
// crash or a rewind repeats what came before it, at least once, and breaks
// no order: only first deliveries count. It gives how many came first after
// a later record of their key, and the first few.
func keyOrder(rs []sinkRecord, place string, excused func(int32, int64) bool) (reordered int, msg string, excusedN int) {
	type partKey struct {
		p   int32
		key string
	}
	last := map[partKey]sinkRecord{}
	seen := map[ackKey]bool{}
	var problems []string
	for _, r := range rs {
		at := ackKey{r.partition, r.source}
		if r.source < 0 || seen[at] {
			continue // untagged: the sink epoch check names it
		}
		seen[at] = true
		k := partKey{r.partition, r.key}
		if l, ok := last[k]; ok && r.source < l.source && excused(r.partition, r.source) {
			excusedN++
			continue
		}
		if l, ok := last[k]; ok && r.source < l.source {
			reordered++
			problems = append(problems, fmt.Sprintf("partition %d key %q: offset %d (%s %d) reached the sink first after offset %d (%s %d)",
				r.partition, r.key, r.source, place, r.at, l.source, place, l.at))
			continue
		}
		last[k] = r
	}
	return reordered, few(problems), excusedN
}

// partitionOrder counts, per partition of the sink, the records that came
// first after a later record of their partition (duplicates removed), and
// apart those excused.
func partitionOrder(rs []sinkRecord, excused func(int32, int64) bool) (reordered, excusedN int) {
	last := map[int32]int64{}
	seen := map[ackKey]bool{}
	for _, r := range rs {
		at := ackKey{r.partition, r.source}
		if r.source < 0 || seen[at] {
			continue
		}
		seen[at] = true
		l, ok := last[r.partition]
		switch {
		case ok && r.source < l && excused(r.partition, r.source):
			excusedN++
		case ok && r.source < l:
			reordered++
		default:
			last[r.partition] = r.source
		}
	}
	return reordered, excusedN
}

// refusedSet holds the source offsets of the records in the produces the
// harness refused, read from the headers the chaos sink adds.
type refusedSet struct {
	mu sync.Mutex
	at map[ackKey]bool
}

func newRefusedSet() *refusedSet { return &refusedSet{at: map[ackKey]bool{}} }

func (s *refusedSet) has(p int32, source int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at[ackKey{p, source}]
}

// noting wraps refuse: what it refuses is noted.
func (s *refusedSet) noting(refuse func(*kmsg.ProduceRequest) bool) func(*kmsg.ProduceRequest) bool {
	return func(pr *kmsg.ProduceRequest) bool {
		if !refuse(pr) {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, rp := range pr.Topics[0].Partitions {
			for _, o := range batchSources(rp.Records) {
				s.at[ackKey{rp.Partition, o}] = true
			}
		}
		return true
	}
}

// batchSources reads the source offsets (offsetHeader) of a produced
// record batch's records.
func batchSources(raw []byte) []int64 {
	var b kmsg.RecordBatch
	if b.ReadFrom(raw) != nil {
		return nil
	}
	recs := b.Records
	if codec := kgo.CompressionCodecType(b.Attributes & 0x7); codec != 0 {
		var err error
		if recs, err = kgo.DefaultDecompressor().Decompress(recs, codec); err != nil {
			return nil
		}
	}
	var out []int64
	for range b.NumRecords {
		length, n := binary.Varint(recs)
		if n <= 0 || int(length) < 0 || n+int(length) > len(recs) {
			break
		}
		var r kmsg.Record
		if r.ReadFrom(recs[:n+int(length)]) != nil {
			break
		}
		recs = recs[n+int(length):]
		for _, h := range r.Headers {
			if o, err := strconv.ParseInt(string(h.Value), 10, 64); h.Key == offsetHeader && err == nil {
				out = append(out, o)
			}
		}
	}
	return out
}

// doubleWriting finds two owners writing to a partition at once: a sink
// write by an owner after the first write of an owner with a newer epoch
// of the same lease record generation. (Across generations, after a lost
// record, the old owner writes until its next commit fences it; the sink
// check counts those.) It gives how many owners wrote so, how many writes,
// and the first few of them.
func (h *chaosHarness) doubleWriting() (writers, writes int, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	type first struct {
		owner string
		epoch int64
		at    time.Time
	}
	type double struct {
		newer       first
		epoch       int64 // the older owner's
		n           int
		from, until time.Duration // after the newer owner's first write
	}
	var problems []string
	for _, p := range slices.Sorted(maps.Keys(h.rec.writes)) {
		newest := map[int64]first{} // per generation
		doubles := map[string]*double{}
		var order []string
		for _, w := range h.rec.writes[p] {
			tag := h.tags[ownerKey{p, w.Owner}]
			if tag == nil || tag.epoch.Load() <= 0 {
				continue // the sink check names a write with no epoch
			}
			gen, epoch := tag.gen.Load(), tag.epoch.Load()
			switch f, ok := newest[gen]; {
			case ok && epoch < f.epoch:
				d := doubles[w.Owner]
				if d == nil {
					d = &double{newer: f, epoch: epoch, from: w.At.Sub(f.at)}
					doubles[w.Owner] = d
					order = append(order, w.Owner)
				}
				d.n++
				d.until = w.At.Sub(d.newer.at)
				writes++
			case !ok || epoch > f.epoch:
				newest[gen] = first{w.Owner, epoch, w.At}
			}
		}
		for _, owner := range order {
			d := doubles[owner]
			problems = append(problems, fmt.Sprintf("p%d: %s (epoch %d) wrote %d records from %v to %v after %s (epoch %d) first wrote",
				p, owner, d.epoch, d.n, d.from.Round(time.Millisecond), d.until.Round(time.Millisecond), d.newer.owner, d.newer.epoch))
		}
		writers += len(order)
	}
	return writers, writes, few(problems)
}

// injectBrokerFaults makes the broker answer some fetches and produces with
// partition errors (not leader, request timed out), as a broker in trouble
// does, and some transaction requests with errors; clients must retry
// through them.
func injectBrokerFaults(c *kfake.Cluster, rng *rand.Rand, count *atomic.Int64) {
	var mu sync.Mutex
	fault := func() bool { // three requests in a hundred, counted
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(100) >= 3 {
			return false
		}
		count.Add(1)
		return true
	}
	c.ControlKey(int16(kmsg.Fetch), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !fault() {
			return nil, nil, false
		}
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
	// (UNKNOWN_SERVER_ERROR: the owner aborts and reads again), and an
	// offset commit that applies but answers REQUEST_TIMED_OUT (the owner
	// sends it again).
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TopLevel: true, Err: kerr.UnknownServerError, Count: -1,
		When: func(kr kmsg.Request) bool { return kr.(*kmsg.EndTxnRequest).Commit && fault() }},
		kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.RequestTimedOut, Count: -1,
			When: func(kmsg.Request) bool { return fault() }})
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !fault() {
			return nil, nil, false
		}
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
	// What a reader of the sink topic sees, checked strictly.
	v := &sinkView{cl: newSinkReader(t, cluster.ListenAddrs(), "out", false).cl, place: "offset"}
	v.read(ctxT(t), 500*time.Millisecond)
	if got, _ := epochOrder(v.out, true, v.place); got != "partition 1 offset 2 from epoch 1, after offset 1 from epoch 2" {
		t.Fatalf("check says %q, want %q", got, "partition 1 offset 2 from epoch 1, after offset 1 from epoch 2")
	}
}

// TestChaos_key_order_check_sees_a_late_record: the check flags a key's
// record that first reaches the sink after a later one of its key, and
// not a repeat (read again after a crash) nor another key's or partition's.
func TestChaos_key_order_check_sees_a_late_record(t *testing.T) {
	t.Parallel()
	rec := func(p int32, at, source int64, key string) sinkRecord {
		return sinkRecord{partition: p, at: at, source: source, key: key}
	}
	rs := []sinkRecord{rec(0, 0, 0, "a"), rec(0, 1, 2, "b"), rec(0, 2, 1, "a"), rec(0, 3, 0, "a"), rec(0, 4, 2, "b"),
		rec(1, 0, 3, "a"), rec(1, 1, 1, "b"), rec(1, 2, 2, "a")}
	n, msg, _ := keyOrder(rs, "offset", func(int32, int64) bool { return false })
	want := `partition 1 key "a": offset 2 (offset 2) reached the sink first after offset 3 (offset 0)`
	if n != 1 || msg != want {
		t.Fatalf("check says %d: %q; want 1: %q", n, msg, want)
	}
}

// TestChaos_order_check_excuses_only_refused_records: a record of a
// refused batch that lands behind a later one is counted apart (the known
// bug); any other record out of order still breaks the check.
func TestChaos_order_check_excuses_only_refused_records(t *testing.T) {
	t.Parallel()
	rec := func(p int32, source int64) sinkRecord { return sinkRecord{partition: p, source: source} }
	rs := []sinkRecord{rec(0, 0), rec(0, 3), rec(0, 1), rec(0, 2), rec(0, 3), rec(1, 5), rec(1, 4)}
	refused := func(p int32, source int64) bool { return p == 0 && source == 1 }
	if bad, excused := partitionOrder(rs, refused); bad != 2 || excused != 1 {
		t.Fatalf("%d out of order, %d excused; want 2 (p0 offset 2, p1 offset 4) and 1 (p0 offset 1)", bad, excused)
	}
}

// TestChaos_refused_batch_sources_are_read: the harness reads the source
// offsets of a refused produce from its batch, compressed as the sink
// sends it.
func TestChaos_refused_batch_sources_are_read(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 1, "out")
	seen := newRefusedSet()
	refuseOut(cluster, seen.noting(func(*kmsg.ProduceRequest) bool { return true }), kerr.PolicyViolation.Code)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("out"), kgo.ProducerLinger(50*time.Millisecond))
	must(t, err)
	defer cl.Close()
	var rs []*kgo.Record
	for o := range 100 {
		rs = append(rs, &kgo.Record{Value: bytes.Repeat([]byte("v"), 100), Headers: []kgo.RecordHeader{{Key: offsetHeader, Value: []byte(strconv.Itoa(o))}}})
	}
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); !errors.Is(err, kerr.PolicyViolation) {
		t.Fatalf("produce: %v; want it refused", err)
	}
	for o := range int64(100) {
		if !seen.has(0, o) {
			t.Fatalf("source offset %d of the refused batch not read", o)
		}
	}
}

// TestChaos_double_writer_check_sees_an_overlap: the check counts an
// owner's writes after a newer epoch's first write on the same partition,
// and not an older generation's (a lost record's owner writes until its
// next commit).
func TestChaos_double_writer_check_sees_an_overlap(t *testing.T) {
	t.Parallel()
	h := &chaosHarness{rec: newRecorder(nil), tags: map[ownerKey]*ownerTag{}}
	owner := func(p int32, name string, gen, epoch int64) string {
		tag := &ownerTag{owner: name}
		tag.gen.Store(gen)
		tag.epoch.Store(epoch)
		h.tags[ownerKey{p, name}] = tag
		return name
	}
	a, b := owner(0, "A", 0, 1), owner(0, "B", 0, 2)
	c, d := owner(1, "C", 0, 1), owner(1, "D", 1, 2)
	for i, w := range []struct {
		p     int32
		owner string
	}{{0, a}, {0, a}, {0, b}, {0, a}, {0, a}, {0, b}, {1, c}, {1, d}, {1, c}} {
		h.rec.note(w.owner, &kgo.Record{Partition: w.p, Offset: int64(i)})
	}
	writers, writes, msg := h.doubleWriting()
	if writers != 1 || writes != 2 || !strings.HasPrefix(msg, "p0: A (epoch 1) wrote 2 records from ") ||
		!strings.HasSuffix(msg, " after B (epoch 2) first wrote") {
		t.Fatalf("check says %d writers, %d writes: %q; want A's 2 writes after B's first on p0", writers, writes, msg)
	}
}

// TestChaos_bug_refused_produce_lets_a_later_batch_land_first reproduces
// what TestChaos seed 9 with -concurrency 16 once saw (dynamodb, 66 records
// out of order on p0): the broker refuses a produce of many records while
// the sink's next produce to the partition is in flight. The later one
// lands; the refused records are written again after the rewind, behind it.
// Order per partition is broken with -concurrency 1 too: it is the Kafka
// sink, not inflight.go. Skipped unless -chaos.bugs, as it fails until fixed.
func TestChaos_bug_refused_produce_lets_a_later_batch_land_first(t *testing.T) {
	if !*chaosBugs {
		t.Skip("a known bug: run with -chaos.bugs")
	}
	for _, n := range []int{1, chaosConcurrency} {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			// The race is the sink's: a try refuses a batch with nothing behind
			// it in flight now and then, so a few tries.
			for try := range 5 {
				if tl, refused := refusedBatchRun(t, n); tl.Lost > 0 || tl.Reordered > 0 {
					t.Fatalf("try %d: a produce of %d records refused; sink %+v: want nothing lost nor reordered", try+1, refused, tl)
				}
			}
		})
	}
}

// refusedBatchRun has one owner with -concurrency n read 3,000 records
// to the Kafka sink, the broker refusing its first produce of 10 records
// or more; it gives what reached the sink and the refused batch's size.
func refusedBatchRun(t *testing.T, n int) (tally, int32) {
	const total = 3000
	r, d, _ := newKafkaSinkRig(t, memBackend().open(t), total)
	r.cfg.Concurrency = n
	var once atomic.Bool
	var refused atomic.Int32
	refuseOut(r.cluster, func(pr *kmsg.ProduceRequest) bool {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(pr.Topics[0].Partitions[0].Records); err != nil || b.NumRecords < 10 || !once.CompareAndSwap(false, true) {
			return false
		}
		refused.Store(b.NumRecords)
		return true
	}, kerr.PolicyViolation.Code)
	cancel, wait := r.start(d, 1000, "A")
	waitCommitted(t, r.cfg, d, "src", 0, total)
	cancel()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	return newSinkReader(t, r.cfg.Brokers, "out", false).tally(r.ctx, []int64{total}, time.Second), refused.Load()
}
