//go:build !redis

// bench_io_test.go is the bench's io section (issue 23): an action that
// waits ioWait on I/O, as a call to another service does, run with
// -concurrency 1, 16, 64 and 256 over one partition of ioKeys keys into the
// discard and Kafka sinks, in this process against kfake; then the N = 64
// discard run of a fork's binary inside the 128 MB cgroup of the sizing
// section (bench_sizing_test.go). A run's efficiency is its rate over the
// most that N actions of ioWait each can give: N ÷ ioWait.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	ioWait = 20 * time.Millisecond // an action call's wait
	ioKeys = 10_000                // keys in the topic
	ioSize = 200                   // bytes a value
)

// ioConcurrency are the -concurrency values measured.
var ioConcurrency = []int{1, 16, 64, 256}

// ioAction waits ioWait, or until ctx ends, and keeps the record: an
// action whose time goes in waiting, not in CPU.
func ioAction(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	wait := time.NewTimer(ioWait)
	defer wait.Stop()
	select {
	case <-wait.C:
		return append(out, r), nil
	case <-ctx.Done():
		return out, ctx.Err()
	}
}

// ioKey is record i's key: i mod ioKeys, scrambled (7,919 is prime to
// ioKeys), so a key comes back every ioKeys records and neighbours' keys
// are not neighbours.
func ioKey(i int) []byte { return fmt.Appendf(nil, "%04d", i%ioKeys*7919%ioKeys) }

// ioIdeal is the most records a second n actions of ioWait give.
func ioIdeal(n int) float64 { return float64(n) / ioWait.Seconds() }

// An ioPoint is a run as of one of its commits.
type ioPoint struct {
	at     time.Time
	offset int64         // committed: written to the sink and flushed
	calls  int64         // action calls returned
	busy   time.Duration // their time in the action, summed
	cpu    time.Duration // this process's CPU time: kfake, clients, baton
	flush  time.Duration // the run's time in sink flushes, summed
}

// An ioResult is one run, measured from one of its commits to a later one.
type ioResult struct {
	rps      float64       // records committed a second
	inFlight float64       // actions running on average: their time ÷ the wall time
	took     time.Duration // an action call's mean time
	cores    float64       // this process's CPU over the wall time
	flushing float64       // the run's time in sink flushes over the wall time
}

// ioRun runs one invocation with -concurrency n and ioAction over topic
// (records long) into sinkTo, committing every commitEvery, and measures it
// over the commits of the stretch ioWindow picks.
func (b *bench) ioRun(t *testing.T, brokers []string, topic, sinkTo string, n int, records int64, commitEvery, warm, window time.Duration) (ioResult, error) {
	cfg := baseConfig(t, "-mode=lambda", "-brokers="+strings.Join(brokers, ","), "-topic="+topic, "-sink="+sinkTo,
		"-group="+strings.ReplaceAll(testKey(t), "/", "."), "-concurrency="+strconv.Itoa(n))
	cfg.CommitEvery = commitEvery
	var calls, busy atomic.Int64
	points := make(chan ioPoint, 1000)
	// A commit fixes its offset and then flushes the sink, which may take
	// a while (Kafka): the run is noted as the flush starts, and the note
	// is sent with the offset once the commit landed. Flushes and commits
	// are the run's goroutine's, so flushed needs no lock.
	var flushed ioPoint
	var flushing time.Duration
	d := benchDeps(t)
	d.wrapSink = func(_ invocation, s sink) sink {
		return &flushWatch{s, func() {
			flushed = ioPoint{time.Now(), 0, calls.Load(), time.Duration(busy.Load()), cpuTime(), flushing}
		}, &flushing}
	}
	d.store = &hookStore{store: newMemStore(), after: func(call storeCall, _ lease, err error) error {
		if call.op == "commit" && err == nil {
			p := flushed
			p.offset = call.offset
			select {
			case points <- p:
			default:
			}
		}
		return err
	}}
	d.action = func(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		start := time.Now()
		out, err := ioAction(ctx, r, out)
		busy.Add(int64(time.Since(start)))
		calls.Add(1)
		return out, err
	}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	wait := invoke(ctx, cfg, d, invocation{Topic: topic, Partition: 0, Tick: 1, Owner: "bench"}, 10*time.Minute)
	ps, err := ioWindow(points, warm, window)
	cancel()
	out, runErr := wait()
	switch {
	case err != nil:
		return ioResult{}, fmt.Errorf("%w (the run: %+v, %v)", err, out, runErr)
	case runErr != nil || out.End != endReleased:
		return ioResult{}, fmt.Errorf("the run: %+v, %v; want released", out, runErr)
	case ps[len(ps)-1].offset >= records:
		return ioResult{}, fmt.Errorf("all %d records read before the window closed", records)
	}
	p0, p1 := ps[0], ps[len(ps)-1]
	span := p1.at.Sub(p0.at)
	res := ioResult{rps: slope(ps),
		inFlight: float64(p1.busy-p0.busy) / float64(span), cores: float64(p1.cpu-p0.cpu) / float64(span),
		flushing: float64(p1.flush-p0.flush) / float64(span)}
	if c := p1.calls - p0.calls; c > 0 {
		res.took = (p1.busy - p0.busy) / time.Duration(c)
	}
	return res, nil
}

