package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnConfig is testConfig with the exactly-once sink to topic out.
func txnConfig(t testing.TB, brokers []string) *config {
	c := testConfig(t, brokers, "src")
	c.Sink, c.SinkScheme, c.SinkTopic = "kafka+txn://out", "kafka+txn", "out"
	return c
}

// sinkReader reads a sink topic as a consumer downstream of baton would.
// The test producers number records per partition from 0, so a record's
// value is its source offset.
type sinkReader struct {
	cl  *kgo.Client
	rec *recorder
}

func newSinkReader(t testing.TB, brokers []string, topic string, committed bool) *sinkReader {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.DisableFetchSessions()} // franz-go v1.22.3's Close races an in-flight fetch's session update
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	must(t, err)
	t.Cleanup(cl.Close)
	return &sinkReader{cl: cl, rec: newRecorder(nil)}
}

// tally reads what arrived since the last call, until the topic has been
// quiet for quiet, and counts it against produced.
func (s *sinkReader) tally(ctx context.Context, produced []int64, quiet time.Duration) tally {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, quiet)
		fs := s.cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			off, _ := strconv.ParseInt(string(r.Value), 10, 64)
			s.rec.note("sink", &kgo.Record{Partition: r.Partition, Offset: off})
		})
		if n == 0 {
			break
		}
	}
	return s.rec.tally(produced)
}

// TestTxn_takeover_after_commit_no_duplicates: the owner dies after its
// transaction committed and before the lease recorded the offset. With the
// at-least-once sink the next owner reads those records again; with
// kafka+txn it starts where the committed transaction ended.
func TestTxn_takeover_after_commit_no_duplicates(t *testing.T) {
	for _, sinkTo := range []string{"kafka", "kafka+txn"} {
		for _, b := range backends(t) {
			t.Run(sinkTo+"/"+b.name, func(t *testing.T) {
				t.Parallel()
				cluster := newCluster(t, 1, "src", "out")
				cfg := txnConfig(t, cluster.ListenAddrs())
				cfg.Sink, cfg.SinkScheme = sinkTo+"://out", sinkTo
				ctx := ctxT(t)
				produced, err := produce(within(t, ctx, 3*time.Second), cfg.Brokers, "src", 1, time.Millisecond) // records still come at A's second commit, however slow the machine
				must(t, err)
				obs := newObserver(b.open(t))
				actx, crash := context.WithCancel(ctx)
				h := &chaosHarness{cfg: cfg, plan: &runPlan{}}
				// A's second lease commit never lands: the transaction before it did.
				cs := &chaosStore{inner: obs, plan: plan{crashAt: "commit", crashN: 2}, rng: rand.New(rand.NewPCG(1, 2)), h: h, crash: crash}
				d, _ := testDeps(t, settled{cs}, nil)
				a, err := runInvocation(actx, cfg, d, invocation{"src", 0, 1000, "A"})
				crash()
				if h.crashes.Load() != 1 {
					t.Fatalf("A: %+v, %v; want a crash at its second commit", a, err)
				}
				l, err := obs.load(ctx, leaseKey(cfg.Group, "src", 0))
				must(t, err)
				d, _ = testDeps(t, obs, nil)
				total := produced()
				bo, err := runInvocation(within(t, ctx, 6*time.Second), cfg, d, invocation{"src", 0, 2000, "B"})
				if err != nil || bo.End != endReleased {
					t.Fatalf("B: %+v, %v; want released at its deadline", bo, err)
				}
				tl := newSinkReader(t, cfg.Brokers, "out", true).tally(ctx, total, time.Second)
				t.Logf("lease offset after the crash %d; B started at %d; sink: %+v", l.Offset, bo.From, tl)
				if tl.Lost != 0 || tl.Reordered != 0 {
					t.Fatalf("sink: %+v; want nothing lost or reordered", tl)
				}
				if sinkTo == "kafka" && (tl.Duplicated == 0 || bo.From != l.Offset) {
					t.Fatalf("at-least-once: B from %d, lease at %d, %d duplicates; want B from the lease's offset and duplicates", bo.From, l.Offset, tl.Duplicated)
				}
				if sinkTo == "kafka+txn" && (tl.Duplicated != 0 || bo.From <= l.Offset) {
					t.Fatalf("exactly once: B from %d, lease at %d, %d duplicates; want B past the lease's offset and no duplicates", bo.From, l.Offset, tl.Duplicated)
				}
			})
		}
	}
}

// within is ctx ending after d at most.
func within(t testing.TB, ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	t.Cleanup(cancel)
	return ctx
}

