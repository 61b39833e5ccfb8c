// group_test.go checks the offset baton keeps in the Kafka group: lag tools
// read it there, a lease record without an offset starts from it, and a
// lease record that was lost resumes from it instead of from the start of
// the log.

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

// drop deletes a record behind the store's back, as if it were lost.
func (m *memStore) drop(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leases, key)
}

// losable opens b's store with a way to lose its lease records behind its
// back (losableCompiled: group_redis_test.go, group_dynamo_test.go).
func losable(t testing.TB, b backend) (store, func(key string)) {
	if b.name == memBackend().name {
		m := newMemStore()
		return m, m.drop
	}
	return losableCompiled(t, b)
}

// testGroup is the source partition in the config's Kafka group, through a
// client of the test's own.
func testGroup(t testing.TB, cfg *config, partition int32) groupOffset {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	meta, err := (&kafka{cl: cl}).metadata(ctxT(t), cfg, []string{cfg.Topic})
	if err != nil {
		t.Fatal(err)
	}
	return groupOffset{cl: cl, group: cfg.Group, topic: cfg.Topic, topicID: meta[cfg.Topic].TopicID, partition: partition}
}

func groupCommitted(t testing.TB, g groupOffset) int64 {
	t.Helper()
	at, err := g.committed(ctxT(t))
	if err != nil {
		t.Fatalf("offset of group %q: %v", g.group, err)
	}
	return at
}

// TestLease_record_lost_resumes_from_group_offset: the lease record vanishes
// under a running owner (Redis: FLUSHDB; DynamoDB: DeleteItem). The owner's
// next commit is fenced and it ends lost; the next invocation finds no
// offset in the record it creates and starts from the offset the owner
// committed to the Kafka group with its last lease commit. What is read
// again is what the owner read after that commit, not the whole log.
func TestLease_record_lost_resumes_from_group_offset(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		s, lose := losable(t, b)
		r := newRig(t, s, 1)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
		d, _ := testDeps(t, s, r.rec)
		_, waitA := r.start(d, 1000, "A")
		var last lease
		waitFor(t, "A to commit past offset 1000", 20*time.Second, func() bool {
			l, err := s.load(r.ctx, r.key)
			last = l
			return err == nil && last.Offset > 1000
		})
		lose(r.key)
		a, err := waitA()
		wantEnd(t, "A after its record was lost", a, err, endLost)
		g := testGroup(t, r.cfg, 0)
		committed := groupCommitted(t, g)
		if committed < last.Offset || committed != a.To {
			t.Fatalf("group offset %d; want A's last lease commit %d (at least %d, seen before the loss)", committed, a.To, last.Offset)
		}
		stopB, waitB := r.start(d, 2000, "B")
		waitFor(t, "B to write", 10*time.Second, func() bool { return r.rec.count("B") > 0 })
		total := r.drain(t, produced, stopProducing, 15*time.Second)
		stopB()
		bo, err := waitB()
		if err != nil || bo.End != endReleased || bo.From != committed {
			t.Fatalf("B: %+v, %v; want released, having started at the group's offset %d", bo, err, committed)
		}
		// What A read past its last commit may be read again; the
		// committed records before it, never.
		tl := r.rec.tally(total)
		wantTally(t, tl, r.rec.count("A")-int(committed), -1)
		if got := groupCommitted(t, g); got != total[0] {
			t.Fatalf("group offset after B released at %d: %d", total[0], got)
		}
		t.Logf("%s: A committed up to %d, wrote %d; record lost; B started at %d; %d records read again (%d would have been from the start of the log)",
			b.name, committed, r.rec.count("A"), bo.From, tl.Duplicated, r.rec.count("A"))
	})
}

// TestLease_record_rolled_back_ends_lost: a failover that lost writes
// leaves the owner's record as it was epochs ago. The owner's commit is
// fenced, and since no newer owner holds the partition the run ends lost
// (process mode starts it again), not fenced.
func TestLease_record_rolled_back_ends_lost(t *testing.T) {
	t.Parallel()
	s := newMemStore()
	r := newRig(t, s, 1)
	mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
	old := lease{Key: r.key, Owner: "Z", Tick: 500, Epoch: 1, Offset: 4, State: stateReleased, Seek: noOffset}
	s.set(old)
	d, _ := testDeps(t, s, nil)
	_, wait := r.start(d, 1000, "A")
	waitFor(t, "A to commit offset 10", 10*time.Second, func() bool {
		l, err := s.load(r.ctx, r.key)
		return err == nil && l.Owner == "A" && l.Offset == 10
	})
	s.set(old)
	a, err := wait()
	wantEnd(t, "A after its record went back to epoch 1", a, err, endLost)
}

// TestGroup_new_record_starts_from_group_offset: a partition whose Kafka
// group already has an offset (a consumer group baton replaces, say) and
// no lease record starts there, and baton's commits move it on.
func TestGroup_new_record_starts_from_group_offset(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	mustProduce(t, r.cfg.Brokers, numbered(0, 100)...)
	g := testGroup(t, r.cfg, 0)
	if err := g.commit(r.ctx, 40); err != nil {
		t.Fatal(err)
	}
	d, _ := testDeps(t, r.s, r.rec)
	stop, wait := r.start(d, 1000, "A")
	waitFor(t, "A to read to the end", 10*time.Second, func() bool { return r.rec.count("A") >= 60 })
	stop()
	a, err := wait()
	if err != nil || a.End != endReleased || a.From != 40 || a.To != 100 {
		t.Fatalf("A: %+v, %v; want released at 100, from the group's 40", a, err)
	}
	if got := sinkOffsets(r.rec, 0); got[0] != 40 || len(got) != 60 {
		t.Fatalf("sink offsets %v; want 40..99", got)
	}
	if got := groupCommitted(t, g); got != 100 {
		t.Fatalf("group offset %d after A released at 100", got)
	}
}

