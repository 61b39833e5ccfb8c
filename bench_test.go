// bench_test.go holds `./bootstrap.sh bench`: baton measured beside plain
// franz-go on kfake, each pair in one process run, printed as "BENCH name:
// value" lines (notes as "# ..." lines). TestBench runs only with
// BATON_BENCH=quick or BATON_BENCH=full; which figures a build measures is in
// bench_dynamo_test.go (default build) and bench_redis_test.go (-tags redis).

package main

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// bench is one run of TestBench.
type bench struct {
	quick bool
	ctx   context.Context
	// The store traffic of one partition a minute over a Lambda cycle, set
	// by storeOps: measured at the Lambda default lease (reads, writes), and
	// at the shorter process-mode lease (processWrites), where the owner's
	// writes are scaled by the commit intervals.
	reads, writes, processWrites float64
}

func TestBench(t *testing.T) {
	mode := os.Getenv("BATON_BENCH")
	if mode != "quick" && mode != "full" {
		t.Skip("BATON_BENCH=quick or BATON_BENCH=full runs the benchmarks (./bootstrap.sh bench)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b := &bench{quick: mode == "quick", ctx: ctx}
	start := time.Now()
	benchBuild(t, b)
	b.note("%s build (%s): %.1f s", storeName, mode, time.Since(start).Seconds())
}

// figure prints one result line; bootstrap.sh collects them.
func (b *bench) figure(name, format string, a ...any) {
	fmt.Printf("BENCH %s: %s\n", name, fmt.Sprintf(format, a...))
}

// note prints what a reader needs to read a figure right.
func (b *bench) note(format string, a ...any) {
	fmt.Printf("# "+format+"\n", a...)
}

// pick is the quick value under -quick, else the full one.
func pick[T any](b *bench, quick, full T) T {
	if b.quick {
		return quick
	}
	return full
}

// phase runs one part as a subtest and says how long it took.
func (b *bench) phase(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	start := time.Now()
	t.Run(name, f)
	b.note("%s: %.1f s", name, time.Since(start).Seconds())
}

// ms is a duration as milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// percentile is the nearest-rank percentile (p in 0..100) of ds: with 50
// samples, p99 is the largest.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// benchDeps are deps as the tests make them: franz-go, the real clock, a
// quiet log (BATON_TEST_LOG=1 shows it).
func benchDeps(t testing.TB) *deps {
	return &deps{kafka: kgo.NewClient, now: time.Now, log: testLogger(t), stdout: io.Discard}
}

// baseConfig is baton's configuration with every default, as parseConfig
// makes it from the given flags. The Redis build requires -redis; the
// bench hands the store over in deps, so only the test server's address is
// given.
func baseConfig(t testing.TB, args ...string) *config {
	t.Helper()
	cfg, err := parseConfig(args, func(name string) string {
		if name == "BATON_REDIS" && storeBuild == "redis" {
			return os.Getenv("BATON_TEST_REDIS")
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fill produces n records of size bytes (random, uncompressed) to
// partition 0 of topic.
func fill(t testing.TB, ctx context.Context, brokers []string, topic string, n, size int) {
	t.Helper()
	fillKeyed(t, ctx, brokers, topic, n, size, nil)
}

// fillKeyed is fill with record i's key keyOf(i); nil: no keys.
func fillKeyed(t testing.TB, ctx context.Context, brokers []string, topic string, n, size int, keyOf func(i int) []byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pool := make([]byte, 1<<20+size)
	crand.Read(pool)
	var failed atomic.Pointer[error]
	for i := range n {
		at := (i * 4099) % (1 << 20)
		r := &kgo.Record{Value: pool[at : at+size]}
		if keyOf != nil {
			r.Key = keyOf(i)
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
}

// createTopic makes a one-partition topic.
func createTopic(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = topic, 1, 1
	req.Topics = []kmsg.CreateTopicsRequestTopic{t}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.Topics[0].ErrorCode)
}

// deleteTopic frees what kfake holds for a topic.
func deleteTopic(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{topic}
	t := kmsg.NewDeleteTopicsRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = []kmsg.DeleteTopicsRequestTopic{t}
	_, err = req.RequestWith(ctx, cl)
	return err
}

// countSink counts what reaches the sink and calls full at the n-th record.
// Only the owner's loop writes to a sink, so a plain counter does. It is
// the bench's apparatus, not baton: no defer and a pointer receiver keep it
// to the one call the plain loop's counter costs too.
type countSink struct {
	sink
	n    *int64
	want int64
	full func()
}

func (c *countSink) write(ctx context.Context, r *kgo.Record) error {
	err := c.sink.write(ctx, r)
	if *c.n++; *c.n == c.want {
		c.full()
	}
	return err
}

// cpuTime is the CPU this process has used (user and system): kfake,
// the clients and the loop alike.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A loopTime is one run of a loop: wall time, and the CPU time it took.
type loopTime struct{ wall, cpu time.Duration }

// plainLoop is the baseline: a franz-go direct consumer at the start of the
// partition, every option at its default, that stops after n records; with
// sinkTopic set it produces each record there and flushes at the end.
func plainLoop(t testing.TB, ctx context.Context, brokers []string, topic, sinkTopic string, n int) loopTime {
	t.Helper()
	start, cpu := time.Now(), cpuTime()
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})}
	if sinkTopic != "" {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var failed atomic.Pointer[error]
	onErr := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, &err)
		}
	}
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			if sinkTopic != "" {
				cl.Produce(ctx, &kgo.Record{Topic: sinkTopic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers}, onErr)
			}
		})
	}
	if sinkTopic != "" {
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
	return loopTime{time.Since(start), cpuTime() - cpu}
}

