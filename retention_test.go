// retention_test.go checks what an owner does when its position leaves the
// log: retention deleted records it had not read, the lease's offset is
// past the log's end, the topic is deleted while it reads.

package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// deleteRecords moves src/0's log start to before, as retention would.
func deleteRecords(t *testing.T, brokers []string, before int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = "src"
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, before
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	if err != nil || resp.Topics[0].Partitions[0].LowWatermark != before {
		t.Fatalf("delete records before %d: %+v, %v", before, resp, err)
	}
}

// seedLease leaves src/0's lease released at offset, as an owner that
// stopped there would.
func (r *rig) seedLease(t *testing.T, offset int64) {
	t.Helper()
	l := mustTake(t, r.s, r.key, lease{Key: r.key}, claimAt("seed", 1, time.Now(), r.cfg.Skew))
	mustRelease(t, r.s, l, offset)
}

// expiredLines are the run's ERROR lines saying records expired unread,
// each as its from, to and count.
func expiredLines(lb *logBuffer) [][3]int64 {
	var got [][3]int64
	for _, line := range lb.lines("level=ERROR", "retention deleted records") {
		var v [3]int64
		for i, k := range []string{"from=", "to=", "count="} {
			_, rest, _ := strings.Cut(line, " "+k)
			f, _, _ := strings.Cut(rest, " ")
			v[i], _ = strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		}
		got = append(got, v)
	}
	return got
}

// emfSum is the sum of metric name over the EMF lines in b.
func emfSum(t *testing.T, b []byte, name string) (n int) {
	for _, l := range parseEMF(t, b) {
		n += l.num(name)
	}
	return n
}

// wantOffsets fails unless src/0's sink got exactly the offsets from..to-1
// but those in [gapFrom, gapTo), each once, in order.
func wantOffsets(t *testing.T, rec *recorder, from, to, gapFrom, gapTo int64) {
	t.Helper()
	var want []int64
	for o := from; o < to; o++ {
		if o < gapFrom || o >= gapTo {
			want = append(want, o)
		}
	}
	if got := sinkOffsets(rec, 0); !slices.Equal(got, want) {
		t.Fatalf("sink offsets %v;\nwant %d to %d without [%d, %d)", got, from, to-1, gapFrom, gapTo)
	}
}

// statusFields is ctl status's line for src/0, by column (LAG may be two
// words: beyond end).
func statusFields(t *testing.T, r *rig, d *deps) map[string]string {
	t.Helper()
	out := runCtlT(t, r.ctx, r.cfg, d, "status", "-partition", "0")
	lines := strings.Split(out, "\n")
	head := strings.Fields(strings.Replace(lines[0], "SUCCESSOR TICK", "SUCCESSOR_TICK", 1))
	f := strings.Fields(strings.Replace(lines[1], "beyond end", "beyond_end", 1))
	got := map[string]string{}
	for i, h := range head {
		if i < len(f) {
			got[h] = strings.ReplaceAll(f[i], "_", " ")
		}
	}
	return got
}