// TestGroup_start_latest: with no offset in the lease record or the group,
// -start latest starts at the end of the log, resolved to an offset at
// once: the next owner goes on from there even if nothing arrived.
func TestGroup_start_latest(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	r.cfg.Start = startLatest
	mustProduce(t, r.cfg.Brokers, numbered(0, 30)...)
	d, _ := testDeps(t, r.s, r.rec)
	a, err := runInvocation(within(t, r.ctx, time.Second), r.cfg, d, invocation{"src", 0, 1000, "A"})
	if err != nil || a.From != 30 || a.To != 30 || a.Records != 0 {
		t.Fatalf("A: %+v, %v; want a start at the end, 30, and nothing read", a, err)
	}
	mustProduce(t, r.cfg.Brokers, numbered(0, 5)...)
	stop, wait := r.start(d, 2000, "B")
	waitFor(t, "B to read what came after A", 10*time.Second, func() bool { return r.rec.count("B") == 5 })
	stop()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := sinkOffsets(r.rec, 0); !slices.Equal(got, []int64{30, 31, 32, 33, 34}) {
		t.Fatalf("sink offsets %v; want 30..34", got)
	}
}

// TestGroup_commit_failure_never_fails_the_run: the group refuses the
// commits (a role without kafka-cluster:AlterGroup, say). The run goes on,
// its lease commits unaffected, and says so once, not at every commit.
func TestGroup_commit_failure_never_fails_the_run(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	refused := r.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.GroupAuthorizationFailed, Count: -1})
	produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
	d, _ := testDeps(t, r.s, r.rec)
	logs := captureLog(t, d)
	stop, wait := r.start(d, 1000, "A")
	waitFor(t, "several refused group commits", 10*time.Second, func() bool { return refused.Hits() >= 3 })
	total := r.drain(t, produced, stopProducing, 10*time.Second)
	stop()
	a, err := wait()
	if err != nil || a.End != endReleased || a.To != total[0] {
		t.Fatalf("A: %+v, %v; want released at %d", a, err, total[0])
	}
	if n := logs.count("offset not committed to the Kafka group"); n != 1 {
		t.Fatalf("%d warnings for %d refused group commits, want 1:\n%s", n, refused.Hits(), logs.lines(""))
	}
}

// TestLambda_lost_record_recreated_and_read_on: the lease record vanishes
// under a Lambda invocation (Redis: FLUSHDB; DynamoDB: DeleteItem) with no
// successor waiting. Its run ends lost; the same invocation, having time
// left, takes the missing record again, starts from the offset it last
// committed to the Kafka group, and reads on, instead of leaving the
// partition unread until the next tick.
func TestLambda_lost_record_recreated_and_read_on(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, b backend) {
		s, lose := losable(t, b)
		r := newRig(t, s, 1)
		ignore := leakIgnores()
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
		d, _ := testDeps(t, s, r.rec)
		d.pause = 10 * time.Millisecond
		ctx, stop := context.WithCancel(r.ctx)
		defer stop()
		payload := fmt.Sprintf(`{"topic":"src","partition":0,"tick":%d}`, time.Now().UnixMilli())
		wait := groupCall(ctx, handler(r.cfg, d), "A", payload, time.Minute)
		var before lease
		waitFor(t, "A to commit past offset 300", 10*time.Second, func() bool {
			l, err := s.load(r.ctx, r.key)
			before = l
			return err == nil && l.Offset > 300
		})
		lose(r.key)
		r.waitLease(t, "A to own the partition again and read on", func(l lease) bool {
			return strings.HasPrefix(l.Owner, "A-") && strings.HasSuffix(l.Owner, "#1") && l.Offset > before.Offset
		})
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stop()
		a, err := wait()
		if err != nil || a.End != endReleased || a.To != total[0] || !strings.HasSuffix(a.Owner, "#1") || a.From < before.Offset {
			t.Fatalf("A: %+v, %v; want its second run released at %d, from the group's offset (at least %d)", a, err, total[0], before.Offset)
		}
		if err := goleak.Find(ignore...); err != nil {
			t.Fatalf("goroutines left after the call returned: %v", err)
		}
		// What A read past its last commit before the loss may be read again.
		wantTally(t, r.rec.tally(total), r.rec.count(strings.TrimSuffix(a.Owner, "#1"))-int(a.From), -1)
	})
}

// TestRetry_cut_off_request_is_sent_again: a group offset read or commit
// that the client cut off unanswered (a read past its deadline: the produce
// limits bound every request of the run's client, a tenth of a second at
// short leases) is sent again within the caller's time, as a busy machine
// under the e2e tests showed it must be: the run failed on it.
func TestRetry_cut_off_request_is_sent_again(t *testing.T) {
	var tries atomic.Int32
	cutOff := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	err := retry(ctxT(t), func() error {
		if tries.Add(1) < 3 {
			return cutOff
		}
		return nil
	})
	if err != nil || tries.Load() != 3 {
		t.Fatalf("%v after %d tries; want success at the third", err, tries.Load())
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	if err := retry(ctx, func() error { return cutOff }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("always cut off: %v; want the cut-off error once the caller's time is up", err)
	}
}