// How often baton's loop commits and reads its lease in the throughput
// runs. A 1M-record run lasts about a second, less than the default 5 s
// commit interval; these make it commit and check several times, so their
// cost is in the figure (at 50 and 10 times the defaults).
const (
	tputCommitEvery = 100 * time.Millisecond
	tputCheckEvery  = 50 * time.Millisecond
)

// batonLoop runs one invocation over the same n records: lease take,
// action, sink, commits and lease reads, and the release at the end. It
// ends when the n-th record reached the sink and the invocation returned.
func batonLoop(t testing.TB, ctx context.Context, brokers []string, topic, sinkTo string, n int) loopTime {
	t.Helper()
	cfg := baseConfig(t, "-mode=lambda", "-brokers="+strings.Join(brokers, ","), "-topic="+topic, "-sink="+sinkTo,
		"-group="+strings.ReplaceAll(testKey(t), "/", "."))
	// A Lambda-style deadline inside the near-handoff window, so the owner
	// reads its lease every tputCheckEvery as it does before a handoff.
	cfg.CommitEvery, cfg.ReadEvery, cfg.NearHandoff = tputCommitEvery, tputCheckEvery, time.Hour
	ictx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var got int64
	d := benchDeps(t)
	d.store = newMemStore()
	d.wrapSink = func(_ invocation, s sink) sink { return &countSink{s, &got, int64(n), cancel} }
	start, cpu := time.Now(), cpuTime()
	out, err := runInvocation(ictx, cfg, d, invocation{Topic: topic, Partition: 0, Tick: 1, Owner: "bench"})
	took := loopTime{time.Since(start), cpuTime() - cpu}
	if err != nil || out.End != endReleased || out.To < int64(n) {
		t.Fatalf("baton loop: %+v, %v; want released after %d records", out, err, n)
	}
	return took
}

// throughput runs the baseline and baton alternately over one topic of n
// records of size bytes, in rounds whose order rotates, and prints the
// median over the rounds of each round's plain ÷ baton ratio (wall time
// and CPU time per record), with the spread of the rounds. A ratio is
// taken within a round, between runs seconds apart, so a change in the
// machine's other load mostly cancels out; no run is picked over another.
func (b *bench) throughput(t *testing.T) {
	const size = 200
	n, rounds := pick(b, 200_000, 1_000_000), pick(b, 7, 9)
	cluster := newCluster(t, 1, "tput")
	brokers := cluster.ListenAddrs()
	start := time.Now()
	fill(t, b.ctx, brokers, "tput", n, size)
	b.note("throughput: %d records of %d B produced to kfake in %.1f s", n, size, time.Since(start).Seconds())
	// Each round runs the pairs in the opposite order of the last, so that
	// neither side always runs first.
	var plain, baton, plainK, batonK, batonT []loopTime
	for r := range rounds {
		for i := range 2 {
			if (i+r)%2 == 0 {
				plain = append(plain, plainLoop(t, b.ctx, brokers, "tput", "", n))
			} else {
				baton = append(baton, batonLoop(t, b.ctx, brokers, "tput", "discard", n))
			}
		}
		for i := range 3 {
			sinkTopic := fmt.Sprintf("out-%d-%d", r, i)
			if err := createTopic(b.ctx, brokers, sinkTopic); err != nil {
				t.Fatal(err)
			}
			switch (i + r) % 3 {
			case 0:
				plainK = append(plainK, plainLoop(t, b.ctx, brokers, "tput", sinkTopic, n))
			case 1:
				batonK = append(batonK, batonLoop(t, b.ctx, brokers, "tput", "kafka://"+sinkTopic, n))
			default:
				batonT = append(batonT, batonLoop(t, b.ctx, brokers, "tput", "kafka+txn://"+sinkTopic, n))
			}
			if err := deleteTopic(b.ctx, brokers, sinkTopic); err != nil {
				t.Fatal(err)
			}
		}
	}
	wall := func(l loopTime) time.Duration { return l.wall }
	cpu := func(l loopTime) time.Duration { return l.cpu }
	// ratios are each round's a ÷ b of one measure.
	ratios := func(a, b []loopTime, of func(loopTime) time.Duration) []float64 {
		var rs []float64
		for i := range a {
			rs = append(rs, float64(of(a[i]))/float64(of(b[i])))
		}
		return rs
	}
	spread := func(rs []float64) string {
		return fmt.Sprintf("%.3f (rounds %.3f-%.3f)", medianF(rs), slices.Min(rs), slices.Max(rs))
	}
	rate := func(ls []loopTime) string {
		var rs []float64
		for _, l := range ls {
			rs = append(rs, float64(n)/l.wall.Seconds()/1e6)
		}
		return fmt.Sprintf("%.2fM rec/s (%.2f-%.2f)", medianF(rs), slices.Min(rs), slices.Max(rs))
	}
	perRecord := func(ls []loopTime) string {
		var ds []time.Duration
		for _, l := range ls {
			ds = append(ds, l.cpu)
		}
		return fmt.Sprintf("%.3f", float64(median(ds).Nanoseconds())/float64(n)/1000)
	}
	b.note("throughput: %d rounds, the order rotated each round; every figure is the median of the rounds (nearest rank), the slowest and fastest round in brackets", rounds)
	b.note("throughput: rates: discard sink plain %s, baton %s; kafka sink plain %s, baton %s",
		rate(plain), rate(baton), rate(plainK), rate(batonK))
	b.note("throughput: wall-time ratio plain ÷ baton: discard %s, kafka %s",
		spread(ratios(plain, baton, wall)), spread(ratios(plainK, batonK, wall)))
	b.note("throughput: CPU (user+system of this process: kfake, clients, loop) per record: discard plain %s µs, baton %s µs, ratio %s; kafka plain %s µs, baton %s µs, ratio %s",
		perRecord(plain), perRecord(baton), spread(ratios(plain, baton, cpu)), perRecord(plainK), perRecord(batonK), spread(ratios(plainK, batonK, cpu)))
	b.note("throughput: baton commits every %v and reads its lease every %v here (memory store); defaults are %v and %v",
		tputCommitEvery, tputCheckEvery, lambdaCommitEvery, defaultReadEvery)
	b.figure("throughput_discard_ratio", "%.3f", medianF(ratios(plain, baton, wall)))
	b.figure("throughput_kafka_ratio", "%.3f", medianF(ratios(plainK, batonK, wall)))
	b.figure("cpu_per_record_ratio_discard", "%.3f", medianF(ratios(plain, baton, cpu)))
	b.figure("cpu_per_record_ratio_kafka", "%.3f", medianF(ratios(plainK, batonK, cpu)))
	b.note("throughput: kafka+txn sink (a transaction a commit, every %v here): baton %s, beside the at-least-once kafka sink's %s; CPU per record %s µs; rate kafka+txn ÷ kafka %s",
		tputCommitEvery, rate(batonT), rate(batonK), perRecord(batonT), spread(ratios(batonK, batonT, wall)))
	b.figure("throughput_txn_vs_kafka_ratio", "%.3f", medianF(ratios(batonK, batonT, wall)))
}