// TestTxn_aborted_invisible: the broker fails every other transaction
// commit (UNKNOWN_SERVER_ERROR: outcome unknown, so baton aborts and reads
// the records again in a new transaction). A read_committed consumer of the
// sink sees every record once; a read_uncommitted one sees the aborted
// records too.
func TestTxn_aborted_invisible(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cluster := newCluster(t, 2, "src", "out")
			cfg := txnConfig(t, cluster.ListenAddrs())
			var commits, aborted atomic.Int64
			cluster.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				req := kr.(*kmsg.EndTxnRequest)
				if !req.Commit || commits.Add(1)%2 != 0 {
					return nil, nil, false
				}
				aborted.Add(1)
				resp := req.ResponseKind().(*kmsg.EndTxnResponse)
				resp.ErrorCode = kerr.UnknownServerError.Code
				return resp, nil, true
			})
			ctx := ctxT(t)
			pctx, stop := context.WithTimeout(ctx, 3*time.Second)
			defer stop()
			produced, err := produce(pctx, cfg.Brokers, "src", 2, time.Millisecond)
			must(t, err)
			committed := newSinkReader(t, cfg.Brokers, "out", true)
			d, _ := testDeps(t, b.open(t), nil)
			var total []int64
			var reread int
			for n := 0; total == nil || committed.tally(ctx, total, 300*time.Millisecond).Lost > 0; n++ {
				if n == 20 {
					t.Fatalf("not delivered after 20 invocations a partition: %+v", committed.tally(ctx, total, time.Second))
				}
				if pctx.Err() != nil {
					total = produced()
				}
				for p := range int32(2) {
					out, err := runInvocation(within(t, ctx, 700*time.Millisecond), cfg, d, invocation{"src", p, int64(1000 + n), fmt.Sprintf("n%d-p%d", n, p)})
					t.Logf("%+v %v", out, err)
					reread += out.Rewinds // read again after an abort, in the same run
				}
			}
			tc := committed.tally(ctx, total, time.Second)
			tu := newSinkReader(t, cfg.Brokers, "out", false).tally(ctx, total, time.Second)
			t.Logf("aborted commits %d; read_committed %+v; read_uncommitted %+v", aborted.Load(), tc, tu)
			if aborted.Load() < 2 || reread == 0 {
				t.Fatalf("%d commits failed, %d runs read records again; want at least 2, and some: an owner reads an aborted transaction again itself", aborted.Load(), reread)
			}
			if tc.Lost != 0 || tc.Duplicated != 0 || tc.Reordered != 0 {
				t.Fatalf("read_committed: %+v; want every record once, in order", tc)
			}
			if tu.Duplicated == 0 {
				t.Fatalf("read_uncommitted: %+v; want the aborted records there too", tu)
			}
		})
	}
}

// TestTxn_commit_answer_lost: the broker commits a transaction but its
// answer comes after the owner gave up waiting. The owner aborts (a no-op
// at the broker, whose transaction is done), reads the group's offset back,
// and goes on from there: nothing twice, nothing lost.
func TestTxn_commit_answer_lost(t *testing.T) {
	var commits, slowed, inits atomic.Int64
	r := newTxnRig(t, newMemStore(), 2*time.Second, func(cluster *kfake.Cluster, cfg *config) {
		cfg.KafkaTimeout = time.Second
		countInits(cluster, &inits)
		cluster.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			if kr.(*kmsg.EndTxnRequest).Commit && commits.Add(1) == 2 {
				slowed.Add(1)
				// Answered after the owner's timeout; the commit still happens.
				cluster.SleepControl(func() { time.Sleep(1500 * time.Millisecond) })
			}
			return nil, nil, false
		})
	})
	// Stopped once everything is read: after the slow commit the owner's
	// deadline margin is three times that commit, longer than a short life.
	r.stopA()
	out, err := r.waitA()
	tl := newSinkReader(t, r.cfg.Brokers, "out", true).tally(r.ctx, []int64{r.total}, time.Second)
	t.Logf("%+v %v; read_committed %+v", out, err, tl)
	// At least two InitProducerIDs: A's first, and the one that aborts after the
	// lost answer (franz-go re-initialises the producer ID to abort).
	if slowed.Load() != 1 || inits.Load() < 2 || out.End != endReleased {
		t.Fatalf("slowed %d commits, %d producer id inits; A: %+v, %v; want one slowed, at least two inits, A released", slowed.Load(), inits.Load(), out, err)
	}
	if tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 {
		t.Fatalf("read_committed: %+v; want every record once, in order", tl)
	}
}

// countInits counts the cluster's InitProducerID requests in n.
func countInits(cluster *kfake.Cluster, n *atomic.Int64) {
	cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
}

