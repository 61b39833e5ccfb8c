// process_test.go runs process mode: shutdown by signal, and a rolling
// deploy where a second process takes every partition over.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func processConfig(t testing.TB, brokers []string, topic string) *config {
	c := testConfig(t, brokers, topic)
	c.Mode = "process"
	return c
}

func TestProcess_sigterm_releases(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s, cluster, rec := b.open(t), newCluster(t, 3, "src"), newRecorder(nil)
			cfg := processConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			pctx, stopProducing := context.WithCancel(ctx)
			produced, err := produce(pctx, cfg.Brokers, "src", 3, time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := testDeps(t, s, rec)
			sctx, stopSignals := signalContext()
			defer stopSignals()
			done := make(chan error, 1)
			go func() { done <- runProcess(sctx, cfg, d) }()
			waitFor(t, "every partition to be read", 5*time.Second, func() bool {
				w := rec.writesPer()
				return len(w) == 3 && w[0] > 100 && w[1] > 100 && w[2] > 100
			})
			stopProducing()
			total := produced()
			waitFor(t, "the process to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("process after SIGTERM: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("process did not end within 10s of SIGTERM")
			}
			for p := range int32(3) {
				l, err := s.load(ctx, leaseKey(cfg.Group, "src", p))
				if err != nil || l.State != stateReleased || l.Offset != total[p] {
					t.Errorf("partition %d after SIGTERM: %+v, %v; want released at offset %d", p, l, err, total[p])
				}
			}
		})
	}
}

func TestProcess_rolling_takeover(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 4, "src"), newRecorder(nil)
			cfg := processConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			pctx, stopProducing := context.WithCancel(ctx)
			produced, err := produce(pctx, cfg.Brokers, "src", 4, time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			d1, _ := testDeps(t, s, rec)
			old := make(chan error, 1)
			go func() { old <- runProcess(ctx, cfg, d1) }()
			waitFor(t, "the old process to read every partition", 5*time.Second, func() bool { return len(rec.writesPer()) == 4 })
			time.Sleep(2 * time.Millisecond) // a later start is a newer tick
			d2, _ := testDeps(t, s, rec)
			nctx, stopNew := context.WithCancel(ctx)
			fresh := make(chan error, 1)
			go func() { fresh <- runProcess(nctx, cfg, d2) }()
			select {
			case err := <-old:
				if err != nil {
					t.Fatalf("old process: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("old process did not hand every partition over within 10s")
			}
			stopProducing()
			total := produced()
			waitFor(t, "the new process to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stopNew()
			if err := <-fresh; err != nil {
				t.Fatal(err)
			}
			tl := rec.tally(total)
			if tl.Lost != 0 || tl.Duplicated != 0 || tl.Reordered != 0 || tl.Handoffs != 4 {
				t.Fatalf("sink: %+v; want every record once, in order, and one handoff a partition", tl)
			}
		})
	}
}

// writesPer counts the writes of each partition.
func (r *recorder) writesPer() map[int32]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[int32]int{}
	for p, ws := range r.writes {
		n[p] = len(ws)
	}
	return n
}