// medianF is the nearest-rank median of xs.
func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[max(0, int(math.Ceil(float64(len(s))/2))-1)]
}

// A chain hands one partition from owner to owner, with records flowing,
// and keeps every gap the sink saw.
type chain interface {
	name() string
	step(t testing.TB) // one handoff, and the new owner delivering
	gaps() []time.Duration
	stop(t testing.TB)
}

// chainRate is the producer's pace in the handoff and crash runs.
const chainRate = time.Millisecond

// settleRecords is how many records a new owner delivers before the next
// handoff starts.
const settleRecords = 50

// waitHandoffs waits until rec saw n handoffs and the new owner delivered
// settleRecords, then a random part of jitter more: a fixed pace would lock
// the successor's polls to the owner's lease reads, and every gap would
// fall at the same point of the poll interval.
func waitHandoffs(t testing.TB, rec *recorder, n int, jitter time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("handoff %d", n), 20*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.handoffs) >= n
	})
	if jitter > 0 {
		time.Sleep(rand.N(jitter))
	}
	time.Sleep(settleRecords * chainRate)
}

func recGaps(rec *recorder) []time.Duration {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var gs []time.Duration
	for _, h := range rec.handoffs {
		gs = append(gs, h.Gap)
	}
	return gs
}

// stepStore times the parts of each handoff: when the hand-over to an
// owner was written, and when a read first named it the owner (the
// successor's poll; the old owner reads no more once it handed over).
type stepStore struct {
	hookStore
	mu     sync.Mutex
	handed map[string]time.Time
	seen   map[string]time.Time
}

func newStepStore(s store) *stepStore {
	st := &stepStore{handed: map[string]time.Time{}, seen: map[string]time.Time{}}
	st.hookStore = hookStore{store: s, after: func(call storeCall, got lease, err error) error {
		if err != nil {
			return err
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		switch _, ok := st.seen[got.Owner]; {
		case call.op == "handOver":
			st.handed[call.l.Successor] = time.Now()
		case call.op == "load" && !ok:
			st.seen[got.Owner] = time.Now()
		}
		return nil
	}}
	return st
}

// batonChain: each new invocation (a newer tick) asks while the previous
// one owns, as a Lambda schedule's next tick does. Every invocation's
// deadline is inside the near-handoff window, so the owner reads its lease
// every ReadEvery; the successor reads it every WaitPoll while it waits.
type batonChain struct {
	ctx    context.Context
	label  string
	cfg    *config
	d      *deps
	rec    *recorder
	steps  *stepStore
	n      int
	wait   func() (outcome, error)
	cancel func()
	stopP  func()
	total  func() []int64
}

// handoffLife is each chained invocation's deadline: inside the default
// near-handoff window (90 s), as the last minutes of a Lambda invocation.
const handoffLife = time.Minute

// handoffRuns is how many handoffs the full bench times a store: enough
// that the nearest-rank p99 is not simply the largest gap (it is the third
// largest of 200), so one stall of a shared machine does not make it.
const handoffRuns = 200

func newBatonChain(t testing.TB, b *bench, label string, s store, brokers []string, topic string, checkEvery time.Duration) *batonChain {
	t.Helper()
	cfg := baseConfig(t, "-mode=lambda", "-brokers="+strings.Join(brokers, ","), "-topic="+topic, "-sink=discard",
		"-group="+strings.ReplaceAll(testKey(t), "/", ".")+"."+label)
	cfg.ReadEvery = checkEvery
	c := &batonChain{ctx: b.ctx, label: label, cfg: cfg, rec: newRecorder(nil),
		steps: newStepStore(s)}
	c.d = benchDeps(t)
	c.d.store, c.d.wrapSink = c.steps, c.rec.wrap
	pctx, stop := context.WithCancel(b.ctx)
	total, err := produceAcked(pctx, brokers, topic, 1, chainRate, c.rec.acked)
	if err != nil {
		t.Fatal(err)
	}
	c.stopP, c.total = stop, total
	c.start()
	waitFor(t, label+" first owner", 20*time.Second, func() bool { return c.rec.first(c.owner()) >= 0 })
	time.Sleep(settleRecords * chainRate)
	return c
}

func (c *batonChain) name() string  { return c.label }
func (c *batonChain) owner() string { return fmt.Sprintf("%s-%d", c.label, c.n) }

func (c *batonChain) start() {
	ictx, cancel := context.WithCancel(c.ctx)
	c.cancel = cancel
	inv := invocation{Topic: c.cfg.Topic, Partition: 0, Tick: int64(c.n+1) * 1000, Owner: c.owner()}
	c.wait = invoke(ictx, c.cfg, c.d, inv, handoffLife)
}

func (c *batonChain) step(t testing.TB) {
	t.Helper()
	prevWait, prevCancel := c.wait, c.cancel
	c.n++
	c.start()
	out, err := prevWait()
	prevCancel()
	if err != nil || out.End != endHanded {
		t.Fatalf("%s: owner %s: %+v, %v; want handed over", c.label, out.Owner, out, err)
	}
	waitHandoffs(t, c.rec, c.n, c.cfg.ReadEvery)
}

func (c *batonChain) gaps() []time.Duration { return recGaps(c.rec) }

// parts splits every gap in three: from its start (the old owner's last
// write, or the broker taking the record if later) to the hand-over
// written; to the successor reading it; to the successor's first record.
// It says the p50 and largest of each, and how the largest gap splits.
func (c *batonChain) parts() string {
	c.rec.mu.Lock()
	hs := slices.Clone(c.rec.handoffs)
	c.rec.mu.Unlock()
	var owner, poll, fetch []time.Duration
	var worst handoff
	var worstParts [3]time.Duration
	for _, h := range hs {
		first := c.rec.firstAt(h.To)
		c.steps.mu.Lock()
		handed, seen := c.steps.handed[h.To], c.steps.seen[h.To]
		c.steps.mu.Unlock()
		p := [3]time.Duration{handed.Sub(first.Add(-h.Gap)), seen.Sub(handed), first.Sub(seen)}
		owner, poll, fetch = append(owner, p[0]), append(poll, p[1]), append(fetch, p[2])
		if h.Gap > worst.Gap {
			worst, worstParts = h, p
		}
	}
	part := func(ds []time.Duration) string { return ms(median(ds)) + "/" + ms(slices.Max(ds)) }
	return fmt.Sprintf("handoff %s: gap parts, p50/max ms: owner to hand-over written %s, successor reads it %s, successor's first record %s; the largest gap, %s ms, was %s + %s + %s",
		c.label, part(owner), part(poll), part(fetch), ms(worst.Gap), ms(worstParts[0]), ms(worstParts[1]), ms(worstParts[2]))
}

func (c *batonChain) stop(t testing.TB) {
	t.Helper()
	c.stopP()
	total := c.total()
	waitFor(t, c.label+" to catch up", 20*time.Second, func() bool { return c.rec.tally(total).Lost == 0 })
	c.cancel()
	if out, err := c.wait(); err != nil || out.End != endReleased {
		t.Errorf("%s: last owner: %+v, %v; want released", c.label, out, err)
	}
	if tl := c.rec.tally(total); tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 {
		t.Errorf("%s: sink %+v; want every record once, in order", c.label, tl)
	}
}

// cutDialer lets a test crash a franz-go client: cut closes every
// connection it made and refuses new ones, so the broker hears nothing more
// from it (no commit, no heartbeat, no LeaveGroup).
type cutDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func (c *cutDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errCrashed
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *cutDialer) cutAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, conn := range c.conns {
		conn.Close()
	}
}