// TestTxn_commit_turned_abort: a commit that ends as an abort while the
// client is told it succeeded, as franz-go does with a transaction in which
// it saw no produce succeed (it does not know of the offset baton adds by
// hand). The owner reads the group's offset back, finds the commit did not
// land, and writes those records again: nothing lost, nothing twice.
func TestTxn_commit_turned_abort(t *testing.T) {
	var commits, turned atomic.Int64
	r := newTxnRig(t, newMemStore(), 2*time.Second, func(cluster *kfake.Cluster, cfg *config) {
		cluster.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			if req := kr.(*kmsg.EndTxnRequest); req.Commit && commits.Add(1) == 2 {
				turned.Add(1)
				req.Commit = false // the broker aborts; the answer is a success all the same
			}
			return nil, nil, false
		})
	})
	r.stopA()
	out, err := r.waitA()
	tl := newSinkReader(t, r.cfg.Brokers, "out", true).tally(r.ctx, []int64{r.total}, time.Second)
	t.Logf("%+v %v; read_committed %+v", out, err, tl)
	if turned.Load() != 1 || out.Rewinds < 1 {
		t.Fatalf("%d commits turned into aborts, A rewound %d times; want one turned, and A to read those records again", turned.Load(), out.Rewinds)
	}
	if tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 {
		t.Fatalf("read_committed: %+v; want every record once, in order", tl)
	}
}

// txnRig is an owner A reading some seconds' worth of records into
// kafka+txn, everything committed, and the operator's ctl beside it.
type txnRig struct {
	t     *testing.T
	ctx   context.Context
	cfg   *config
	d     *deps
	total int64
	stopA context.CancelFunc
	waitA func() (outcome, error)
}

// newTxnRig produces for the given time while A reads, with setup's
// changes to the cluster and config made first.
func newTxnRig(t *testing.T, s store, producing time.Duration, setup func(*kfake.Cluster, *config)) *txnRig {
	cluster := newCluster(t, 1, "src", "out")
	r := &txnRig{t: t, ctx: ctxT(t), cfg: txnConfig(t, cluster.ListenAddrs())}
	if setup != nil {
		setup(cluster, r.cfg)
	}
	produced, err := produce(within(t, r.ctx, producing), r.cfg.Brokers, "src", 1, time.Millisecond)
	must(t, err)
	r.d, _ = testDeps(t, s, nil)
	octx, stop := context.WithCancel(r.ctx)
	r.stopA, r.waitA = stop, invoke(octx, r.cfg, r.d, invocation{"src", 0, 1000, "A"}, time.Minute)
	r.total = produced()[0] // A reads as they come: a commit falls while records still arrive
	waitFor(t, "A to commit everything", 10*time.Second, func() bool { return r.lease().Offset == r.total })
	return r
}

func (r *txnRig) lease() lease {
	l, _ := r.d.store.load(r.ctx, leaseKey(r.cfg.Group, "src", 0))
	return l
}

func (r *txnRig) ctl(args ...string) {
	r.t.Helper()
	a, _, err := parseCtl(args)
	if err == nil {
		err = runCtl(r.ctx, r.cfg, r.d, a, io.Discard)
	}
	if err != nil {
		r.t.Fatalf("ctl %v: %v", args, err)
	}
}

// TestTxn_seek_back_survives_handoff: an operator's seek backwards also
// moves the group's offset, so the next owner, which starts at the greater
// of the group's and the lease's offsets, does not skip forward again.
func TestTxn_seek_back_survives_handoff(t *testing.T) {
	r := newTxnRig(t, newMemStore(), time.Second, nil)
	r.ctl("pause", "-partition", "0")
	r.ctl("seek", "-partition", "0", "-offset", "100")
	waitFor(t, "the seek to be applied", 5*time.Second, func() bool { l := r.lease(); return l.Seek == noOffset && l.Offset == 100 })
	r.stopA()
	if a, err := r.waitA(); err != nil || a.To != 100 {
		t.Fatalf("A: %+v, %v; want released at 100", a, err)
	}
	r.ctl("resume", "-partition", "0")
	b, err := runInvocation(within(t, r.ctx, 3*time.Second), r.cfg, r.d, invocation{"src", 0, 2000, "B"})
	if err != nil || b.From != 100 || b.To != r.total {
		t.Fatalf("B: %+v, %v; want from 100 to %d", b, err, r.total)
	}
}

