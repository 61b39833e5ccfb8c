// group_test.go checks the offset baton keeps in the Kafka group: lag tools
// read it there, a lease record without an offset starts from it, and a
// lease record that was lost resumes from it instead of from the start of
// the log.

package main

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, lose := losable(t, b)
			cluster, rec := newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			produced, stopProducing := flowing(t, ctx, cfg, 0)
			d, _ := testDeps(t, s, rec)
			key := leaseKey(cfg.Group, "src", 0)
			waitA := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			var last lease
			waitFor(t, "A to commit past offset 1000", 20*time.Second, func() bool {
				l, err := s.load(ctx, key)
				last = l
				return err == nil && last.Offset > 1000
			})
			lose(key)
			a, err := waitA()
			if err != nil || a.End != endLost {
				t.Fatalf("A after its record was lost: %+v, %v; want ended %s", a, err, endLost)
			}
			g := testGroup(t, cfg, 0)
			committed := groupCommitted(t, g)
			if committed < last.Offset || committed != a.To {
				t.Fatalf("group offset %d; want A's last lease commit %d (at least %d, seen before the loss)", committed, a.To, last.Offset)
			}
			bctx, stopB := context.WithCancel(ctx)
			waitB := invoke(bctx, cfg, d, invocation{"src", 0, 2000, "B"}, time.Minute)
			waitFor(t, "B to write", 10*time.Second, func() bool { return rec.count("B") > 0 })
			stopProducing()
			total := produced()
			waitFor(t, "B to catch up", 15*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopB()
			bo, err := waitB()
			if err != nil || bo.End != endReleased || bo.From != committed {
				t.Fatalf("B: %+v, %v; want released, having started at the group's offset %d", bo, err, committed)
			}
			tl := rec.tally(total)
			afterCommit := rec.count("A") - int(committed) // what A read past its last commit
			if tl.Lost != 0 || tl.Reordered != 0 || tl.Duplicated > afterCommit {
				t.Fatalf("sink: %+v; want nothing lost and at most %d read again (A's writes after its last commit), not the %d before it",
					tl, afterCommit, committed)
			}
			if got := groupCommitted(t, g); got != total[0] {
				t.Fatalf("group offset after B released at %d: %d", total[0], got)
			}
			t.Logf("%s: A committed up to %d, wrote %d; record lost; B started at %d; %d records read again (%d would have been from the start of the log)",
				b.name, committed, rec.count("A"), bo.From, tl.Duplicated, rec.count("A"))
		})
	}
}

// TestLease_record_rolled_back_ends_lost: a failover that lost writes
// leaves the owner's record as it was epochs ago. The owner's commit is
// fenced, and since no newer owner holds the partition the run ends lost
// (process mode starts it again), not fenced.
func TestLease_record_rolled_back_ends_lost(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 1, "src")
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	mustProduce(t, cfg.Brokers, numbered(0, 10)...)
	s := newMemStore()
	key := leaseKey(cfg.Group, "src", 0)
	old := lease{Key: key, Owner: "Z", Tick: 500, Epoch: 1, Offset: 4, State: stateReleased, Seek: noOffset}
	s.set(old)
	d, _ := testDeps(t, s, nil)
	wait := invoke(ctxT(t), cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
	waitFor(t, "A to commit offset 10", 10*time.Second, func() bool {
		l, err := s.load(ctxT(t), key)
		return err == nil && l.Owner == "A" && l.Offset == 10
	})
	s.set(old)
	if a, err := wait(); err != nil || a.End != endLost {
		t.Fatalf("A after its record went back to epoch 1: %+v, %v; want ended %s", a, err, endLost)
	}
}

// TestGroup_new_record_starts_from_group_offset: a partition whose Kafka
// group already has an offset (a consumer group baton replaces, say) and
// no lease record starts there, and baton's commits move it on.
func TestGroup_new_record_starts_from_group_offset(t *testing.T) {
	t.Parallel()
	cluster, rec := newCluster(t, 1, "src"), newRecorder(nil)
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	mustProduce(t, cfg.Brokers, numbered(0, 100)...)
	g := testGroup(t, cfg, 0)
	if err := g.commit(ctxT(t), 40); err != nil {
		t.Fatal(err)
	}
	d, _ := testDeps(t, newMemStore(), rec)
	ctx, stop := context.WithCancel(ctxT(t))
	wait := invoke(ctx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
	waitFor(t, "A to read to the end", 10*time.Second, func() bool { return rec.count("A") >= 60 })
	stop()
	a, err := wait()
	if err != nil || a.End != endReleased || a.From != 40 || a.To != 100 {
		t.Fatalf("A: %+v, %v; want released at 100, from the group's 40", a, err)
	}
	if got := sinkOffsets(rec, 0); got[0] != 40 || len(got) != 60 {
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
	cluster, rec := newCluster(t, 1, "src"), newRecorder(nil)
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	cfg.Start = startLatest
	mustProduce(t, cfg.Brokers, numbered(0, 30)...)
	s := newMemStore()
	d, _ := testDeps(t, s, rec)
	ctx := ctxT(t)
	a, err := runInvocation(within(t, ctx, time.Second), cfg, d, invocation{"src", 0, 1000, "A"})
	if err != nil || a.From != 30 || a.To != 30 || a.Records != 0 {
		t.Fatalf("A: %+v, %v; want a start at the end, 30, and nothing read", a, err)
	}
	mustProduce(t, cfg.Brokers, numbered(0, 5)...)
	bctx, stop := context.WithCancel(ctx)
	wait := invoke(bctx, cfg, d, invocation{"src", 0, 2000, "B"}, time.Minute)
	waitFor(t, "B to read what came after A", 10*time.Second, func() bool { return rec.count("B") == 5 })
	stop()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := sinkOffsets(rec, 0); !slices.Equal(got, []int64{30, 31, 32, 33, 34}) {
		t.Fatalf("sink offsets %v; want 30..34", got)
	}
}

// TestGroup_commit_failure_never_fails_the_run: the group refuses the
// commits (a role without kafka-cluster:AlterGroup, say). The run goes on,
// its lease commits unaffected, and says so once, not at every commit.
func TestGroup_commit_failure_never_fails_the_run(t *testing.T) {
	t.Parallel()
	cluster, rec := newCluster(t, 1, "src"), newRecorder(nil)
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	refused := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.GroupAuthorizationFailed, Count: -1})
	ctx := ctxT(t)
	produced, stopProducing := flowing(t, ctx, cfg, 0)
	logs := &syncBuffer{}
	d, _ := testDeps(t, newMemStore(), rec)
	d.log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	actx, stop := context.WithCancel(ctx)
	wait := invoke(actx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
	waitFor(t, "several refused group commits", 10*time.Second, func() bool { return refused.Hits() >= 3 })
	stopProducing()
	total := produced()
	waitFor(t, "A to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
	stop()
	a, err := wait()
	if err != nil || a.End != endReleased || a.To != total[0] {
		t.Fatalf("A: %+v, %v; want released at %d", a, err, total[0])
	}
	if n := strings.Count(logs.String(), "offset not committed to the Kafka group"); n != 1 {
		t.Fatalf("%d warnings for %d refused group commits, want 1:\n%s", n, refused.Hits(), logs)
	}
}

// syncBuffer is a log destination several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