// flushWatch calls started as each flush of its sink starts, and adds the
// flush's time to took.
type flushWatch struct {
	sink
	started func()
	took    *time.Duration
}

func (f *flushWatch) flush(ctx context.Context, next int64) error {
	f.started()
	start := time.Now()
	defer func() { *f.took += time.Since(start) }()
	return f.sink.flush(ctx, next)
}

// ioWindow picks a run's measured stretch from its commits: from the first
// commit at least warm after the first that wrote anything, to the first
// at least window after that, every commit between included.
func ioWindow(points <-chan ioPoint, warm, window time.Duration) (ps []ioPoint, err error) {
	limit := window + 30*time.Second
	next := func() (ioPoint, error) {
		select {
		case p := <-points:
			return p, nil
		case <-time.After(limit):
			return ioPoint{}, fmt.Errorf("no commit within %v", limit)
		}
	}
	var first, p ioPoint
	for first.offset <= 0 {
		if first, err = next(); err != nil {
			return nil, err
		}
	}
	for p = first; p.at.Sub(first.at) < warm; {
		if p, err = next(); err != nil {
			return nil, err
		}
	}
	for ps = []ioPoint{p}; p.at.Sub(ps[0].at) < window; ps = append(ps, p) {
		if p, err = next(); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// slope is the least-squares fit of the offset committed over time through
// ps: records a second. Results leave the window in offset order, so they
// come in bursts, and a commit's offset lags a steady rate by anything up
// to the window (inflight.go's windowPerWorker × N records); a fit through
// every commit of the stretch weighs that less than its two ends alone.
func slope(ps []ioPoint) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range ps {
		x, y := p.at.Sub(ps[0].at).Seconds(), float64(p.offset-ps[0].offset)
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// ioCase is one setting measured: -concurrency n into a sink.
type ioCase struct {
	n    int
	sink string // discard or kafka
}

// name is the case's figure suffix: n64, n64_kafka.
func (c ioCase) name() string {
	if c.sink == "kafka" {
		return fmt.Sprintf("n%d_kafka", c.n)
	}
	return fmt.Sprintf("n%d", c.n)
}

// io runs every case in rounds, each round in the reverse order of the last,
// and prints the median of the rounds with their spread; then the cgroup run.
func (b *bench) io(t *testing.T) {
	// Commits as often as baton allows, for the fit's points (slope).
	commitEvery, warm := minCommitEvery, pick(b, 200*time.Millisecond, 500*time.Millisecond)
	window, rounds := pick(b, 500*time.Millisecond, 2*time.Second), pick(b, 1, 3)
	// Enough that the fastest case, at its most, does not read them all
	// before its window closes: a second spare for its start.
	records := int64(ioIdeal(slices.Max(ioConcurrency)) * (warm + window + 2*commitEvery + time.Second).Seconds())
	brokers := newCluster(t, 1, "io").ListenAddrs()
	start := time.Now()
	fillKeyed(t, b.ctx, brokers, "io", int(records), ioSize, ioKey)
	b.note("io: %d records of %d B over %d keys produced to kfake in %.1f s; %d CPUs, load average %s (others share them)",
		records, ioSize, ioKeys, time.Since(start).Seconds(), runtime.NumCPU(), loadAverage())
	var cases []ioCase
	for _, n := range ioConcurrency {
		cases = append(cases, ioCase{n, "discard"}, ioCase{n, "kafka"})
	}
	got, failed := map[ioCase][]ioResult{}, map[ioCase]error{}
	sinks := 0
	for r := range rounds {
		order := slices.Clone(cases)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			res, err := b.ioCase(t, brokers, c, &sinks, records, commitEvery, warm, window)
			if err != nil {
				failed[c] = err
				continue
			}
			got[c] = append(got[c], res)
		}
	}
	b.note("io: each case in %d rounds%s, each round in the reverse order of the last; a run committed every %v and was measured from a commit %v after its first to the first commit %v later: records/s is the least-squares slope of the offsets committed (written and flushed) over those commits; figures are medians of the rounds, slowest and fastest in brackets",
		rounds, pick(b, " (-quick: a smoke run; a 0.5 s stretch is a few bursts of N records, so a rate may be off by several %)", ""), commitEvery, warm, window)
	for _, c := range cases {
		b.ioPrint(c, got[c], failed[c], rounds)
	}
	b.ioCgroup(t, brokers, "io", records)
}

// loadAverage is the machine's 1, 5 and 15 minute load averages, as
// /proc/loadavg says them: what else ran beside the bench.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// ioCase runs c once; a Kafka sink gets a topic of its own.
func (b *bench) ioCase(t *testing.T, brokers []string, c ioCase, sinks *int, records int64, commitEvery, warm, window time.Duration) (ioResult, error) {
	to := c.sink
	if c.sink == "kafka" {
		*sinks++
		topic := fmt.Sprintf("io-out-%d", *sinks)
		if err := createTopic(b.ctx, brokers, topic); err != nil {
			t.Fatal(err)
		}
		defer deleteTopic(b.ctx, brokers, topic)
		to = "kafka://" + topic
	}
	return b.ioRun(t, brokers, "io", to, c.n, records, commitEvery, warm, window)
}

// ioPrint prints one case's figures and what bounds them.
func (b *bench) ioPrint(c ioCase, rs []ioResult, failed error, rounds int) {
	if len(rs) == 0 {
		b.figure("io_action_rps_"+c.name(), "failed: %v", failed)
		b.figure("io_action_efficiency_"+c.name(), "failed: %v", failed)
		return
	}
	of := func(f func(ioResult) float64) []float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, f(r))
		}
		return xs
	}
	rates := of(func(r ioResult) float64 { return r.rps })
	running := of(func(r ioResult) float64 { return r.inFlight })
	took := of(func(r ioResult) float64 { return float64(r.took) / float64(time.Millisecond) })
	cores := of(func(r ioResult) float64 { return r.cores })
	flushing := of(func(r ioResult) float64 { return 100 * r.flushing })
	ideal := ioIdeal(c.n)
	b.figure("io_action_rps_"+c.name(), "%.0f", medianF(rates))
	b.figure("io_action_efficiency_"+c.name(), "%.3f", medianF(rates)/ideal)
	b.note("io: -concurrency %d, %s sink: %.0f records/s (%.0f-%.0f) of %.0f at most, efficiency %.3f (%.3f-%.3f); actions running %.1f of %d on average (%.1f-%.1f); a call took %.2f ms (%.2f-%.2f) for a %v wait; the run flushed the sink %.1f%% of the time (%.1f-%.1f); this process used %.2f cores (%.2f-%.2f)",
		c.n, c.sink, medianF(rates), slices.Min(rates), slices.Max(rates), ideal,
		medianF(rates)/ideal, slices.Min(rates)/ideal, slices.Max(rates)/ideal,
		medianF(running), c.n, slices.Min(running), slices.Max(running),
		medianF(took), slices.Min(took), slices.Max(took), ioWait, medianF(flushing), slices.Min(flushing), slices.Max(flushing),
		medianF(cores), slices.Min(cores), slices.Max(cores))
	if failed != nil {
		b.note("io: -concurrency %d, %s sink: %d of %d rounds failed: %v", c.n, c.sink, rounds-len(rs), rounds, failed)
	}
}