// member is one franz-go group consumer: every record it polls is noted in
// rec as delivered by owner.
type member struct {
	owner   string
	cl      *kgo.Client
	dial    *cutDialer
	crashed atomic.Bool
	once    sync.Once
	cancel  func()
	done    chan struct{}
	commits chan time.Time // autocommits that succeeded
}

func startMember(t testing.TB, ctx context.Context, brokers []string, group, topic, owner string, rec *recorder, opts ...kgo.Opt) *member {
	t.Helper()
	m := &member{owner: owner, dial: &cutDialer{}, done: make(chan struct{}), commits: make(chan time.Time, 100)}
	opts = append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.Dialer(m.dial.dial),
		kgo.AutoCommitCallback(func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err == nil {
				select {
				case m.commits <- time.Now():
				default:
				}
			}
		})}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	pctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for pctx.Err() == nil {
			fs := cl.PollFetches(pctx)
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				if !m.crashed.Load() {
					rec.note(owner, r)
				}
			})
		}
	}()
	return m
}

// leave is franz-go's graceful end: stop polling, commit what was polled,
// Close (which leaves the group).
func (m *member) leave(ctx context.Context) error {
	m.cancel()
	<-m.done
	err := m.cl.CommitUncommittedOffsets(ctx)
	m.cl.Close()
	return err
}

// crash stops the member with no goodbye: its connections drop and it
// delivers nothing more. Its client is closed in the background; with no
// connection it cannot leave the group.
func (m *member) crash() {
	m.once.Do(func() {
		m.dial.cutAll()
		m.crashed.Store(true)
		m.cancel()
		go m.cl.Close()
	})
}

// groupChain: the franz-go group consumer moving the partition the way a
// rolling restart does: the owner Closes, then its successor joins.
type groupChain struct {
	label   string
	brokers []string
	group   string
	topic   string
	rec     *recorder
	cur     *member
	n       int
	stopP   func()
	total   func() []int64
}

