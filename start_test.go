// start_test.go checks where a run starts when the lease record has no
// offset, and that the start it resolves outlives a crash.

package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestStart_latest_crash_before_first_commit_loses_nothing: -start latest
// resolves the end of the log when neither the record nor the Kafka group
// has an offset, and commits it before the first record reaches the sink.
// An owner that crashes before its first commit interval leaves it in the
// record: the next owner goes on from there, not from a new end past what
// was produced meanwhile.
func TestStart_latest_crash_before_first_commit_loses_nothing(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		r.cfg.Start = startLatest
		r.cfg.CommitEvery = time.Second // A crashes long before its first commit interval ends
		// A crashed process commits nothing to the Kafka group either (the
		// harness's crash stops only A's store and sink).
		r.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.GroupAuthorizationFailed, Count: -1})
		produced, _ := flowing(t, r.ctx, r.cfg, 1, 3*time.Second)
		left := r.crash(t, 0)
		from := r.rec.first("A")
		if left.Offset != from {
			t.Errorf("A crashed leaving offset %d in the record; its first write was offset %d", left.Offset, from)
		}
		db, _ := testDeps(t, r.s, r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		total := produced()[0]
		var tl tally
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			tl = tally{}
			if tl.add(sinkOffsets(r.rec, 0), total, func(o int64) bool { return o < from }); tl.Lost == 0 {
				break
			}
		}
		stopB()
		bo, err := waitB()
		wantEnd(t, "B", bo, err, endReleased)
		if tl.Lost != 0 || tl.Reordered != 0 || bo.From != from {
			t.Fatalf("sink %+v, counting from A's start %d; B started at %d", tl, from, bo.From)
		}
		t.Logf("%s: A started at %d, wrote %d and crashed; B went on from %d to %d", b.name, from, r.rec.count("A"), bo.From, total)
	})
}

// TestStart_latest_reads_nothing_until_committed: while the commit of the
// start -start latest resolved fails, the owner reads nothing; once one
// lands it goes on from that start.
func TestStart_latest_reads_nothing_until_committed(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		r.cfg.Start = startLatest
		mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
		var fail atomic.Bool
		fail.Store(true)
		failing := &hookStore{store: r.s, before: func(_ context.Context, call storeCall) error {
			if call.op == "commit" && fail.Load() {
				return errLost
			}
			return nil
		}}
		d, _ := testDeps(t, failing, r.rec)
		stop, wait := r.start(d, 1000, "A")
		r.waitLease(t, "A to own", func(l lease) bool { return l.Owner == "A" })
		mustProduce(t, r.cfg.Brokers, numbered(10, 20)...)
		time.Sleep(3 * r.cfg.CommitEvery)
		if n := r.rec.count("A"); n != 0 {
			t.Fatalf("A wrote %d records while the commit of its start failed", n)
		}
		fail.Store(false)
		waitFor(t, "A to write what came after its start", 5*time.Second, func() bool { return r.rec.count("A") == 20 })
		stop()
		a, err := wait()
		if err != nil || a.From != 10 || r.rec.first("A") != 10 {
			t.Fatalf("A: %+v, %v, first write %d; want a start at 10", a, err, r.rec.first("A"))
		}
	})
}