// ioCgroup runs the N = 64 discard case in the 128 MB cgroup of the sizing
// section: a fork's binary whose action waits ioWait (ioFork), in process
// mode with DynamoDB Local, measured as sizingRun measures the sizing runs.
func (b *bench) ioCgroup(t *testing.T, brokers []string, topic string, records int64) {
	const mb, n = 128, 64
	prefix := fmt.Sprintf("lambda_%d_io_action_", mb)
	names := []string{fmt.Sprintf("rps_n%d", n), fmt.Sprintf("efficiency_n%d", n), "peak_rss_mib"}
	if _, err := newCgroup(t, fmt.Sprintf("baton-io-probe-%d", os.Getpid()), 1, 1<<30); err != nil {
		b.note("io: the %d MB cgroup run skipped: cgroups cannot be written here (%v)", mb, err)
		for _, name := range names {
			b.figure(prefix+name, "skipped: no writable cgroups")
		}
		return
	}
	url := needServer(t, "BATON_TEST_DYNAMO")
	table := fmt.Sprintf("baton-bench-io-%d", time.Now().UnixNano())
	if _, err := openDynamo(b.ctx, config{LeaseTable: table, CreateTable: true}, url, testAWS()...); err != nil {
		t.Fatal(err)
	}
	defer dropTable(t, table)
	s := testDynamo(t, url, table)
	start := time.Now()
	bin := ioFork(t)
	b.note("io: the fork (baton with ioAction's wait at the top of consume.go's action) built like the zip in %.1f s", time.Since(start).Seconds())
	// sizingRun rates from its first and last commit, whose offsets lag by
	// up to the window of 4 × N records: a longer window than sizing's
	// keeps that to 2%.
	window, reps := pick(b, time.Second, 4*time.Second), pick(b, 1, 3)
	var rates, throttled []float64
	var hwm, cgPeak int64
	var failed error
	for range reps {
		r := b.sizingRun(t, bin, mb, brokers, topic, "discard", records, window, s, table, "-concurrency="+strconv.Itoa(n))
		if r.err != nil {
			failed = r.err
			continue
		}
		rates, throttled = append(rates, r.rps), append(throttled, r.throttled)
		hwm, cgPeak = max(hwm, r.hwm), max(cgPeak, r.cgPeak)
	}
	if len(rates) == 0 {
		for _, name := range names {
			b.figure(prefix+name, "failed: %v", failed)
		}
		return
	}
	b.figure(prefix+names[0], "%.0f", medianF(rates))
	b.figure(prefix+names[1], "%.3f", medianF(rates)/ioIdeal(n))
	b.figure(prefix+names[2], "%.1f", float64(hwm)/(1<<20))
	b.note("io: %d MB cgroup (%.1f%% of a CPU, memory %d MiB): baton -mode process -concurrency %d, the fork whose action waits %v, discard sink, DynamoDB Local; records/s between the first and last commit of a %v window (a commit every %v), median of %d runs %.0f (%.0f-%.0f) of %.0f at most; the CPU quota ran out in %.0f%% of its %v periods (median); peak RSS is the largest VmHWM, the cgroup's peak charge %.1f MiB",
		mb, 100*float64(mb)/lambdaMBPerCPU, mb, n, ioWait, window, window/8, len(rates), medianF(rates), slices.Min(rates), slices.Max(rates), ioIdeal(n),
		100*medianF(throttled), cfsPeriod, float64(cgPeak)/(1<<20))
	if failed != nil {
		b.note("io: %d MB cgroup: %d of %d runs failed: %v", mb, reps-len(rates), reps, failed)
	}
}