func newGroupChain(t testing.TB, b *bench, brokers []string, topic string) *groupChain {
	t.Helper()
	c := &groupChain{label: "group", brokers: brokers, group: strings.ReplaceAll(testKey(t), "/", "."), topic: topic, rec: newRecorder(nil)}
	pctx, stop := context.WithCancel(b.ctx)
	total, err := produceAcked(pctx, brokers, topic, 1, chainRate, c.rec.acked)
	if err != nil {
		t.Fatal(err)
	}
	c.stopP, c.total = stop, total
	c.cur = startMember(t, context.Background(), brokers, c.group, topic, c.owner(), c.rec, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	waitFor(t, "group first owner", 20*time.Second, func() bool { return c.rec.first(c.owner()) >= 0 })
	time.Sleep(settleRecords * chainRate)
	return c
}

func (c *groupChain) name() string  { return c.label }
func (c *groupChain) owner() string { return fmt.Sprintf("group-%d", c.n) }

func (c *groupChain) step(t testing.TB) {
	t.Helper()
	if err := c.cur.leave(context.Background()); err != nil {
		t.Fatalf("group: %s leaving: %v", c.cur.owner, err)
	}
	c.n++
	c.cur = startMember(t, context.Background(), c.brokers, c.group, c.topic, c.owner(), c.rec, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	waitHandoffs(t, c.rec, c.n, 0)
}

func (c *groupChain) gaps() []time.Duration { return recGaps(c.rec) }

func (c *groupChain) stop(t testing.TB) {
	t.Helper()
	c.stopP()
	total := c.total()
	waitFor(t, "group to catch up", 20*time.Second, func() bool { return c.rec.tally(total).Lost == 0 })
	c.cur.leave(context.Background())
	if tl := c.rec.tally(total); tl.Lost != 0 || tl.Reordered != 0 {
		t.Errorf("group: sink %+v; want nothing lost, in order", tl)
	}
	if tl := c.rec.tally(total); tl.Duplicated != 0 {
		t.Logf("group: %d records delivered twice across handoffs", tl.Duplicated)
	}
}

// handoffs runs n handoffs on each chain, one chain after the other, and
// returns each chain's gaps.
func (b *bench) handoffs(t *testing.T, n int, chains ...chain) map[string][]time.Duration {
	for range n {
		for _, c := range chains {
			c.step(t)
		}
	}
	got := map[string][]time.Duration{}
	for _, c := range chains {
		c.stop(t)
		got[c.name()] = c.gaps()
		if len(got[c.name()]) != n {
			t.Fatalf("%s: %d handoffs seen at the sink, want %d", c.name(), len(got[c.name()]), n)
		}
	}
	return got
}

// printGaps prints the handoff figures of one store.
func (b *bench) printGaps(store string, gs []time.Duration) {
	b.figure("handoff_gap_p50_ms_"+store, "%s", ms(median(gs)))
	b.figure("handoff_gap_p99_ms_"+store, "%s", ms(percentile(gs, 99)))
	b.figure("handoff_gap_max_ms_"+store, "%s", ms(slices.Max(gs)))
}

// rankName says which value from the top the nearest-rank p of n is.
func rankName(n int, p float64) string {
	from := n - int(math.Ceil(p/100*float64(n))) + 1
	suffix := map[int]string{1: "st", 2: "nd", 3: "rd"}[from%10]
	switch {
	case from == 1:
		return "largest"
	case from%100 >= 11 && from%100 <= 13 || suffix == "":
		suffix = "th"
	}
	return fmt.Sprintf("%d%s largest", from, suffix)
}

// handoffNote says how the chains ran.
func (b *bench) handoffNote(n int, checkEvery time.Duration) {
	b.note("handoff: %d handoffs a store, chains alternating, one record a %v; each invocation's deadline %v away (inside the %v near-handoff window): owner reads its lease every %v; a successor reads it when told (memory, Redis; every %v regardless) or every %v (DynamoDB); p99 is nearest-rank (of %d, the %s)",
		n, chainRate, handoffLife, defaultNearHandoff, checkEvery, watchPoll, defaultWaitPoll, n, rankName(n, 99))
}

// observedStore records when each commit succeeded.
func observedStore(s store, commits chan time.Time) *hookStore {
	return &hookStore{store: s, after: func(call storeCall, _ lease, err error) error {
		if call.op == "commit" && err == nil {
			select {
			case commits <- time.Now():
			default:
			}
		}
		return err
	}}
}

// latest drains ch and returns its newest time after at least one arrives.
func latest(t testing.TB, ch chan time.Time, limit time.Duration) time.Time {
	t.Helper()
	var at time.Time
	select {
	case at = <-ch:
	case <-time.After(limit):
		t.Fatalf("no commit within %v", limit)
	}
	for {
		select {
		case at = <-ch:
		default:
			return at
		}
	}
}

// crashResult is one crash: how long the partition went unread, and how
// many records reached the sink twice.
type crashResult struct {
	takeover   time.Duration
	duplicates int
	lost       int
	committed  time.Duration // crash time after the last commit
}

// batonCrash: owner A is killed (writes nothing more to the store or the
// sink) half a commit interval after a commit; B starts right then, asks,
// and takes the lease by force once A's lease expired plus the skew.
func batonCrash(t testing.TB, ctx context.Context, s store, ttl, skew, commitEvery time.Duration) crashResult {
	t.Helper()
	cluster := newCluster(t, 1, "src")
	cfg := baseConfig(t, "-mode=lambda", "-brokers="+strings.Join(cluster.ListenAddrs(), ","), "-topic=src", "-sink=discard",
		"-group="+strings.ReplaceAll(testKey(t), "/", "."), "-ttl="+ttl.String(), "-skew="+skew.String(), "-commit-interval="+commitEvery.String())
	rec := newRecorder(nil)
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced, err := produceAcked(pctx, cfg.Brokers, "src", 1, chainRate, rec.acked)
	if err != nil {
		t.Fatal(err)
	}
	commits := make(chan time.Time, 100)
	fa := newFaultStore(observedStore(s, commits))
	da := benchDeps(t)
	da.store = fa
	da.wrapSink = func(inv invocation, k sink) sink { return rec.wrap(inv, crashSink{k, &fa.down}) }
	actx, crashA := context.WithCancel(ctx)
	waitA := invoke(actx, cfg, da, invocation{"src", 0, 1000, "A"}, 15*time.Minute)
	latest(t, commits, 3*commitEvery)
	last := latest(t, commits, 2*commitEvery)
	time.Sleep(time.Until(last.Add(commitEvery / 2)))
	fa.down.Store(true)
	crashA()
	crashedAt := time.Now()
	if _, err := waitA(); !errors.Is(err, errCrashed) {
		t.Fatalf("crashed A: %v", err)
	}
	db := benchDeps(t)
	db.store, db.wrapSink = s, rec.wrap
	bctx, stopB := context.WithCancel(ctx)
	waitB := invoke(bctx, cfg, db, invocation{"src", 0, 2000, "B"}, 15*time.Minute)
	waitFor(t, "B to deliver", ttl+skew+30*time.Second, func() bool { return rec.first("B") >= 0 })
	stopProducing()
	total := produced()
	waitFor(t, "B to catch up", 20*time.Second, func() bool { return rec.tally(total).Lost == 0 })
	stopB()
	if _, err := waitB(); err != nil {
		t.Fatal(err)
	}
	tl := rec.tally(total)
	return crashResult{takeover: rec.firstAt("B").Sub(rec.lastAt("A")), duplicates: tl.Duplicated, lost: tl.Lost,
		committed: crashedAt.Sub(last)}
}

// groupCrash: the same with the franz-go group consumer. A owns the
// partition, B is a second member with nothing assigned; A crashes (no
// LeaveGroup) half an autocommit interval after an autocommit, and B gets
// the partition when the broker's session timeout for A runs out.
func groupCrash(t testing.TB, ctx context.Context, session, commitEvery time.Duration) crashResult {
	t.Helper()
	cluster := newCluster(t, 1, "src")
	brokers := cluster.ListenAddrs()
	group := strings.ReplaceAll(testKey(t), "/", ".")
	rec := newRecorder(nil)
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced, err := produceAcked(pctx, brokers, "src", 1, chainRate, rec.acked)
	if err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.SessionTimeout(session), kgo.AutoCommitInterval(commitEvery), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	a := startMember(t, ctx, brokers, group, "src", "A", rec, opts...)
	defer a.crash()
	waitFor(t, "A to deliver", 20*time.Second, func() bool { return rec.first("A") >= 0 })
	bm := startMember(t, ctx, brokers, group, "src", "B", rec, opts...)
	defer bm.leave(context.Background())
	waitStable(t, ctx, brokers, group, 2)
	latest(t, a.commits, 3*commitEvery)
	last := latest(t, a.commits, 2*commitEvery)
	time.Sleep(time.Until(last.Add(commitEvery / 2)))
	a.crash()
	crashedAt := time.Now()
	waitFor(t, "B to deliver", session+2*time.Minute, func() bool { return rec.first("B") >= 0 })
	stopProducing()
	total := produced()
	waitFor(t, "B to catch up", 20*time.Second, func() bool { return rec.tally(total).Lost == 0 })
	tl := rec.tally(total)
	return crashResult{takeover: rec.firstAt("B").Sub(rec.lastAt("A")), duplicates: tl.Duplicated, lost: tl.Lost,
		committed: crashedAt.Sub(last)}
}

// waitStable waits until the group is Stable with n members.
func waitStable(t testing.TB, ctx context.Context, brokers []string, group string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, "group to be stable", 30*time.Second, func() bool {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(ctx, cl)
		return err == nil && len(resp.Groups) == 1 && resp.Groups[0].State == "Stable" && len(resp.Groups[0].Members) == n
	})
}

func (b *bench) printCrash(prefix, suffix string, r crashResult) {
	b.figure(prefix+"crash_takeover_s"+suffix, "%.1f", r.takeover.Seconds())
	b.figure(prefix+"crash_duplicates"+suffix, "%d", r.duplicates)
	if r.lost != 0 {
		b.note("%scrash%s: %d records LOST", prefix, suffix, r.lost)
	}
}

// countingStore counts the store calls a run makes: load is a read, every
// other step a (conditional) write. A step added to the store interface
// must be added here too, or it passes through uncounted.
type countingStore struct {
	hookStore
	reads, writes atomic.Int64
}

func newCountingStore(s store) *countingStore {
	c := &countingStore{}
	c.hookStore = hookStore{store: s, before: func(_ context.Context, call storeCall) error {
		if call.op == "load" {
			c.reads.Add(1)
		} else {
			c.writes.Add(1)
		}
		return nil
	}}
	return c
}

func (c *countingStore) counts() (int64, int64) { return c.reads.Load(), c.writes.Load() }

// lambdaMemoryMiB is the function's memory in the store section's cost:
// the Lambda schedule and the prices are in cost.go.
const lambdaMemoryMiB = 128

// perMinute counts cs's reads and writes a minute from one of the owner's
// commits to the first one at least least later, so that the window holds
// whole commit intervals.
func perMinute(cs *countingStore, commits chan time.Time, least time.Duration) (reads, writes float64, err error) {
	t0, err := nextCommit(commits)
	if err != nil {
		return 0, 0, err
	}
	r0, w0 := cs.counts()
	time.Sleep(time.Until(t0.Add(least - time.Second)))
	t1 := t0
	for t1.Sub(t0) < least-time.Second/2 {
		if t1, err = nextCommit(commits); err != nil {
			return 0, 0, err
		}
	}
	r1, w1 := cs.counts()
	span := t1.Sub(t0).Minutes()
	return float64(r1-r0) / span, float64(w1-w0) / span, nil
}

// nextCommit waits for a commit after any already reported.
func nextCommit(commits chan time.Time) (time.Time, error) {
	for len(commits) > 0 {
		<-commits
	}
	select {
	case at := <-commits:
		return at, nil
	case <-time.After(3 * lambdaCommitEvery): // the longest commit interval measured
		return time.Time{}, errors.New("no commit within three commit intervals")
	}
}

// storeOps measures the lease store calls of one partition with every
// default, in the three parts of a Lambda schedule's cycle: owning far from
// the deadline, owning inside the near-handoff window, and one handoff; and
// prints the per-minute averages over a cycle and the month's cost.
func (b *bench) storeOps(t *testing.T, s store) {
	// -quick measures at process mode's shorter lease, whose commits come
	// three times as often, and scales the owner's writes like the full
	// run scales them the other way: a smoke run, not a measurement.
	ttl := pick(b, defaultTTL, lambdaTTL)
	every := ttl / commitsPerTTL
	far, near := pick(b, every, time.Minute), pick(b, every, 30*time.Second)
	cluster := newCluster(t, 2, "ops")
	brokers := cluster.ListenAddrs()
	cfg := baseConfig(t, "-mode=lambda", "-brokers="+strings.Join(brokers, ","), "-topic=ops", "-sink=discard",
		"-group="+strings.ReplaceAll(testKey(t), "/", "."), "-ttl="+ttl.String())
	pctx, stopProducing := context.WithCancel(b.ctx)
	defer stopProducing()
	rec := newRecorder(nil)
	if _, err := produceAcked(pctx, brokers, "ops", 2, chainRate, rec.acked); err != nil {
		t.Fatal(err)
	}
	run := func(p int32, owner string, tick int64, life time.Duration) (*countingStore, chan time.Time, func() (outcome, error), func()) {
		commits := make(chan time.Time, 100)
		cs := newCountingStore(observedStore(s, commits))
		d := benchDeps(t)
		d.store, d.wrapSink = cs, rec.wrap
		ctx, cancel := context.WithCancel(b.ctx)
		return cs, commits, invoke(ctx, cfg, d, invocation{"ops", p, tick, owner}, life), cancel
	}
	// Partition 0: an owner whose deadline is 15 minutes away.
	farStore, farCommits, farWait, farStop := run(0, "far", 1000, lambdaTimeout)
	// Partition 1: an owner inside the last 90 s, then its successor.
	nearStore, nearCommits, nearWait, nearStop := run(1, "near", 1000, defaultNearHandoff)
	defer nearStop()
	var farR, farW float64
	var farErr error
	farDone := make(chan struct{})
	go func() {
		defer close(farDone)
		farR, farW, farErr = perMinute(farStore, farCommits, far)
	}()
	nearR, nearW, err := perMinute(nearStore, nearCommits, near)
	if err != nil {
		t.Fatal(err)
	}
	nr1, nw1 := nearStore.counts()
	succStore, _, succWait, succStop := run(1, "next", 2000, lambdaTimeout)
	defer succStop()
	if out, err := nearWait(); err != nil || out.End != endHanded {
		t.Fatalf("near owner: %+v, %v; want handed over", out, err)
	}
	waitFor(t, "the successor to deliver", 20*time.Second, func() bool { return rec.first("next") >= 0 })
	nr2, nw2 := nearStore.counts()
	sr, sw := succStore.counts() // its first steps, up to owning
	<-farDone
	if farErr != nil {
		t.Fatal(farErr)
	}
	farStop()
	succStop()
	for _, wait := range []func() (outcome, error){farWait, succWait} {
		if _, err := wait(); err != nil {
			t.Fatal(err)
		}
	}
	hoR, hoW := float64(nr2-nr1+sr), float64(nw2-nw1+sw)
	// One cycle: the owner runs until its successor arrives a minute before
	// its deadline; the last (timeout - every) of the near window is spent
	// waiting for nobody, then the handoff.
	nearSpan := (defaultNearHandoff - (lambdaTimeout - lambdaEvery)).Minutes()
	cycle := lambdaEvery.Minutes()
	// The owner writes once a commit interval, so its writes owning and
	// near the deadline scale with the interval; reads (around a handoff
	// only) and the handoff's calls stay.
	writesAt := func(commitEvery time.Duration) float64 {
		scale := float64(every) / float64(commitEvery)
		return (farW*scale*(cycle-nearSpan) + nearW*scale*nearSpan + hoW) / cycle
	}
	reads := (farR*(cycle-nearSpan) + nearR*nearSpan + hoR) / cycle
	writes := writesAt(lambdaCommitEvery)
	b.note("store: measured at ttl %v, commit %v%s, from a commit to a commit: owning %.1f reads %.1f writes a minute; near the deadline %.1f reads %.1f writes a minute; a handoff %.0f reads %.0f writes (windows of at least %v and %v)",
		ttl, every, pick(b, " (-quick; the writes are scaled to Lambda's default lease)", " (Lambda's defaults)"), farR, farW, nearR, nearW, hoR, hoW, far, near)
	b.note("store: a cycle is a %v function started every %v: %.1f min owning far from the deadline, %.1f min in the near-handoff window, one handoff; process mode is the first part only",
		lambdaTimeout, lambdaEvery, cycle-nearSpan, nearSpan)
	b.figure("store_reads_per_min", "%.1f", reads)
	b.figure("store_writes_per_min", "%.1f", writes)

	b.reads, b.writes, b.processWrites = reads, writes, writesAt(defaultCommitEvery)

	lambdaUSD, gbSeconds, invocations := lambdaMonthUSD(lambdaMemoryMiB)
	storeUSD := storeMonthUSD(reads, writes)
	b.note("cost: Lambda %d MB arm64 all month $%.3f (%.0f GB-s, %.0f invocations), DynamoDB on-demand $%.3f; us-east-1 prices as of %s",
		lambdaMemoryMiB, lambdaUSD, gbSeconds, invocations, storeUSD, pricesDate)
	b.figure("cost_per_partition_month_usd", "%.2f", lambdaUSD+storeUSD)
}

// goBuild builds the package in dir into out with the flags of the Lambda
// zip (bootstrap.sh zip), for this machine's architecture.
func goBuild(t testing.TB, dir, out string, tags string) {
	t.Helper()
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s: %v\n%s", dir, err, msg)
	}
}

