//go:build !redis

// bench_fleet_test.go measures process mode as a fleet (fleet.go) on
// DynamoDB Local, kfake in the test binary and records flowing to every
// partition: how long a fourth process joining three takes to bring 12
// partitions from 4/4/4 to 3/3/3/3, the gaps of the moves it makes (each
// an ask answered by a hand-over), and the store calls a process of a
// steady fleet makes.

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fleetParts is the topic's size: three processes own 4 each, four own 3.
const fleetParts = 12

// fleetJoins is how many times the full bench has a fourth process join
// three. Each join moves three partitions: 102 moves, so that the
// nearest-rank p99 is the second largest gap, not simply the largest.
const fleetJoins = 34

// fleetBench is one fleet of processes in the test binary, each with a
// DynamoDB client of its own, and what their store calls and the sink
// show.
type fleetBench struct {
	b    *bench
	cfg  *config
	open func(testing.TB) store

	mu      sync.Mutex              // guards what follows, the sink's log too
	leases  map[string]lease        // each lease as the last write returned it
	commits map[string][2]time.Time // each key's last commit: start, end
	passes  map[string]pass         // each hand-over, by its new owner
	seen    map[string]time.Time    // when a new owner's own poll first read it the owner
	sinkLog
}

// A sinkLog is what reached the sink: the recorder's bookkeeping
// (recorder.go) for a run of minutes at 12,000 records a second. It keeps
// each partition's last write and the broker's times of the records not
// written yet, not every record, so that the test binary's heap does not
// grow with the run. With the recorder (and kfake keeping every record)
// the heap reached 0.8 GB, each collection of it took 55-100 ms on the
// shared 2-core machine, and 9 of the 10 moves slower than 25 ms overlapped
// one: the bench measured its own garbage.
type sinkLog struct {
	last    map[int32]write
	acks    map[ackKey]time.Time // records the broker took that nobody wrote yet
	moves   []fleetMove          // every change of owner
	skipped int                  // writes past an offset nobody wrote
	again   int                  // writes of an offset written before
}

// A pass is when the steps of one hand-over happened: the owner's commit
// that brought it the ask, and its hand-over write (start, end of each).
type pass struct{ commit, handed [2]time.Time }

// A fleetMove is a partition changing owner at the sink, as the recorder
// sees a handoff, and when the new owner's first record reached the sink.
type fleetMove struct {
	handoff
	at time.Time
}

// benchProc is one process of the fleet; stop is its SIGTERM.
type benchProc struct {
	calls  *countingStore
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func newFleetBench(t *testing.T, b *bench, open func(testing.TB) store) (*fleetBench, func() []int64, func()) {
	brokers := fleetCluster(t)
	cfg := baseConfig(t, "-mode=process", "-balance", "-brokers="+strings.Join(brokers, ","), "-topic=fleet", "-sink=discard",
		"-group="+strings.ReplaceAll(testKey(t), "/", "."))
	f := &fleetBench{b: b, cfg: cfg, open: open, leases: map[string]lease{}, commits: map[string][2]time.Time{},
		passes: map[string]pass{}, seen: map[string]time.Time{},
		sinkLog: sinkLog{last: map[int32]write{}, acks: map[ackKey]time.Time{}}}
	// A record a millisecond to each partition: a gap's start is known to
	// within the producer's interval.
	pctx, stop := context.WithCancel(b.ctx)
	t.Cleanup(stop)
	produced, err := produceAcked(pctx, brokers, "fleet", fleetParts, chainRate, f.acked)
	if err != nil {
		t.Fatal(err)
	}
	return f, produced, stop
}

// fleetCluster is kfake with the fleet's topic, keeping what was produced
// in the last 30 s only (every owner commits every 2.5 s), in segments
// small enough to be dropped as they age: its log does not grow with the
// run either. A record dropped before it was read would show at the sink
// as one skipped.
func fleetCluster(t *testing.T) []string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(fleetParts, "fleet"),
		kfake.BrokerConfigs(map[string]string{"log.retention.ms": "30000", "log.segment.bytes": "262144"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Stopped before the cluster closes: a closed cluster never answers.
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tk := time.NewTicker(5 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				c.ApplyRetention()
			}
		}
	}()
	return c.ListenAddrs()
}

// acked notes when the broker took a record nobody wrote yet.
func (f *fleetBench) acked(r *kgo.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w, ok := f.last[r.Partition]; !ok || w.Offset < r.Offset {
		f.acks[ackKey{r.Partition, r.Offset}] = time.Now()
	}
}