// actionHead is the first line of consume.go's action, the function a
// fork edits.
var actionHead = regexp.MustCompile(`(?m)^func action\(ctx context\.Context, r \*kgo\.Record, out \[\]\*kgo\.Record\) \(\[\]\*kgo\.Record, error\) \{\n`)

// ioWaitSource is ioAction's wait, as the fork's action begins with it.
var ioWaitSource = fmt.Sprintf("\twait := time.NewTimer(%d) // the bench's io fork (bench_io_test.go)\n\tdefer wait.Stop()\n\tselect {\n\tcase <-wait.C:\n\tcase <-ctx.Done():\n\t\treturn out, ctx.Err()\n\t}\n", int64(ioWait))

// ioFork builds baton as a fork whose action waits ioWait first, like the
// zip. The binary cannot take a test's action (deps.action), and a build
// tag or variable that swapped it would put a bench hook into baton; so the
// package's sources are copied to a new directory, the wait put at the top
// of consume.go's action there, and that built: nothing in the repository
// changes, and nothing of baton but the action.
func ioFork(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(names, "go.mod", "go.sum", "template.json") {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "consume.go" {
			if src, err = withIOWait(src); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "baton")
	goBuild(t, dir, bin, "lambda.norpc")
	return bin
}

// withIOWait is consume.go's source with ioWaitSource at the top of the
// action.
func withIOWait(src []byte) ([]byte, error) {
	at := actionHead.FindAllIndex(src, -1)
	if len(at) != 1 {
		return nil, errors.New("ioFork: consume.go has no one action with the signature actionHead expects: update it")
	}
	end := at[0][1]
	return slices.Concat(src[:end:end], []byte(ioWaitSource), src[end:]), nil
}