// helloSources are the two hello worlds baton's start is measured against:
// the Lambda one (aws-lambda-go's documented handler, which every Go
// function has) and an empty program.
var helloSources = map[string]string{
	"lambda": "package main\n\nimport (\n\t\"context\"\n\n\t\"github.com/aws/aws-lambda-go/lambda\"\n)\n\n" +
		"func main() {\n\tlambda.Start(func(context.Context) (string, error) { return \"hello\", nil })\n}\n",
	"empty": "package main\n\nfunc main() {}\n",
}

// buildHello builds one of helloSources like the zip, in a module that
// requires what baton's does (so aws-lambda-go at baton's version, from
// the module cache).
func buildHello(t testing.TB, kind string) string {
	t.Helper()
	dir := t.TempDir()
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	mod = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(mod, []byte("module hello"))
	for name, text := range map[string][]byte{"go.mod": mod, "go.sum": sum, "main.go": []byte(helloSources[kind])} {
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "hello")
	goBuild(t, dir, out, "lambda.norpc")
	return out
}

// vmHWM is a running process's peak resident set (VmHWM), in bytes. The
// rusage of a child that ended is no use here: Go starts children with
// CLONE_VM, and Linux counts the parent's peak, kfake's gigabyte and all,
// into the child's ru_maxrss at exec.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kib * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// initTimes starts the baton binary and a Lambda hello world n times each,
// alternately, both against a stand-in Runtime API: each is ready when it
// asks for its first event (for baton: config read, the store client made,
// the handler registered). An empty program, from exec to exit, is timed
// beside them for scale.
func (b *bench) initTimes(t *testing.T, bin string, env []string, n int) {
	hello, empty := buildHello(t, "lambda"), buildHello(t, "empty")
	ready := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/runtime/invocation/next") {
			http.NotFound(w, r)
			return
		}
		select {
		case ready <- time.Now():
		default:
		}
		<-r.Context().Done() // until the process is killed
	}))
	defer srv.Close()
	env = append(env, "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(srv.URL, "http://"))
	untilReady := func(bin string) time.Duration {
		var stderr strings.Builder
		cmd := exec.Command(bin)
		cmd.Env, cmd.Stderr = env, &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		select {
		case at := <-ready:
			return at.Sub(start)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not reach the Runtime API within 10 s; stderr:\n%s", bin, stderr.String())
			return 0
		}
	}
	var batonT, helloT, emptyT []time.Duration
	for range n {
		start := time.Now()
		if err := exec.Command(empty).Run(); err != nil {
			t.Fatal(err)
		}
		emptyT = append(emptyT, time.Since(start))
		helloT = append(helloT, untilReady(hello))
		batonT = append(batonT, untilReady(bin))
	}
	b.note("init: p50 of %d starts each, alternating; baton and a Lambda hello world (lambda.Start with a handler returning \"hello\") from exec to their first GET /runtime/invocation/next; the empty program from exec to exit; all built like the zip (-tags lambda.norpc -trimpath -ldflags='-s -w', CGO_ENABLED=0)", n)
	b.figure("init_ms", "%s", ms(median(batonT)))
	b.figure("hello_init_ms", "%s", ms(median(helloT)))
	b.figure("init_ratio", "%.2f", float64(median(batonT))/float64(median(helloT)))
	b.figure("empty_init_ms", "%s", ms(median(emptyT)))
	b.initTrace(t, bin, env)
}