// TestRun_retention_overtook_reader: the next offset to read is below the
// log start, at the take (a lease left at 20, records before 60 deleted)
// and while reading (fetches held while records 10 to 59 are produced and
// deleted). Each time the owner logs one ERROR with the offsets lost and
// their count, emits it as RecordsExpiredUnread, and reads on from the log
// start; the count is exactly what was deleted unread, and the lease
// records the new position.
func TestRun_retention_overtook_reader(t *testing.T) {
	t.Run("at the take", func(t *testing.T) {
		eachBackend(t, true, func(t *testing.T, b backend) {
			r := newRig(t, b.open(t), 1)
			mustProduce(t, r.cfg.Brokers, numbered(0, 100)...)
			r.seedLease(t, 20)
			deleteRecords(t, r.cfg.Brokers, 60)
			d, _ := testDeps(t, r.s, r.rec)
			lb := captureLog(t, d)
			var emf bytes.Buffer
			d.emf = &emf
			stop, wait := r.start(d, 1000, "A")
			// The new start is committed before anything is read.
			r.waitLease(t, "the lease to record the log start", func(l lease) bool { return l.Owner == "A" && l.Offset >= 60 })
			waitFor(t, "A to read to the end", 5*time.Second, func() bool { return r.rec.lastOffset() == 99 })
			stop()
			a, err := wait()
			wantEnd(t, "A", a, err, endReleased)
			wantOffsets(t, r.rec, 60, 100, 0, 0)
			if got := expiredLines(lb); !slices.Equal(got, [][3]int64{{20, 60, 40}}) {
				t.Fatalf("ERROR lines (from, to, count) %v; want one: 20, 60, 40", got)
			}
			if n := emfSum(t, emf.Bytes(), "RecordsExpiredUnread"); n != 40 {
				t.Fatalf("RecordsExpiredUnread sums to %d; want 40", n)
			}
			if a.From != 60 || a.To != 100 {
				t.Fatalf("A: %+v; want from 60 to 100", a)
			}
			// ctl status shows the log start beside the offset.
			if got := statusFields(t, r, d); got["START"] != "60" || got["OFFSET"] != "100" || got["LAG"] != "0" {
				t.Fatalf("ctl status: %v; want START 60, OFFSET 100, LAG 0", got)
			}
		})
	})
	t.Run("while reading", func(t *testing.T) {
		eachBackend(t, true, func(t *testing.T, b backend) {
			r := newRig(t, b.open(t), 1)
			mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
			d, _ := testDeps(t, r.s, r.rec)
			lb := captureLog(t, d)
			var emf bytes.Buffer
			d.emf = &emf
			stop, wait := r.start(d, 1000, "A")
			waitFor(t, "A to read the first records", 5*time.Second, func() bool { return r.rec.lastOffset() == 9 })
			// Hold A's fetches (a retriable error franz-go retries quietly)
			// until the fetch in flight has ended, so nothing produced now
			// is read before it is deleted.
			hold := r.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: -1})
			time.Sleep(4 * r.cfg.FetchWait)
			mustProduce(t, r.cfg.Brokers, numbered(10, 90)...)
			deleteRecords(t, r.cfg.Brokers, 60)
			hold.Remove()
			waitFor(t, "A to read to the end", 10*time.Second, func() bool { return r.rec.lastOffset() == 99 })
			r.waitLease(t, "the lease to record the end", func(l lease) bool { return l.Offset == 100 })
			stop()
			a, err := wait()
			wantEnd(t, "A", a, err, endReleased)
			wantOffsets(t, r.rec, 0, 100, 10, 60)
			if got := expiredLines(lb); !slices.Equal(got, [][3]int64{{10, 60, 50}}) {
				t.Fatalf("ERROR lines (from, to, count) %v; want one: 10, 60, 50", got)
			}
			if n := emfSum(t, emf.Bytes(), "RecordsExpiredUnread"); n != 50 {
				t.Fatalf("RecordsExpiredUnread sums to %d; want 50", n)
			}
		})
	})
	t.Run("while records are in the window", func(t *testing.T) {
		// -concurrency 4: offset 5's call hangs, so 5-9 wait in the window
		// while the reading is at 10. Retention then deletes up to 60: the
		// 50 past the window are expired, the 5 in hand are written.
		r := newRig(t, newMemStore(), 1)
		r.cfg.Concurrency = 4
		recs := numbered(0, 10)
		for i, rec := range recs {
			rec.Key = []byte(concKey(int64(i)))
		}
		mustProduce(t, r.cfg.Brokers, recs...)
		release := make(chan struct{})
		d, _ := testDeps(t, r.s, r.rec)
		d.action = func(_ context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
			if rec.Offset == 5 {
				<-release
			}
			return append(out, rec), nil
		}
		lb := captureLog(t, d)
		stop, wait := r.start(d, 1000, "A")
		waitFor(t, "A to write up to 4", 5*time.Second, func() bool { return r.rec.lastOffset() == 4 })
		hold := r.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: -1})
		time.Sleep(4 * r.cfg.FetchWait)
		mustProduce(t, r.cfg.Brokers, numbered(10, 90)...)
		deleteRecords(t, r.cfg.Brokers, 60)
		hold.Remove()
		waitFor(t, "the fetch past the deletion, while 5 hangs", 10*time.Second, func() bool { return len(expiredLines(lb)) > 0 })
		close(release)
		waitFor(t, "A to read to the end", 10*time.Second, func() bool { return r.rec.lastOffset() == 99 })
		r.waitLease(t, "the lease to record the end", func(l lease) bool { return l.Offset == 100 })
		stop()
		a, err := wait()
		wantEnd(t, "A", a, err, endReleased)
		wantOffsets(t, r.rec, 0, 100, 10, 60)
		if got := expiredLines(lb); !slices.Equal(got, [][3]int64{{10, 60, 50}}) {
			t.Fatalf("ERROR lines (from, to, count) %v; want one: 10, 60, 50 (5-9 were in hand)", got)
		}
	})
}