func TestProcess_metrics_endpoint(t *testing.T) {
	t.Parallel()
	s, cluster, rec := newMemStore(), newCluster(t, 2, "src"), newRecorder(nil)
	cfg := processConfig(t, cluster.ListenAddrs(), "src")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.MetricsAddr = ln.Addr().String()
	ln.Close()
	ctx, stop := context.WithCancel(ctxT(t))
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	if _, err := produce(pctx, cfg.Brokers, "src", 2, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d, _ := testDeps(t, s, rec)
	done := make(chan error, 1)
	go func() { done <- runProcess(ctx, cfg, d) }()
	var body string
	waitFor(t, "/metrics to count records of both partitions", 5*time.Second, func() bool {
		resp, err := http.Get("http://" + cfg.MetricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		for _, p := range []string{"0", "1"} {
			m := regexp.MustCompile(`baton_records_in_total\{group="[^"]+",topic="src",partition="` + p + `"\} (\d+)`).FindStringSubmatch(body)
			if m == nil || m[1] == "0" {
				return false
			}
		}
		return true
	})
	for _, want := range []string{"# TYPE baton_records_in_total counter", "# TYPE baton_lag_records gauge", "baton_lease_store_calls_total{"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q:\n%s", want, body)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + cfg.MetricsAddr + "/metrics"); err == nil {
		t.Fatal("/metrics still served after the process ended")
	}
}

// TestProcess_failed_partition_starts_again: a run that owned its partition
// and failed (here on a record the action cannot handle, with no -dlq) is
// started again after a pause, so once the record is dealt with (here the
// action is fixed; in life, baton ctl seek past it) the partition goes on
// without a restart.
func TestProcess_failed_partition_starts_again(t *testing.T) {
	t.Parallel()
	cluster, rec := newCluster(t, 1, "src"), newRecorder(nil)
	cfg := processConfig(t, cluster.ListenAddrs(), "src")
	var rs []*kgo.Record
	for i := range 10 {
		rs = append(rs, &kgo.Record{Topic: "src", Value: fmt.Appendf(nil, "%d", i)})
	}
	mustProduce(t, cfg.Brokers, rs...)
	d, _ := testDeps(t, newMemStore(), rec)
	var fixed atomic.Bool
	d.action = func(r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		if r.Offset == 3 && !fixed.Load() {
			return nil, errors.New("cannot handle record 3")
		}
		return append(out, r), nil
	}
	ctx, stop := context.WithCancel(ctxT(t))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runProcess(ctx, cfg, d) }()
	key := leaseKey(cfg.Group, "src", 0)
	waitFor(t, "the run to fail at record 3", 5*time.Second, func() bool {
		l, err := d.store.load(ctx, key)
		return err == nil && l.State == stateReleased && l.Offset == 3
	})
	fixed.Store(true)
	waitFor(t, "a new run to read past record 3", 5*time.Second, func() bool {
		l, err := d.store.load(ctx, key)
		return err == nil && l.Offset == 10
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("process: %v; want nil after the partition was started again and shut down", err)
	}
	if got := sinkOffsets(rec, 0); !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("sink offsets %v; want 0..9 once each", got)
	}
}

// TestProcess_restart_yields_to_newer_process: while a process waits to
// start a failed partition again, a newer process (a fixed deploy) takes the
// partition. The old process's next try is older than the newer process,
// so it leaves the partition to it instead of taking it back.
func TestProcess_restart_yields_to_newer_process(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 1, "src")
	cfg := processConfig(t, cluster.ListenAddrs(), "src")
	var rs []*kgo.Record
	for i := range 10 {
		rs = append(rs, &kgo.Record{Topic: "src", Value: fmt.Appendf(nil, "%d", i)})
	}
	mustProduce(t, cfg.Brokers, rs...)
	s := newMemStore()
	dA, _ := testDeps(t, s, nil)
	dA.action = func(r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		if r.Offset == 3 {
			return nil, errors.New("cannot handle record 3")
		}
		return append(out, r), nil
	}
	dB, _ := testDeps(t, s, nil)
	ctx, stop := context.WithCancel(ctxT(t))
	defer stop()
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- runProcess(ctx, cfg, dA) }()
	key := leaseKey(cfg.Group, "src", 0)
	waitFor(t, "A's run to fail at record 3", 5*time.Second, func() bool {
		l, err := s.load(ctx, key)
		return err == nil && l.State == stateReleased && l.Offset == 3
	})
	time.Sleep(10 * time.Millisecond) // B's tick is later than A's
	go func() { doneB <- runProcess(ctx, cfg, dB) }()
	waitFor(t, "B to read past record 3", 5*time.Second, func() bool {
		l, err := s.load(ctx, key)
		return err == nil && l.Offset == 10
	})
	select {
	case err := <-doneA:
		if err != nil {
			t.Fatalf("A: %v; want nil once it left the partition to B", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("A did not end within 5 s of B taking its partition")
	}
	l, err := s.load(ctx, key)
	if err != nil || l.State != stateRunning || !strings.HasPrefix(l.Owner, "process") || strings.Contains(l.Owner, "#") {
		t.Fatalf("lease %+v, %v; want B's first run still owning it", l, err)
	}
	stop()
	if err := <-doneB; err != nil {
		t.Fatalf("B: %v", err)
	}
}

// TestProcess_record_lost_keeps_reading: the lease record of a partition
// vanishes under a process (Redis: FLUSHDB, every partition's record at
// once; DynamoDB: DeleteItem). Its run is fenced and ends lost; instead of
// leaving the partition unowned and exiting once none is left, the process
// starts it again, from the offset committed to the Kafka group.
func TestProcess_record_lost_keeps_reading(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, lose := losable(t, b)
			cluster, rec := newCluster(t, 2, "src"), newRecorder(nil)
			cfg := processConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			pctx, stopProducing := context.WithCancel(ctx)
			defer stopProducing()
			produced, err := produce(pctx, cfg.Brokers, "src", 2, time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := testDeps(t, s, rec)
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() { done <- runProcess(runCtx, cfg, d) }()
			key := leaseKey(cfg.Group, "src", 0)
			var before [2]int64 // FLUSHDB loses both partitions' records
			waitFor(t, "both partitions to commit past offset 300", 10*time.Second, func() bool {
				for p := range int32(2) {
					l, err := s.load(ctx, leaseKey(cfg.Group, "src", p))
					if before[p] = l.Offset; err != nil || l.Offset <= 300 {
						return false
					}
				}
				return true
			})
			lose(key)
			waitFor(t, "the process to own partition 0 again and read on", 15*time.Second, func() bool {
				l, err := s.load(ctx, key)
				return err == nil && strings.HasSuffix(l.Owner, "/0#1") && l.Offset > before[0]
			})
			select {
			case err := <-done:
				t.Fatalf("process ended after a lease record was lost: %v", err)
			default:
			}
			stopProducing()
			total := produced()
			waitFor(t, "the process to catch up", 10*time.Second, func() bool { return rec.tally(total).Lost == 0 })
			stop()
			if err := <-done; err != nil {
				t.Fatalf("process: %v", err)
			}
			if tl := rec.tally(total); tl.Lost != 0 || tl.Reordered != 0 || tl.Duplicated >= int(before[0]+before[1]) {
				t.Fatalf("sink: %+v; want nothing lost, and fewer read again than the %v committed before the loss", tl, before)
			}
		})
	}
}