// TestTxn_seek_applied_once: the commit that records an operator's seek
// fails; the owner goes on reading from the seek and records it at the next
// commit, without seeking a second time. The records from the seek on
// reach a read_committed reader twice in all (once before the seek, once
// after), not three times.
func TestTxn_seek_applied_once(t *testing.T) {
	var failed atomic.Bool
	s := &hookStore{store: newMemStore(), before: func(_ context.Context, call storeCall) error {
		// The first commit that applies a seek fails.
		if call.op == "commit" && call.l.Seek != noOffset && !failed.Swap(true) {
			return errInjected
		}
		return nil
	}}
	r := newTxnRig(t, s, time.Second, nil)
	r.ctl("seek", "-partition", "0", "-offset", "100")
	waitFor(t, "the seek to be recorded", 5*time.Second, func() bool { l := r.lease(); return l.Seek == noOffset && l.Offset == r.total })
	r.stopA()
	if out, err := r.waitA(); err != nil || !failed.Load() {
		t.Fatalf("A: %+v, %v, seek commit failed: %v", out, err, failed.Load())
	}
	sink := newSinkReader(t, r.cfg.Brokers, "out", true)
	sink.tally(r.ctx, []int64{r.total}, time.Second)
	copies := map[int64]int{}
	for _, w := range sink.rec.writes[0] {
		copies[w.Offset]++
	}
	for o := range r.total {
		if want := map[bool]int{false: 1, true: 2}[o >= 100]; copies[o] != want {
			t.Fatalf("offset %d read %d times by read_committed; want %d (once, and again from the seek to 100)", o, copies[o], want)
		}
	}
}

// TestTxn_lost_record_old_owner_commits_nothing_more: A's lease record is
// lost (deleted behind the store's back) and B takes the partition: B's
// InitProducerID fences A at the broker. A's client may then initialize
// its producer again (franz-go does, to abort after a fenced produce or a
// commit whose answer was lost), and a broker that takes an old epoch back
// (kfake does) lets that fence B in turn. A must commit no transaction
// under such a producer until the store confirms it still owns the
// partition: a read_committed reader sees every record once.
func TestTxn_lost_record_old_owner_commits_nothing_more(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, lose := losable(t, b)
			lostRecordOldOwner(t, s, lose)
		})
	}
}

func lostRecordOldOwner(t *testing.T, s store, lose func(key string)) {
	var inits atomic.Int64
	var hold, cut atomic.Bool
	held := make(chan struct{})
	cluster := newCluster(t, 1, "src", "out")
	countInits(cluster, &inits)
	cluster.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !kr.(*kmsg.EndTxnRequest).Commit || !hold.CompareAndSwap(true, false) {
			return nil, nil, false
		}
		// A's first commit after its record was lost waits for B's
		// InitProducerID, and fails without saying how it ended.
		close(held)
		cluster.SleepControl(func() {
			for inits.Load() < 2 {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
		})
		cut.Store(true)
		resp := kr.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code // the outcome is unknown: franz-go aborts by initializing again
		return resp, nil, true
	})
	cfg := txnConfig(t, cluster.ListenAddrs())
	ctx := ctxT(t)
	produced, _ := flowing(t, ctx, cfg, 1, 3*time.Second)
	d, _ := testDeps(t, s, nil)
	actx, stopA := context.WithCancel(ctx)
	waitA := invoke(actx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
	key := leaseKey(cfg.Group, "src", 0)
	waitFor(t, "A to commit", 5*time.Second, func() bool { l, _ := s.load(ctx, key); return l.Offset > 100 })
	lose(key)
	hold.Store(true)
	<-held
	bctx, stopB := context.WithCancel(ctx)
	waitB := invoke(bctx, cfg, d, invocation{"src", 0, 2000, "B"}, time.Minute)
	total := produced()
	stopA()
	stopB()
	a, aerr := waitA()
	b, berr := waitB()
	// A's InitProducerID fenced B at the broker, and B may have given up:
	// C reads what is left.
	c, cerr := runInvocation(within(t, ctx, 5*time.Second), cfg, d, invocation{"src", 0, 3000, "C"})
	tl := newSinkReader(t, cfg.Brokers, "out", true).tally(ctx, total, time.Second)
	t.Logf("A %+v %v\nB %+v %v\nC %+v %v\n%d producer inits; read_committed %+v", a, aerr, b, berr, c, cerr, inits.Load(), tl)
	if !cut.Load() || inits.Load() < 3 {
		t.Fatalf("A's commit answer cut %v, %d producer inits; want it cut after B's init, and A's client to initialize again", cut.Load(), inits.Load())
	}
	if c.From != b.To {
		t.Fatalf("C started at %d, where the last committed transaction ended; B's last commit was at %d: A committed after B took the partition", c.From, b.To)
	}
	if tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 {
		t.Fatalf("read_committed: %+v; want every record once, in order", tl)
	}
}