// note is one record reaching the sink, as recorder.note sees it.
func (f *fleetBench) note(owner string, r *kgo.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	k := ackKey{r.Partition, r.Offset}
	took, acked := f.acks[k]
	delete(f.acks, k)
	w, ok := f.last[r.Partition]
	switch {
	case ok && r.Offset <= w.Offset:
		f.again++
	case ok && r.Offset > w.Offset+1, !ok && r.Offset > 0:
		f.skipped++
	}
	if ok && w.Owner != owner {
		since := w.At
		if acked && took.After(since) {
			since = took
		}
		h := handoff{Partition: r.Partition, From: w.Owner, To: owner, Offset: r.Offset, Gap: now.Sub(since)}
		f.moves = append(f.moves, fleetMove{h, now})
	}
	f.last[r.Partition] = write{owner, max(r.Offset, w.Offset), now}
}

// fleetSink tells the bench of every record a run writes.
type fleetSink struct {
	sink
	f     *fleetBench
	owner string
}

func (s fleetSink) write(ctx context.Context, r *kgo.Record) error {
	s.f.note(s.owner, r)
	return s.sink.write(ctx, r)
}

// start runs one more process of the fleet.
func (f *fleetBench) start(t *testing.T) *benchProc {
	p := &benchProc{calls: newCountingStore(f.watch(f.open(t))), done: make(chan struct{})}
	d := benchDeps(t)
	d.store = p.calls
	d.wrapSink = func(inv invocation, k sink) sink { return fleetSink{k, f, inv.Owner} }
	ctx, cancel := context.WithCancel(f.b.ctx)
	p.cancel = cancel
	cfg := *f.cfg
	go func() {
		defer close(p.done)
		p.err = runProcess(ctx, &cfg, d)
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop is a SIGTERM: every run hands over or releases.
func (p *benchProc) stop() error {
	p.cancel()
	<-p.done
	return p.err
}

// watch is a process's store as the bench sees it: a write's answer is
// who owns the lease now, a hand-over and the commit before it are timed,
// and a load by a process that asked times when it first read itself the
// owner. None of it is a store call of its own.
func (f *fleetBench) watch(s store) store {
	asked := map[string]string{} // this process's asks: key -> owner id
	return &hookStore{store: s, after: func(call storeCall, got lease, err error) error {
		if err != nil {
			return err
		}
		now := time.Now()
		f.mu.Lock()
		defer f.mu.Unlock()
		switch call.op {
		case "take", "control", "reset":
			f.leases[call.key] = got
		case "commit":
			f.leases[call.key], f.commits[call.key] = got, [2]time.Time{call.at, now}
		case "handOver":
			f.leases[call.key] = got
			f.passes[got.Owner] = pass{commit: f.commits[call.key], handed: [2]time.Time{call.at, now}}
		case "release":
			delete(f.leases, call.key)
		case "ask":
			asked[call.key] = call.c.Owner
		case "load":
			if o := asked[call.key]; o != "" && got.Owner == o && f.seen[o].IsZero() {
				f.seen[o] = now
			}
		}
		return nil
	}}
}

// shares is how many live leases each process owns as the processes' own
// writes left them, sorted, and whether every partition is owned.
func (f *fleetBench) shares() ([]int, bool) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var ls []lease
	for _, l := range f.leases {
		ls = append(ls, l)
	}
	return sharesOf(ls, now, f.cfg.Skew, fleetParts)
}

// waitShares waits until the processes own want, and says how long that
// took. It reads no store: the processes' writes say who owns what.
func (f *fleetBench) waitShares(t *testing.T, want []int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, fmt.Sprintf("shares %v", want), limit, func() bool {
		got, all := f.shares()
		return all && slices.Equal(got, want)
	})
	return time.Since(start)
}