// TestRun_offset_past_log_end: the lease holds offset 500 and the log ends
// at 10 (the topic created again, a lease table restored from a backup).
// ctl status shows LAG "beyond end", not 0; the owner that takes the lease
// logs one ERROR naming both offsets, starts again by -start (earliest: 0;
// latest: the end, 10), and commits that before it reads anything. Kafka
// answers a fetch past the end with OFFSET_OUT_OF_RANGE, which franz-go
// resets quietly; the injected case answers so whatever kfake does.
func TestRun_offset_past_log_end(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject bool
		start  string
		from   int64
	}{
		{"kfake's answer", false, startEarliest, 0},
		{"OFFSET_OUT_OF_RANGE", true, startEarliest, 0},
		{"OFFSET_OUT_OF_RANGE latest", true, startLatest, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, true, func(t *testing.T, b backend) {
				r := newRig(t, b.open(t), 1)
				r.cfg.Start = tc.start
				mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
				if tc.inject {
					r.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.OffsetOutOfRange, Count: -1,
						When: func(req kmsg.Request) bool { return fetchesPast(req, 10) }})
				}
				r.seedLease(t, 500)
				var commits []int64
				var firstCommitAt time.Time
				s := &hookStore{store: r.s, before: func(_ context.Context, c storeCall) error {
					if c.op == "commit" && len(commits) == 0 {
						firstCommitAt = time.Now()
					}
					if c.op == "commit" {
						commits = append(commits, c.offset)
					}
					return nil
				}}
				d, _ := testDeps(t, s, r.rec)
				lb := captureLog(t, d)
				if got := statusFields(t, r, d); got["OFFSET"] != "500" || got["END"] != "10" || got["LAG"] != "beyond end" {
					t.Fatalf("ctl status before the take: %v; want OFFSET 500, END 10, LAG beyond end", got)
				}
				stop, wait := r.start(d, 1000, "A")
				r.waitLease(t, "A to own", func(l lease) bool { return l.Owner == "A" })
				mustProduce(t, r.cfg.Brokers, numbered(10, 5)...)
				waitFor(t, "A to read to 14", 5*time.Second, func() bool { return r.rec.lastOffset() == 14 })
				stop()
				a, err := wait()
				wantEnd(t, "A", a, err, endReleased)
				wantOffsets(t, r.rec, tc.from, 15, 0, 0)
				if len(commits) == 0 || commits[0] != tc.from || r.rec.firstAt("A").Before(firstCommitAt) {
					t.Fatalf("A's commits %v, the first at %v, its first write at %v; want the first to record %d before any write",
						commits, firstCommitAt, r.rec.firstAt("A"), tc.from)
				}
				lines := lb.lines("level=ERROR", "past the end of the log")
				if len(lines) != 1 || !strings.Contains(lines[0], "offset=500 ") || !strings.Contains(lines[0], "end=10 ") ||
					!strings.Contains(lines[0], "restart_at="+strconv.FormatInt(tc.from, 10)) {
					t.Fatalf("ERROR lines %q; want one naming offset=500, end=10 and restart_at=%d", lines, tc.from)
				}
				if got := statusFields(t, r, d); got["OFFSET"] != "15" || got["LAG"] != "0" {
					t.Fatalf("ctl status after: %v; want OFFSET 15, LAG 0", got)
				}
			})
		})
	}
}