// initTrace runs baton a few times with GODEBUG=inittrace=1 and notes
// when main starts and what the package initializers cost, by module
// (medians): what baton's start spends before its own code runs.
func (b *bench) initTrace(t *testing.T, bin string, env []string) {
	const runs = 5
	ready := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ready <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	var mainAt, totals []time.Duration
	byModule := map[string][]time.Duration{}
	packages := 0
	for range runs {
		var stderr strings.Builder
		cmd := exec.Command(bin)
		cmd.Env = append(slices.Clone(env), "GODEBUG=inittrace=1", "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(srv.URL, "http://"))
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
		}
		cmd.Process.Kill()
		cmd.Wait()
		// init github.com/x/y @1.234 ms, 0.05 ms clock, 100 bytes, 2 allocs
		mods := map[string]time.Duration{}
		var total, last time.Duration
		packages = 0
		for _, line := range strings.Split(stderr.String(), "\n") {
			var pkg string
			var at, clock float64
			if _, err := fmt.Sscanf(line, "init %s @%f ms, %f ms clock", &pkg, &at, &clock); err != nil {
				continue
			}
			packages++
			d := time.Duration(clock * float64(time.Millisecond))
			total += d
			last = max(last, time.Duration((at+clock)*float64(time.Millisecond)))
			mods[initModule(pkg)] += d
		}
		for m, d := range mods {
			byModule[m] = append(byModule[m], d)
		}
		mainAt, totals = append(mainAt, last), append(totals, total)
	}
	mods := slices.Collect(maps.Keys(byModule))
	slices.SortFunc(mods, func(x, y string) int { return cmp.Compare(median(byModule[y]), median(byModule[x])) })
	var top []string
	for _, m := range mods[:min(8, len(mods))] {
		top = append(top, fmt.Sprintf("%s %s", m, ms2(median(byModule[m]))))
	}
	b.note("init: traced (GODEBUG=inittrace=1, which slows it; medians of %d): main starts %s ms after the runtime does; %d package initializers take %s ms; by module (ms): %s",
		runs, ms2(median(mainAt)), packages, ms2(median(totals)), strings.Join(top, ", "))
}

// ms2 is a duration as milliseconds with two decimals.
func ms2(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// initModule names the part of the dependency tree a package belongs to.
func initModule(pkg string) string {
	for _, prefix := range []string{"github.com/aws/aws-sdk-go-v2/service/", "github.com/twmb/franz-go/pkg/", "github.com/aws/aws-sdk-go-v2/", "github.com/", "golang.org/x/"} {
		if rest, ok := strings.CutPrefix(pkg, prefix); ok {
			return prefix + strings.Split(rest, "/")[0]
		}
	}
	if !strings.Contains(strings.Split(pkg, "/")[0], ".") {
		return "std"
	}
	return pkg
}