// checkStore fails the bench unless the store itself shows want: the
// view from the processes' writes is what the figures rest on.
func (f *fleetBench) checkStore(t *testing.T, s store, want []int) {
	t.Helper()
	var ls []lease
	for p := range int32(fleetParts) {
		l, err := loadOrNew(f.b.ctx, f.cfg, s, leaseKey(f.cfg.Group, f.cfg.Topic, p))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	if got, all := sharesOf(ls, time.Now(), f.cfg.Skew, fleetParts); !all || !slices.Equal(got, want) {
		t.Fatalf("the store shows shares %v (all owned: %v); the processes' writes showed %v", got, all, want)
	}
}

// join starts a fourth process beside three balanced ones, at a random
// point of their commit intervals, and waits for 3/3/3/3. It returns how
// long that took, the moves that were hand-overs, how many moves since
// its start were not, and the new process.
func (f *fleetBench) join(t *testing.T, check store) (time.Duration, []fleetMove, int, *benchProc) {
	t.Helper()
	time.Sleep(rand.N(f.cfg.CommitEvery))
	start := time.Now()
	p := f.start(t)
	took := f.waitShares(t, []int{3, 3, 3, 3}, 4*f.cfg.CommitEvery+10*time.Second)
	f.checkStore(t, check, []int{3, 3, 3, 3})
	handed, others := f.movesSince(t, start)
	return took, handed, others, p
}

// movesSince waits until every hand-over written since start reached the
// sink (its new owner's first record), and returns those moves, and how
// many other moves the sink saw since start.
func (f *fleetBench) movesSince(t *testing.T, start time.Time) ([]fleetMove, int) {
	t.Helper()
	var handed []fleetMove
	others := 0
	waitFor(t, "the new owners' first records", 10*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		handed, others = nil, 0
		want := 0
		for _, ps := range f.passes {
			if !ps.handed[0].Before(start) {
				want++
			}
		}
		for _, m := range f.moves {
			switch ps, ok := f.passes[m.To]; {
			case ok && !ps.handed[0].Before(start):
				handed = append(handed, m)
			case !m.at.Before(start):
				others++
			}
		}
		return len(handed) == want
	})
	return handed, others
}

// fleet is the bench phase: three processes, a fourth joining and leaving
// again, then the four steady for a window (a minute; -quick, 15 s). Both
// runs keep process mode's default timings: the figures are the defaults'.
func (b *bench) fleet(t *testing.T) {
	joins, window := pick(b, 3, fleetJoins), pick(b, 15*time.Second, time.Minute)
	be := compiledBackend(t)
	f, produced, stopProducing := newFleetBench(t, b, be.open)
	check := be.open(t)
	procs := []*benchProc{f.start(t), f.start(t), f.start(t)}
	took := f.waitShares(t, []int{4, 4, 4}, 3*f.cfg.TTL)
	b.note("fleet: %s store, %d partitions, a record a %v to each; process mode's defaults (ttl %v, commit and balance every %v); 3 processes started at once: 4/4/4 after %.1f s",
		storeName, fleetParts, chainRate, f.cfg.TTL, f.cfg.CommitEvery, took.Seconds())
	var converge []time.Duration
	var moves []fleetMove
	var others int
	var last *benchProc
	for i := range joins {
		if last != nil {
			if err := last.stop(); err != nil {
				t.Fatalf("the fourth process stopped with %v", err)
			}
			f.waitShares(t, []int{4, 4, 4}, 4*f.cfg.CommitEvery+10*time.Second)
		}
		took, handed, n, p := f.join(t, check)
		if len(handed) != 3 {
			b.note("fleet: join %d: %d moves by hand-over, want 3", i+1, len(handed))
		}
		converge, moves, others, last = append(converge, took), append(moves, handed...), others+n, p
	}
	calls := f.steady(t, append(procs, last), window)
	f.finish(t, produced, stopProducing, append(procs, last))
	f.report(converge, moves, others, calls, window)
}

// storeCalls are one process's store calls over a window.
type storeCalls struct{ reads, writes int64 }

// steady counts each process's store calls over window with the fleet
// balanced. A move inside it is noted, not failed: a lease that lapses for
// want of CPU on a shared machine is taken, rightly, and moves.
func (f *fleetBench) steady(t *testing.T, procs []*benchProc, window time.Duration) []storeCalls {
	time.Sleep(f.cfg.CommitEvery) // past the last successor's polls
	moved := f.moveCount()
	before := callsOf(procs)
	time.Sleep(window)
	after := callsOf(procs)
	if n := f.moveCount() - moved; n > 0 {
		f.b.note("fleet: %d partitions moved in the steady window", n)
	}
	if got, all := f.shares(); !all || !slices.Equal(got, []int{3, 3, 3, 3}) {
		f.b.note("fleet: shares %v after the steady window (all owned: %v)", got, all)
	}
	for i := range after {
		after[i].reads -= before[i].reads
		after[i].writes -= before[i].writes
	}
	return after
}

func callsOf(procs []*benchProc) []storeCalls {
	var cs []storeCalls
	for _, p := range procs {
		r, w := p.calls.counts()
		cs = append(cs, storeCalls{r, w})
	}
	return cs
}

func (f *fleetBench) moveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.moves)
}