// fetchesPast reports whether req is a Fetch of partition 0 at an offset
// past end.
func fetchesPast(req kmsg.Request, end int64) bool {
	f, ok := req.(*kmsg.FetchRequest)
	if !ok {
		return false
	}
	for _, t := range f.Topics {
		for _, p := range t.Partitions {
			if p.Partition == 0 && p.FetchOffset > end {
				return true
			}
		}
	}
	return false
}

// TestRun_topic_deleted: the topic is deleted while its owner reads. The
// run ends within a few fetches with one ERROR (the caller's line saying
// how the run ended), the lease released at the offset read to, and no hot
// loop: the fetches and fetch warnings meanwhile stay few.
func TestRun_topic_deleted(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
		d, _ := testDeps(t, r.s, r.rec)
		lb := captureLog(t, d)
		wait := background(func() (outcome, error) {
			ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
			defer cancel()
			// As the Lambda handler runs a partition: one run, its end logged once.
			return ownPartition(ctx, r.cfg, d, invocation{"src", 0, 1000, "A"}, false)
		})
		waitFor(t, "A to read the records", 5*time.Second, func() bool { return r.rec.lastOffset() == 9 })
		fetches := r.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Observe: true, Count: -1})
		deleted := time.Now()
		if err := deleteTopic(r.ctx, r.cfg.Brokers, "src"); err != nil {
			t.Fatal(err)
		}
		a, err := wait()
		took := time.Since(deleted)
		if !errors.Is(err, errTopicGone) || !strings.Contains(err.Error(), `"src"`) || a.End != endError {
			t.Fatalf("A: %+v, %v; want the run ended on the topic deleted, naming it", a, err)
		}
		if l := mustLoad(t, r.s, r.key); l.State != stateReleased || l.Offset != 10 {
			t.Fatalf("lease %+v; want released at 10", l)
		}
		if n := lb.count("level=ERROR"); n != 1 {
			t.Fatalf("%d ERROR lines, want 1:\n%s", n, strings.Join(lb.lines("level=ERROR"), ""))
		}
		// A fetch a FetchWait is the pace of an idle owner; a hot loop makes
		// thousands a second.
		if n, most := fetches.Hits(), int(took/r.cfg.FetchWait)*2+10; n > most || lb.count("fetch") > 10 {
			t.Fatalf("%d fetches and %d fetch warnings in the %v the run took to end; want at most %d fetches", n, lb.count("fetch"), took, most)
		}
		t.Logf("%s: ended %v after the deletion, %d fetches meanwhile", b.name, took.Round(time.Millisecond), fetches.Hits())
	})
}

// In process mode a deleted topic ends the run, and the partition is tried
// again with the process's backoff: once the topic is created again, its
// lease's offset is past the new log's end, and reading starts over by
// -start.
func TestRun_topic_deleted_process_resumes_when_recreated(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newProcessRig(t, b.open(t), 1)
		r.cfg.Partitions = []int32{0}
		mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
		d, _ := testDeps(t, r.s, r.rec)
		d.pause = 100 * time.Millisecond
		ctx, stop := context.WithCancel(r.ctx)
		defer stop()
		done := runningProcess(ctx, r.cfg, d)
		waitFor(t, "the records to be read", 5*time.Second, func() bool { return r.rec.lastOffset() == 9 })
		if err := deleteTopic(r.ctx, r.cfg.Brokers, "src"); err != nil {
			t.Fatal(err)
		}
		r.waitLease(t, "the lease released at 10", func(l lease) bool { return l.State == stateReleased && l.Offset == 10 })
		time.Sleep(500 * time.Millisecond) // a few tries against the missing topic
		if err := createTopic(r.ctx, r.cfg.Brokers, "src"); err != nil {
			t.Fatal(err)
		}
		recreated := time.Now()
		mustProduce(t, r.cfg.Brokers, numbered(0, 5)...)
		waitFor(t, "the new topic's records to be read", 20*time.Second, func() bool { return len(r.rec.writesSince(recreated)) >= 5 })
		if got := r.rec.writesSince(recreated); !slices.Equal(got[:5], []int64{0, 1, 2, 3, 4}) {
			t.Fatalf("after the topic came back: offsets %v written; want 0..4", got)
		}
		stop()
		waitDone(t, "the process", done, 10*time.Second)
	})
}
