// helpers_test.go is the tests' one rig: the backends, the Kafka cluster, the
// config and deps of a test, running an invocation, and the one store
// wrapper that injects faults or watches the calls.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

// A backend is what the suite needs to know of a store beyond its contract.
type backend struct {
	name string
	open func(t testing.TB) store
	// corrupt edits a record by hand: it deletes field, or sets it to a
	// value of the wrong type. nil when the backend holds typed records.
	corrupt func(t testing.TB, key, field string, remove bool)
	// unreachable opens the store against an endpoint nobody listens on;
	// missing against a table or database that does not exist (nil if the
	// backend has no such thing). want is what the error must name.
	unreachable func(t testing.TB) (s store, want string)
	missing     func(t testing.TB) (s store, want string)
	// remove deletes key's record from s, one that open gave, behind the
	// store's back, as a person or a restore would; what a backend keeps
	// beside the record (an epoch counter) stays.
	remove func(t testing.TB, s store, key string)
}

func memBackend() backend {
	return backend{name: "memory", open: func(testing.TB) store { return newMemStore() },
		remove: func(_ testing.TB, s store, key string) { s.(*memStore).drop(key) }}
}

// needServer returns the address in env, or skips (fails under
// BATON_TEST_STRICT=1) with a message saying how to get one.
func needServer(t testing.TB, env string) string {
	t.Helper()
	addr := os.Getenv(env)
	if addr == "" {
		msg := fmt.Sprintf("%s is not set: run ./bootstrap.sh test, or ./bootstrap.sh services and export what it prints", env)
		if os.Getenv("BATON_TEST_STRICT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return addr
}

// testKey is a key of the test's own, so tests can share a server.
func testKey(t testing.TB) string {
	return fmt.Sprintf("test/%s/%d-%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano(), keySeq.Add(1))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func in(d time.Duration) int64 { return time.Now().Add(d).UnixMilli() }

func mustTake(t *testing.T, s store, key string, seen lease, c claim) lease {
	t.Helper()
	l, err := s.take(ctxT(t), key, seen, c, in(time.Minute))
	if err != nil {
		t.Fatalf("take %s as %+v: %v", key, c, err)
	}
	return l
}

func mustLoad(t *testing.T, s store, key string) lease {
	t.Helper()
	l, err := s.load(ctxT(t), key)
	if err != nil {
		t.Fatalf("load %s: %v", key, err)
	}
	return l
}

// mustAsk asks for key's lease at epoch as c, for a minute.
func mustAsk(t *testing.T, s store, key string, epoch int64, c claim) {
	t.Helper()
	if err := s.ask(ctxT(t), key, epoch, c, in(time.Minute)); err != nil {
		t.Fatalf("ask %s at epoch %d as %+v: %v", key, epoch, c, err)
	}
}

func mustCommit(t *testing.T, s store, l lease, offset, exp int64) lease {
	t.Helper()
	got, err := s.commit(ctxT(t), l, offset, exp)
	if err != nil {
		t.Fatalf("commit %+v at %d: %v", l, offset, err)
	}
	return got
}

func mustRelease(t *testing.T, s store, l lease, offset int64) {
	t.Helper()
	if err := s.release(ctxT(t), l, offset); err != nil {
		t.Fatalf("release %+v at %d: %v", l, offset, err)
	}
}

// wantNamed fails the test unless err is an error naming each of names.
func wantNamed(t *testing.T, err error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one naming %q", names)
	}
	for _, w := range names {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
}

// errOf is the error of a call that gives a value too.
func errOf[T any](_ T, err error) error { return err }

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

var errLost = errors.New("injected: i/o timeout")

// backends is the memory store and the compiled backend, for scenarios.
func backends(t testing.TB) []backend { return []backend{memBackend(), compiledBackend(t)} }

// chaosBackends are the stores a chaos harness runs on: the memory store's
// runs are the same in both builds, so the Redis build leaves them to the
// default build's (CI runs both builds, and the runs are its longest).
func chaosBackends(t testing.TB) []backend {
	bs := backends(t)
	if bs[1].name == "redis" {
		return bs[1:]
	}
	return bs
}

// newCluster starts kfake on loopback with the topics, closed at cleanup.
func newCluster(t testing.TB, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testConfig is a config with timings short enough for tests, and a lease
// group of the test's own.
func testConfig(t testing.TB, brokers []string, topic string) *config {
	c := &config{Mode: "lambda", Brokers: brokers, Topic: topic, Group: strings.ReplaceAll(testKey(t), "/", "."), SinkScheme: "discard"}
	c.TTL, c.Skew, c.CommitEvery = 2*time.Second, 100*time.Millisecond, 200*time.Millisecond
	c.setTiming()
	c.NearHandoff, c.ReadEvery, c.WaitPoll = time.Hour, 20*time.Millisecond, 5*time.Millisecond
	c.MarginFloor, c.FetchWait = 200*time.Millisecond, 50*time.Millisecond
	return c
}

// countingKafka counts the Kafka clients made, to show an invocation never
// connected.
type countingKafka struct{ n atomic.Int32 }

func (c *countingKafka) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	c.n.Add(1)
	return kgo.NewClient(opts...)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BATON_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testDeps(t testing.TB, s store, rec *recorder) (*deps, *countingKafka) {
	k := &countingKafka{}
	d := &deps{store: s, kafka: k.newClient, now: time.Now, log: testLogger(t), stdout: io.Discard}
	if rec != nil {
		d.wrapSink = rec.wrap
	}
	return d, k
}

// background runs f in a goroutine; wait gives its outcome.
func background(f func() (outcome, error)) (wait func() (outcome, error)) {
	var out outcome
	var err error
	done := make(chan struct{})
	go func() { defer close(done); out, err = f() }()
	return func() (outcome, error) { <-done; return out, err }
}

// invoke runs one invocation with a deadline life away, in the background.
func invoke(ctx context.Context, cfg *config, d *deps, inv invocation, life time.Duration) (wait func() (outcome, error)) {
	return background(func() (outcome, error) {
		ictx, cancel := context.WithTimeout(ctx, life)
		defer cancel()
		return runInvocation(ictx, cfg, d, inv)
	})
}

// waitFor polls cond until it holds or the time runs out.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scan calls f on owner's writes to the sink until f returns false.
func (r *recorder) scan(owner string, f func(w write) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ws := range r.writes {
		for _, w := range ws {
			if w.Owner == owner && !f(w) {
				return
			}
		}
	}
}

// count is how many records owner wrote to the sink.
func (r *recorder) count(owner string) (n int) {
	r.scan(owner, func(write) bool { n++; return true })
	return n
}

// first is the offset of owner's first write, or -1.
func (r *recorder) first(owner string) int64 {
	o := int64(-1)
	r.scan(owner, func(w write) bool { o = w.Offset; return false })
	return o
}

func (r *recorder) firstAt(owner string) (at time.Time) {
	r.scan(owner, func(w write) bool { at = w.At; return false })
	return at
}

func (r *recorder) lastAt(owner string) (last time.Time) {
	r.scan(owner, func(w write) bool {
		if w.At.After(last) {
			last = w.At
		}
		return true
	})
	return last
}

var errCrashed = fmt.Errorf("injected: process crashed")

// A storeCall is one step a test's store wrapper sees: its name, the key,
// and the arguments that matter to the tests (the record the writer read,
// the offset it writes, the claim it makes).
type storeCall struct {
	op     string
	at     time.Time // when the step began
	key    string
	l      lease
	offset int64
	c      claim
}

// hookStore is the tests' one store wrapper. before runs ahead of each step
// (an error fails the step unperformed: a crash, a store down); after sees
// the step's answer and may replace its error (an answer lost after the
// write landed). Either may be nil.
type hookStore struct {
	store
	before func(ctx context.Context, call storeCall) error
	after  func(call storeCall, got lease, err error) error
}

var _ store = (*hookStore)(nil)

// do runs one step between the hooks.
func (h *hookStore) do(ctx context.Context, call storeCall, step func() (lease, error)) (lease, error) {
	call.at = time.Now()
	if h.before != nil {
		if err := h.before(ctx, call); err != nil {
			return lease{}, err
		}
	}
	got, err := step()
	if h.after != nil {
		err = h.after(call, got, err)
	}
	if err != nil {
		return lease{}, err
	}
	return got, nil
}

func (h *hookStore) load(ctx context.Context, key string) (lease, error) {
	return h.do(ctx, storeCall{op: "load", key: key}, func() (lease, error) { return h.store.load(ctx, key) })
}

func (h *hookStore) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	return h.do(ctx, storeCall{op: "take", key: key, l: seen, c: c}, func() (lease, error) { return h.store.take(ctx, key, seen, c, exp) })
}

func (h *hookStore) ask(ctx context.Context, key string, epoch int64, c claim, until int64) error {
	_, err := h.do(ctx, storeCall{op: "ask", key: key, l: lease{Key: key, Epoch: epoch}, c: c}, func() (lease, error) {
		return lease{}, h.store.ask(ctx, key, epoch, c, until)
	})
	return err
}

func (h *hookStore) handOver(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	return h.do(ctx, storeCall{op: "handOver", key: l.Key, l: l, offset: offset}, func() (lease, error) { return h.store.handOver(ctx, l, offset, exp) })
}

func (h *hookStore) commit(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	return h.do(ctx, storeCall{op: "commit", key: l.Key, l: l, offset: offset}, func() (lease, error) { return h.store.commit(ctx, l, offset, exp) })
}

func (h *hookStore) release(ctx context.Context, l lease, offset int64) error {
	_, err := h.do(ctx, storeCall{op: "release", key: l.Key, l: l, offset: offset}, func() (lease, error) {
		return lease{}, h.store.release(ctx, l, offset)
	})
	return err
}

func (h *hookStore) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	return h.do(ctx, storeCall{op: "control", key: l.Key, l: l, offset: seek}, func() (lease, error) { return h.store.control(ctx, l, seek, paused) })
}

func (h *hookStore) withdraw(ctx context.Context, key string, c claim) (lease, error) {
	return h.do(ctx, storeCall{op: "withdraw", key: key, c: c}, func() (lease, error) { return h.store.withdraw(ctx, key, c) })
}

func (h *hookStore) reset(ctx context.Context, l lease) (lease, error) {
	return h.do(ctx, storeCall{op: "reset", key: l.Key, l: l}, func() (lease, error) { return h.store.reset(ctx, l) })
}

// watch passes a subscription through: a wrapped store that can tell a
// waiting successor still does.
func (h *hookStore) watch(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return watchOf(ctx, h.store, key)
}

// faultStore fails or hangs a store on demand: down fails every call (a
// crashed process writes nothing more), frozen hangs every write until it
// thaws or the call's context ends (a paused owner).
type faultStore struct {
	hookStore
	down, frozen atomic.Bool
}

func newFaultStore(s store) *faultStore {
	f := &faultStore{}
	f.hookStore = hookStore{store: s, before: f.gate}
	return f
}

func (f *faultStore) gate(ctx context.Context, call storeCall) error {
	for call.op != "load" && f.frozen.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	if f.down.Load() {
		return errCrashed
	}
	return nil
}

// losing makes a store lose the answers of the writes lose picks: after
// the write landed, or before it reached the store (land false).
func losing(s store, land bool, lose func(storeCall) bool) *hookStore {
	h := &hookStore{store: s}
	h.before = func(_ context.Context, call storeCall) error {
		if !land && lose(call) {
			return errLost
		}
		return nil
	}
	h.after = func(call storeCall, _ lease, err error) error {
		if err == nil && land && lose(call) {
			return errLost
		}
		return err
	}
	return h
}

// writes picks every write: all steps but load.
func writes(call storeCall) bool { return call.op != "load" }

// flowing produces a record a millisecond to each of src's first
// partitions for d (0: until stop, or the test's end); produced waits for
// the producer and gives the counts.
func flowing(t testing.TB, ctx context.Context, cfg *config, partitions int32, d time.Duration) (produced func() []int64, stop func()) {
	t.Helper()
	pctx, stop := context.WithCancel(ctx)
	if d > 0 {
		pctx, stop = context.WithTimeout(ctx, d)
	}
	t.Cleanup(stop)
	produced, err := produce(pctx, cfg.Brokers, "src", partitions, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return produced, stop
}

// runningProcess runs process mode in the background; its error comes on
// the channel.
func runningProcess(ctx context.Context, cfg *config, d *deps) <-chan error {
	done := make(chan error, 1)
	go func() { done <- runProcess(ctx, cfg, d) }()
	return done
}

// waitDone waits up to limit for a process to end, without error.
func waitDone(t testing.TB, what string, done <-chan error, limit time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(limit):
		t.Fatalf("%s did not end within %v", what, limit)
	}
}

// eachBackend runs f as a subtest for each of backends, in parallel unless
// the test must own the process (signals, goroutine counts).
func eachBackend(t *testing.T, parallel bool, f func(t *testing.T, b backend)) {
	eachOf(t, backends(t), parallel, f)
}

// eachOf is eachBackend over bs.
func eachOf(t *testing.T, bs []backend, parallel bool, f func(t *testing.T, b backend)) {
	for _, b := range bs {
		t.Run(b.name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			f(t, b)
		})
	}
}

// A rig is one scenario on kfake: the cluster of topic src and the extra
// topics, the store, the sink's recorder, a test config and the lease key
// of src/0.
type rig struct {
	cluster *kfake.Cluster
	s       store
	rec     *recorder
	cfg     *config
	ctx     context.Context
	key     string
}

func newRig(t testing.TB, s store, partitions int32, topics ...string) *rig {
	cluster := newCluster(t, partitions, append([]string{"src"}, topics...)...)
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	return &rig{cluster: cluster, s: s, rec: newRecorder(nil), cfg: cfg, ctx: ctxT(t), key: leaseKey(cfg.Group, "src", 0)}
}

// start invokes owner on src/0 at tick; stop is its shutdown.
func (r *rig) start(d *deps, tick int64, owner string) (stop func(), wait func() (outcome, error)) {
	ctx, stop := context.WithCancel(r.ctx)
	return stop, invoke(ctx, r.cfg, d, invocation{"src", 0, tick, owner}, time.Minute)
}

// writing starts owner A at tick 1000 and waits until it wrote more than n
// records.
func (r *rig) writing(t testing.TB, d *deps, n int) (stop func(), wait func() (outcome, error)) {
	t.Helper()
	stop, wait = r.start(d, 1000, "A")
	waitFor(t, "A to write", 5*time.Second, func() bool { return r.rec.count("A") > n })
	return stop, wait
}

// drain stops the producer (if stopProducing is not nil), waits until
// every record produced reached the sink, and gives the counts produced.
func (r *rig) drain(t testing.TB, produced func() []int64, stopProducing func(), limit time.Duration) []int64 {
	t.Helper()
	if stopProducing != nil {
		stopProducing()
	}
	total := produced()
	waitFor(t, "the sink to catch up", limit, func() bool { return r.rec.tally(total).Lost == 0 })
	return total
}

// waitLease waits until src/0's lease is there and meets cond.
func (r *rig) waitLease(t testing.TB, what string, cond func(lease) bool) {
	t.Helper()
	waitFor(t, what, 15*time.Second, func() bool {
		l, err := r.s.load(r.ctx, r.key)
		return err == nil && cond(l)
	})
}

// wantOneWriter fails the test unless old's last sink write came before
// new's first: never two writers at once.
func wantOneWriter(t testing.TB, rec *recorder, old, new string) {
	t.Helper()
	if last, first := rec.lastAt(old), rec.firstAt(new); !last.Before(first) {
		t.Fatalf("%s wrote at %v, after %s's first write at %v: two writers", old, last, new, first)
	}
}

// drainGrown stops both producers of a topic that grew (the old partitions'
// and the new ones'), waits until the sink caught up with both, and gives
// what they produced.
func (r *rig) drainGrown(t testing.TB, producedOld func() []int64, stopOld func(), producedNew func() []int64, stopNew func()) []int64 {
	t.Helper()
	stopOld()
	old := producedOld()
	total := r.drain(t, producedNew, stopNew, 10*time.Second)
	for p := range old {
		total[p] += old[p]
	}
	waitFor(t, "the sink to catch up", 10*time.Second, func() bool { return r.rec.tally(total).Lost == 0 })
	return total
}

// wantEnd fails the test unless the run ended without error as end.
func wantEnd(t testing.TB, who string, out outcome, err error, end string) {
	t.Helper()
	if err != nil || out.End != end {
		t.Fatalf("%s: %+v, %v; want ended %s", who, out, err, end)
	}
}

// wantTally fails the test unless the sink lost and reordered nothing,
// duplicated at most dups records and saw handoffs handoffs (-1: any).
func wantTally(t testing.TB, tl tally, dups, handoffs int) {
	t.Helper()
	if tl.Lost != 0 || tl.Reordered != 0 || tl.Duplicated > dups || handoffs >= 0 && tl.Handoffs != handoffs {
		t.Fatalf("sink: %+v; want nothing lost or reordered, at most %d duplicates, %d handoffs (-1: any)", tl, dups, handoffs)
	}
}

// leakIgnores lets goleak pass what was running before a handler call and
// what stays between calls by design.
func leakIgnores() []goleak.Option {
	return []goleak.Option{goleak.IgnoreCurrent(),
		// The broker's side of each connection lives in the broker.
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
		// The store's idle connections are kept for the next call.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")}
}

// runTo runs owner A on src/partition until its lease holds offset, then
// shuts it down and gives its outcome.
func runTo(t *testing.T, cfg *config, d *deps, partition int32, offset int64) (outcome, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	wait := invoke(ctx, cfg, d, invocation{Topic: "src", Partition: partition, Tick: 1000, Owner: "A"}, time.Minute)
	waitCommitted(t, cfg, d, "src", partition, offset)
	cancel()
	return wait()
}
