// seek_test.go checks that an operator's seek (baton ctl seek) is applied
// once, however the commit that records it fares.

package main

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCtl_seek_applied_once_when_commit_fails: the owner's commit that
// would record a seek fails, and it hands the baton over with the seek
// still in the record; the new owner applies it, so the records from the
// seek on reach the sink once more, not twice more. When that commit landed
// and only its answer was lost, the owner learns so from its next commit
// and applies the seek itself; the new owner finds none.
func TestCtl_seek_applied_once_when_commit_fails(t *testing.T) {
	for _, tc := range []struct {
		name string
		land bool
	}{{"commit failed", false}, {"answer lost", true}} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, true, func(t *testing.T, b backend) {
				r := newRig(t, b.open(t), 1)
				const total, to = 5000, 100
				mustProduce(t, r.cfg.Brokers, numbered(0, total)...)
				var seekCommits atomic.Int32
				s := losing(r.s, tc.land, func(call storeCall) bool {
					if call.op == "commit" && call.l.Seek != noOffset {
						return seekCommits.Add(1) == 1 || !tc.land
					}
					return false
				})
				da, _ := testDeps(t, s, r.rec)
				da.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
					time.Sleep(time.Millisecond)
					return append(out, r), nil
				}
				stopA, waitA := r.start(da, 1000, "A")
				waitFor(t, "A to be mid-stream", 5*time.Second, func() bool { return r.rec.lastOffset() > 300 })
				runCtlT(t, r.ctx, r.cfg, da, "seek", "-partition", "0", "-offset", "100")
				waitFor(t, "A to commit the seek", 5*time.Second, func() bool { return seekCommits.Load() > 0 })
				if tc.land {
					waitFor(t, "A to apply the seek", 5*time.Second, func() bool { return writesOf(r.rec, to) == 2 })
				} else {
					time.Sleep(3 * r.cfg.CommitEvery) // A reads on, and tries again
				}
				db, _ := testDeps(t, r.s, r.rec)
				stopB, waitB := r.start(db, 2000, "B")
				waitFor(t, "B to read to the end", 15*time.Second, func() bool {
					last := int64(-1)
					r.rec.scan("B", func(w write) bool { last = w.Offset; return true })
					return last == total-1
				})
				stopA()
				stopB()
				a, aerr := waitA()
				bo, berr := waitB()
				// Applied once: the offsets at the sink run from 0 to the end
				// with one jump, back to the seek.
				offs := sinkOffsets(r.rec, 0)
				var jumps []int
				for i := 1; i < len(offs); i++ {
					if offs[i] != offs[i-1]+1 {
						jumps = append(jumps, i)
					}
				}
				if len(jumps) != 1 || offs[jumps[0]] != to || offs[0] != 0 || offs[len(offs)-1] != total-1 {
					for _, i := range jumps {
						t.Errorf("offset %d followed by %d", offs[i-1], offs[i])
					}
					t.Errorf("%d offsets; A wrote %d, B %d; A %+v %v; B %+v %v", len(offs), r.rec.count("A"), r.rec.count("B"), a, aerr, bo, berr)
					t.Fatalf("sink offsets from %d to %d, with the jumps above; want 0 to %d with one jump, back to the seek to %d", offs[0], offs[len(offs)-1], total-1, to)
				}
				wantEnd(t, "A", a, aerr, endHanded)
				wantEnd(t, "B", bo, berr, endReleased)
				if l := mustLoad(t, r.s, r.key); l.Seek != noOffset {
					t.Fatalf("the seek is still in the record: %+v", l)
				}
				t.Logf("%s: %d seek commits; A handed over at %d", b.name, seekCommits.Load(), a.To)
			})
		})
	}
}

// writesOf is how many times offset reached partition 0's sink.
func writesOf(r *recorder, offset int64) (n int) {
	for _, o := range sinkOffsets(r, 0) {
		if o == offset {
			n++
		}
	}
	return n
}

// TestCtl_seek_kept_when_its_answer_is_lost_and_the_owner_crashes: the
// owner's seek commit lands, but neither its answer nor a read of the
// record reaches the owner (the store here settles nothing), and the owner
// crashes right after its next commit lands. That commit must not record the old
// position over the seek, or the next owner starts past the seek and the
// seek is lost: it commits the seek again, as obey does (run.commit), finds
// it applied, and reads from it.
func TestCtl_seek_kept_when_its_answer_is_lost_and_the_owner_crashes(t *testing.T) {
	r := newRig(t, newMemStore(), 1)
	r.cfg.NearHandoff = time.Nanosecond // no reads of the record between commits, as far from a hand-over
	const total, to = 3000, 100
	mustProduce(t, r.cfg.Brokers, numbered(0, total)...)
	var lost, crashed atomic.Bool
	fa := newFaultStore(r.s)
	fa.after = func(call storeCall, _ lease, err error) error {
		switch {
		case err != nil || call.op != "commit":
		case call.l.Seek != noOffset && lost.CompareAndSwap(false, true):
			return errLost // it landed
		case lost.Load() && crashed.CompareAndSwap(false, true):
			fa.down.Store(true) // the owner crashes once its next commit landed
		}
		return err
	}
	da, _ := testDeps(t, fa, nil)
	da.wrapSink = func(inv invocation, k sink) sink { return r.rec.wrap(inv, crashSink{k, &fa.down}) }
	da.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		time.Sleep(time.Millisecond)
		return append(out, r), nil
	}
	stopA, waitA := r.start(da, 1000, "A")
	defer stopA()
	waitFor(t, "A to be mid-stream", 5*time.Second, func() bool { return r.rec.lastOffset() > 300 })
	runCtlT(t, r.ctx, r.cfg, da, "seek", "-partition", "0", "-offset", strconv.Itoa(to))
	waitFor(t, "A to crash after a commit", 5*time.Second, crashed.Load)
	stopA()
	waitA()
	left := mustLoad(t, r.s, r.key)
	db, _ := testDeps(t, r.s, r.rec)
	stopB, waitB := r.start(db, 2000, "B")
	defer stopB()
	waitFor(t, "B to read to the end", 15*time.Second, func() bool { return r.rec.lastOffset() == total-1 })
	stopB()
	bo, err := waitB()
	t.Logf("A left the record at offset %d; B %+v, %v; offset %d written %d times", left.Offset, bo, err, to, writesOf(r.rec, to))
	if writesOf(r.rec, to) < 2 {
		t.Fatalf("offset %d reached the sink %d times; want again after the seek. A left the record at offset %d; B %+v, %v", to, writesOf(r.rec, to), left.Offset, bo, err)
	}
}