// finish stops the records, waits until the sink has every one, stops the
// processes, and fails the bench if a record was skipped.
func (f *fleetBench) finish(t *testing.T, produced func() []int64, stopProducing func(), procs []*benchProc) {
	stopProducing()
	total := produced()
	waitFor(t, "the sink to catch up", 30*time.Second, func() bool { return f.behind(total) == 0 })
	for _, p := range procs {
		if err := p.stop(); err != nil {
			t.Fatalf("a process stopped with %v", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int64(0)
	for _, c := range total {
		n += c
	}
	if f.skipped != 0 {
		t.Fatalf("fleet: %d writes at the sink skipped records", f.skipped)
	}
	f.b.note("fleet: %d records, every one at the sink, none skipped, %d written again; %d changes of owner at the sink in all (the joins' hand-overs, the takes after each fourth stopped)",
		n, f.again, len(f.moves))
}

// behind is how many partitions' last records have not reached the sink.
func (f *fleetBench) behind(total []int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p, c := range total {
		if w, ok := f.last[int32(p)]; c > 0 && (!ok || w.Offset < c-1) {
			n++
		}
	}
	return n
}

// report prints the phase's figures.
func (f *fleetBench) report(converge []time.Duration, moves []fleetMove, others int, calls []storeCalls, window time.Duration) {
	b := f.b
	b.note("fleet: %d joins of a fourth process (each stopped again before the next, the three back at 4/4/4), started at a random point of a commit interval; 3/3/3/3 after p50 %.2f s (%.2f-%.2f), read from the processes' own writes; bound: the newcomer's start and first balance, then each owner's next commit (at most %v) and its hand-over",
		len(converge), median(converge).Seconds(), slices.Min(converge).Seconds(), slices.Max(converge).Seconds(), f.cfg.CommitEvery)
	b.figure("fleet_converge_s", "%.2f", median(converge).Seconds())
	var gaps []time.Duration
	for _, m := range moves {
		gaps = append(gaps, m.Gap)
	}
	b.note("fleet: %d moves by ask and hand-over in the joins (%d other changes of owner meanwhile); gap p50 %s ms, p99 %s ms (nearest rank, the %s), max %s ms",
		len(moves), others, ms(median(gaps)), ms(percentile(gaps, 99)), rankName(len(gaps), 99), ms(slices.Max(gaps)))
	b.note("%s", f.parts(moves))
	b.figure("fleet_move_gap_p99_ms", "%s", ms(percentile(gaps, 99)))
	var reads, writes, totals []float64
	for _, c := range calls {
		r, w := float64(c.reads)/window.Minutes(), float64(c.writes)/window.Minutes()
		reads, writes, totals = append(reads, r), append(writes, w), append(totals, r+w)
	}
	b.note("fleet: store calls a process a minute, 4 processes at 3/3/3/3 over %v: %.1f reads (loads) + %.1f writes (commits and the rest), by process %.0f-%.0f; at most, a balance period (%v and the balance's own time) %d loads of the leases it does not own + one commit each of its %d: %.0f a minute",
		window, mean(reads), mean(writes), slices.Min(totals), slices.Max(totals), f.cfg.CommitEvery, fleetParts-3, 3, float64(fleetParts)*time.Minute.Seconds()/f.cfg.CommitEvery.Seconds())
	b.figure("fleet_store_calls_per_min_per_process", "%.0f", mean(totals))
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// parts splits every move's gap from its start (the old owner's last
// record, or the broker taking the next one if later): to the owner's
// commit that brought it the ask, that commit's write, to the hand-over,
// the hand-over's write, to the new owner's poll reading it the owner, to
// its first record at the sink. It gives the p50 and largest of each, and
// how the largest gap splits. The first part is negative when the owner
// had written all there was and the next record reached the broker after
// the commit began.
func (f *fleetBench) parts(moves []fleetMove) string {
	if len(moves) == 0 {
		return "fleet: no moves"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	names := []string{"to the commit", "commit write", "to the hand-over", "hand-over write", "successor's poll reads it", "to its first record"}
	by := make([][]time.Duration, len(names))
	var worst fleetMove
	var worstParts []time.Duration
	for _, m := range moves {
		ps, start := f.passes[m.To], m.at.Add(-m.Gap)
		marks := []time.Time{start, ps.commit[0], ps.commit[1], ps.handed[0], ps.handed[1], f.seen[m.To], m.at}
		var p []time.Duration
		for i := range names {
			p = append(p, marks[i+1].Sub(marks[i]))
			by[i] = append(by[i], p[i])
		}
		if m.Gap > worst.Gap {
			worst, worstParts = m, p
		}
	}
	var each, split []string
	for i, name := range names {
		each = append(each, fmt.Sprintf("%s %s/%s", name, ms(median(by[i])), ms(slices.Max(by[i]))))
		split = append(split, ms(worstParts[i]))
	}
	return fmt.Sprintf("fleet: move gap parts, p50/max ms: %s; the largest gap, %s ms, was %s",
		strings.Join(each, ", "), ms(worst.Gap), strings.Join(split, " + "))
}
