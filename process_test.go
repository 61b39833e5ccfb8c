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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

// newProcessRig is a rig whose config runs process mode.
func newProcessRig(t testing.TB, s store, partitions int32) *rig {
	r := newRig(t, s, partitions)
	r.cfg.Mode = "process"
	return r
}

func TestProcess_sigterm_releases(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, b backend) {
		r := newProcessRig(t, b.open(t), 3)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 3, 0)
		d, _ := testDeps(t, r.s, r.rec)
		sctx, stopSignals := signalContext()
		defer stopSignals()
		done := runningProcess(sctx, r.cfg, d)
		waitFor(t, "every partition to be read", 5*time.Second, func() bool {
			w := r.rec.writesPer()
			return len(w) == 3 && w[0] > 100 && w[1] > 100 && w[2] > 100
		})
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitDone(t, "process after SIGTERM", done, 10*time.Second)
		for p := range int32(3) {
			l, err := r.s.load(r.ctx, leaseKey(r.cfg.Group, "src", p))
			if err != nil || l.State != stateReleased || l.Offset != total[p] {
				t.Errorf("partition %d after SIGTERM: %+v, %v; want released at offset %d", p, l, err, total[p])
			}
		}
	})
}

func TestProcess_rolling_takeover(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newProcessRig(t, b.open(t), 4)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 4, 0)
		d1, _ := testDeps(t, r.s, r.rec)
		old := runningProcess(r.ctx, r.cfg, d1)
		waitFor(t, "the old process to read every partition", 5*time.Second, func() bool { return len(r.rec.writesPer()) == 4 })
		time.Sleep(2 * time.Millisecond) // a later start is a newer tick
		d2, _ := testDeps(t, r.s, r.rec)
		nctx, stopNew := context.WithCancel(r.ctx)
		fresh := runningProcess(nctx, r.cfg, d2)
		waitDone(t, "old process, handing every partition over,", old, 10*time.Second)
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopNew()
		waitDone(t, "new process", fresh, 10*time.Second)
		wantTally(t, r.rec.tally(total), 0, 4)
	})
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
	r := newProcessRig(t, newMemStore(), 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.MetricsAddr = ln.Addr().String()
	ln.Close()
	flowing(t, r.ctx, r.cfg, 2, 0)
	d, _ := testDeps(t, r.s, r.rec)
	ctx, stop := context.WithCancel(r.ctx)
	done := runningProcess(ctx, r.cfg, d)
	var body string
	waitFor(t, "/metrics to count records of both partitions", 5*time.Second, func() bool {
		resp, err := http.Get("http://" + r.cfg.MetricsAddr + "/metrics")
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
	waitDone(t, "process", done, 10*time.Second)
	if _, err := http.Get("http://" + r.cfg.MetricsAddr + "/metrics"); err == nil {
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
	r := newProcessRig(t, newMemStore(), 1)
	mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
	d, _ := testDeps(t, r.s, r.rec)
	var fixed atomic.Bool
	d.action = func(_ context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		if rec.Offset == 3 && !fixed.Load() {
			return nil, errors.New("cannot handle record 3")
		}
		return append(out, rec), nil
	}
	ctx, stop := context.WithCancel(r.ctx)
	defer stop()
	done := runningProcess(ctx, r.cfg, d)
	r.waitLease(t, "the run to fail at record 3", func(l lease) bool { return l.State == stateReleased && l.Offset == 3 })
	fixed.Store(true)
	r.waitLease(t, "a new run to read past record 3", func(l lease) bool { return l.Offset == 10 })
	stop()
	waitDone(t, "process, after the partition was started again and shut down,", done, 10*time.Second)
	if got := sinkOffsets(r.rec, 0); !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("sink offsets %v; want 0..9 once each", got)
	}
}

// TestProcess_restart_yields_to_newer_process: while a process waits to
// start a failed partition again, a newer process (a fixed deploy) takes the
// partition. The old process's next try is older than the newer process,
// so it leaves the partition to it instead of taking it back.
func TestProcess_restart_yields_to_newer_process(t *testing.T) {
	t.Parallel()
	r := newProcessRig(t, newMemStore(), 1)
	mustProduce(t, r.cfg.Brokers, numbered(0, 10)...)
	dA, _ := testDeps(t, r.s, nil)
	dA.action = failOn("3", errBadValue)
	logA := captureLog(t, dA)
	dB, _ := testDeps(t, r.s, nil)
	ctx, stop := context.WithCancel(r.ctx)
	defer stop()
	doneA := runningProcess(ctx, r.cfg, dA)
	r.waitLease(t, "A's run to fail at record 3", func(l lease) bool { return l.State == stateReleased && l.Offset == 3 })
	time.Sleep(10 * time.Millisecond) // B's tick is later than A's
	doneB := runningProcess(ctx, r.cfg, dB)
	r.waitLease(t, "B to read past record 3", func(l lease) bool { return l.Offset == 10 })
	waitDone(t, "A, once it left the partition to B,", doneA, 5*time.Second)
	l, err := r.s.load(ctx, r.key)
	if err != nil || l.State != stateRunning || !strings.HasPrefix(l.Owner, "process") || strings.Contains(l.Owner, "#") {
		t.Fatalf("lease %+v, %v; want B's first run still owning it", l, err)
	}
	if n := logA.count(`msg="superseded by a newer owner`, "by="+l.Owner+" ", "end=stale"); n != 1 {
		t.Errorf("A logged %d lines that B (%s) superseded it before its next try, want 1", n, l.Owner)
	}
	if n := logA.count("exiting because this process was replaced"); n != 1 {
		t.Errorf("A logged %d lines that it exits because it was replaced, want 1", n)
	}
	stop()
	waitDone(t, "B", doneB, 10*time.Second)
}

// TestProcess_record_lost_keeps_reading: the lease record of a partition
// vanishes under a process (Redis: FLUSHDB, every partition's record at
// once; DynamoDB: DeleteItem). Its run is fenced and ends lost; instead of
// leaving the partition unowned and exiting once none is left, the process
// starts it again, from the offset committed to the Kafka group.
func TestProcess_record_lost_keeps_reading(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		s, lose := losable(t, b)
		r := newProcessRig(t, s, 2)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 2, 0)
		d, _ := testDeps(t, s, r.rec)
		runCtx, stop := context.WithCancel(r.ctx)
		defer stop()
		done := runningProcess(runCtx, r.cfg, d)
		var before [2]int64 // FLUSHDB loses both partitions' records
		waitFor(t, "both partitions to commit past offset 300", 10*time.Second, func() bool {
			for p := range int32(2) {
				l, err := s.load(r.ctx, leaseKey(r.cfg.Group, "src", p))
				if before[p] = l.Offset; err != nil || l.Offset <= 300 {
					return false
				}
			}
			return true
		})
		lose(r.key)
		r.waitLease(t, "the process to own partition 0 again and read on", func(l lease) bool {
			return strings.HasSuffix(l.Owner, "/0#1") && l.Offset > before[0]
		})
		select {
		case err := <-done:
			t.Fatalf("process ended after a lease record was lost: %v", err)
		default:
		}
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stop()
		waitDone(t, "process", done, 10*time.Second)
		// Fewer read again than the records committed before the loss.
		wantTally(t, r.rec.tally(total), int(before[0]+before[1])-1, -1)
	})
}

// failingLoads makes the first n lease reads of key fail as a throttled or
// dropped read does.
func failingLoads(s store, key string, n int32) *hookStore {
	var seen atomic.Int32
	return &hookStore{store: s, before: func(_ context.Context, call storeCall) error {
		if call.op == "load" && call.key == key && seen.Add(1) <= n {
			return errLost
		}
		return nil
	}}
}

// TestProcess_transient_error_before_owning_retries: a partition's first
// run fails before owning on an error that heals: its lease reads fail (a
// store throttled as every partition starts at once, a Redis blip), or its
// metadata request gets no answer in time. Its runs are tried again with
// the backoff used after owning, so the process still owns and reads every
// partition, instead of reading the others alone until it is restarted.
func TestProcess_transient_error_before_owning_retries(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newProcessRig(t, b.open(t), 2)
		key1 := leaseKey(r.cfg.Group, "src", 1)
		d, _ := testDeps(t, failingLoads(r.s, key1, 2), r.rec)
		r.readsEvery(t, d, 2)
		if l := mustLoad(t, r.s, key1); !strings.HasSuffix(l.Owner, "/1#2") {
			t.Fatalf("partition 1: %+v; want it released by the third try, /1#2", l)
		}
	})
	t.Run("metadata timeout", func(t *testing.T) {
		t.Parallel()
		r := newProcessRig(t, newMemStore(), 2)
		r.cfg.KafkaTimeout = 300 * time.Millisecond
		r.cfg.Partitions = []int32{0, 1}
		d, _ := testDeps(t, r.s, r.rec)
		var clients atomic.Int32
		silent := silentBroker(t)
		d.kafka = func(opts ...kgo.Opt) (*kgo.Client, error) {
			if clients.Add(1) == 2 { // after the listing at start, the first run's brokers do not answer
				opts = append(opts, kgo.SeedBrokers(silent))
			}
			return kgo.NewClient(opts...)
		}
		r.readsEvery(t, d, 2)
		if n := clients.Load(); n != 4 {
			t.Errorf("%d Kafka clients made, want 4: the listing, one a partition, and one for the failed run's next try", n)
		}
	})
}

// readsEvery runs process mode with d until each of the first n partitions
// of src had more than 100 records delivered, then stops it, and checks
// that every record reached the sink once.
func (r *rig) readsEvery(t *testing.T, d *deps, n int32) {
	t.Helper()
	produced, stopProducing := flowing(t, r.ctx, r.cfg, n, 0)
	d.pause = 10 * time.Millisecond
	ctx, stop := context.WithCancel(r.ctx)
	defer stop()
	done := runningProcess(ctx, r.cfg, d)
	waitFor(t, "every partition to be read", 10*time.Second, func() bool {
		w := r.rec.writesPer()
		for p := range n {
			if w[p] <= 100 {
				return false
			}
		}
		return true
	})
	total := r.drain(t, produced, stopProducing, 10*time.Second)
	stop()
	waitDone(t, "process", done, 10*time.Second)
	wantTally(t, r.rec.tally(total), 0, 0)
}

// silentBroker is a loopback address that takes connections and never
// answers, as a broker that hangs does; it closes at the test's end.
func silentBroker(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn // held until the end, unanswered
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestProcess_config_error_ends_the_process: an error no retry mends ends
// its partition's runs, and the process with it once none is left: a
// source topic still missing after missingTopicTries tries (of the listing
// at start), a partition the topic lacks (found by that listing, before
// any run), a password or a broker certificate refused.
func TestProcess_config_error_ends_the_process(t *testing.T) {
	pki := newPKI(t)
	for _, tt := range []struct {
		name    string
		set     func(t *testing.T, c *config)
		clients int32 // Kafka clients made: one a try
		want    []string
	}{
		{"missing topic", func(_ *testing.T, c *config) { c.Topic, c.Partitions = "absent", []int32{0, 1} },
			missingTopicTries, []string{`"absent"`, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"partition out of range", func(_ *testing.T, c *config) { c.Partitions = []int32{5} },
			1, []string{"-partitions (BATON_PARTITIONS)", "no partition 5", "2 partitions, 0-1"}},
		{"wrong password", func(t *testing.T, c *config) {
			c.Brokers = secureCluster(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "alice", "right")).ListenAddrs()
			c.SASL, c.SASLUser, c.SASLPassword, c.Partitions = saslPlain, "alice", newSecret("wrong"), []int32{0}
			mustSetAuth(t, c)
		}, 1, []string{"authentication failed", `"alice"`}},
		{"unknown broker CA", func(t *testing.T, c *config) {
			c.Brokers = secureCluster(t, kfake.TLS(pki.serverTLS(false))).ListenAddrs()
			c.TLSCA, c.Partitions = newPKI(t).caFile, []int32{0}
			mustSetAuth(t, c)
		}, 1, []string{"certificate"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newProcessRig(t, newMemStore(), 2)
			tt.set(t, r.cfg)
			d, kafka := testDeps(t, r.s, nil)
			d.pause = 10 * time.Millisecond
			var err error
			select {
			case err = <-runningProcess(r.ctx, r.cfg, d):
			case <-time.After(10 * time.Second):
				t.Fatal("the process still runs")
			}
			wantNamed(t, err, tt.want...)
			if got := kafka.n.Load(); got != tt.clients {
				t.Errorf("%d Kafka clients made, want %d", got, tt.clients)
			}
		})
	}
}

// growTopic raises topic's partition count to n, as kafka-topics --alter
// --partitions n does.
func growTopic(t testing.TB, brokers []string, topic string, n int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = topic, n
	req.Topics, req.TimeoutMillis = append(req.Topics, rt), 5000
	resp, err := req.RequestWith(ctxT(t), cl)
	if err == nil && len(resp.Topics) == 1 {
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("growing %s to %d partitions: %v", topic, n, err)
	}
}

// TestProcess_partition_added_is_read: a process owning all partitions of
// a 2-partition topic; the topic grows to 4 while records flow. Within one
// refresh (scaled here) the process owns the new partitions, each with its
// own lease, and their records reach the sink: nothing lost or reordered,
// no handoff, and nothing left running when the process ends. A process
// given a fixed list keeps to it.
func TestProcess_partition_added_is_read(t *testing.T) {
	const refresh = 300 * time.Millisecond
	eachBackend(t, false, func(t *testing.T, b backend) {
		r := newProcessRig(t, b.open(t), 2)
		ignore := leakIgnores()
		producedOld, stopOld := flowing(t, r.ctx, r.cfg, 2, 0)
		d, _ := testDeps(t, r.s, r.rec)
		d.refresh = refresh
		ctx, stop := context.WithCancel(r.ctx)
		defer stop()
		done := runningProcess(ctx, r.cfg, d)
		waitFor(t, "both partitions to be read", 5*time.Second, func() bool {
			w := r.rec.writesPer()
			return w[0] > 100 && w[1] > 100
		})
		growTopic(t, r.cfg.Brokers, "src", 4)
		grown := time.Now()
		producedNew, stopNew := flowing(t, r.ctx, r.cfg, 4, 0)
		waitFor(t, "the new partitions to be read", refresh+5*time.Second, func() bool {
			w := r.rec.writesPer()
			return w[2] > 0 && w[3] > 0
		})
		took := time.Since(grown)
		total := r.drainGrown(t, producedOld, stopOld, producedNew, stopNew)
		for _, p := range []int32{2, 3} {
			if l := mustLoad(t, r.s, leaseKey(r.cfg.Group, "src", p)); !strings.HasPrefix(l.Owner, "process-") || !strings.HasSuffix(l.Owner, fmt.Sprintf("/%d", p)) {
				t.Errorf("partition %d: lease %+v; want it owned by the process, as partition %d", p, l, p)
			}
		}
		stop()
		waitDone(t, "process", done, 10*time.Second)
		wantTally(t, r.rec.tally(total), 0, 0)
		if took > refresh+3*time.Second {
			t.Errorf("the new partitions were first read %v after they were added; want within a refresh (%v) and a run's start", took, refresh)
		}
		if err := goleak.Find(ignore...); err != nil {
			t.Fatalf("goroutines left after the process ended: %v", err)
		}
		t.Logf("%s: new partitions read %v after they were added, %d records", b.name, took, r.rec.tally(total).Produced)
	})
	t.Run("fixed list stays fixed", func(t *testing.T) {
		t.Parallel()
		r := newProcessRig(t, newMemStore(), 2)
		r.cfg.Partitions = []int32{0, 1}
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 2, 0)
		d, kafka := testDeps(t, r.s, r.rec)
		d.refresh = 50 * time.Millisecond
		ctx, stop := context.WithCancel(r.ctx)
		defer stop()
		done := runningProcess(ctx, r.cfg, d)
		waitFor(t, "both partitions to be read", 5*time.Second, func() bool { return len(r.rec.writesPer()) == 2 })
		growTopic(t, r.cfg.Brokers, "src", 4)
		mustProduce(t, r.cfg.Brokers, &kgo.Record{Topic: "src", Partition: 2, Value: []byte("0")})
		time.Sleep(10 * d.refresh)
		r.drain(t, produced, stopProducing, 10*time.Second)
		stop()
		waitDone(t, "process", done, 10*time.Second)
		if w := r.rec.writesPer(); w[2] != 0 || w[3] != 0 {
			t.Errorf("a process given -partitions 0,1 read partitions added later: %v", w)
		}
		if n := kafka.n.Load(); n != 3 {
			t.Errorf("%d Kafka clients made, want 3 (the listing at start, then one a partition: a fixed list is not listed again)", n)
		}
	})
}

// TestProcess_partition_not_in_topic_exits_2: -partitions naming a
// partition the topic lacks is a usage error found at start, before any
// lease is touched: exit 2, naming the flag, its variable, the partition
// and the topic's count. The old process ran the others and reported it
// only at shutdown.
func TestProcess_partition_not_in_topic_exits_2(t *testing.T) {
	s, storeEnv := cliStore(t)
	cluster := newCluster(t, 3, "orders")
	group := strings.ReplaceAll(testKey(t), "/", ".")
	env := with(storeEnv, "BATON_BROKERS", strings.Join(cluster.ListenAddrs(), ","), "BATON_TOPIC", "orders", "BATON_GROUP", group, "BATON_SINK", "discard")
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"flag", []string{"-partitions", "0,7"}, env,
			[]string{"-partitions (BATON_PARTITIONS)", `topic "orders" has no partition 7 `, "it has 3 partitions, 0-2", "-partitions all"}},
		{"variable, two lacking", nil, with(env, "BATON_PARTITIONS", "9,1,7"),
			[]string{"-partitions (BATON_PARTITIONS)", "no partitions 9, 7 ", "it has 3 partitions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
			defer cancel()
			code, _, stderr := runBaton(ctx, tc.args, tc.env)
			if code != 2 || ctx.Err() != nil {
				t.Errorf("exit %d (context %v), want 2 at start", code, ctx.Err())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the message does not say %q", w)
				}
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", stderr)
			}
			for _, p := range []int32{0, 1, 2, 7, 9} {
				if l, err := s.load(ctxT(t), leaseKey(group, "orders", p)); !errors.Is(err, errNotFound) {
					t.Errorf("partition %d: lease %+v, %v; want none written", p, l, err)
				}
			}
		})
	}
}

// TestProcess_listing_error_at_start_retries: the brokers do not answer
// the first listing of the topic's partitions in time. With -partitions
// all, and with a fixed list (checked against the topic at start), the
// listing is tried again as a run that fails before owning is, and the
// process reads every partition instead of exiting.
func TestProcess_listing_error_at_start_retries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []int32
	}{{"all", nil}, {"fixed list", []int32{0, 1}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newProcessRig(t, newMemStore(), 2)
			r.cfg.KafkaTimeout = 300 * time.Millisecond
			r.cfg.Partitions = tc.parts
			d, _ := testDeps(t, r.s, r.rec)
			logs := captureLog(t, d)
			var clients atomic.Int32
			silent := silentBroker(t)
			d.kafka = func(opts ...kgo.Opt) (*kgo.Client, error) {
				if clients.Add(1) == 1 { // the listing's brokers do not answer
					opts = append(opts, kgo.SeedBrokers(silent))
				}
				return kgo.NewClient(opts...)
			}
			r.readsEvery(t, d, 2)
			if n := clients.Load(); n != 4 {
				t.Errorf("%d Kafka clients made, want 4: two listings, then one a partition", n)
			}
			if n := logs.count("listing the topic's partitions failed; trying again"); n != 1 {
				t.Errorf("%d lines say the listing is tried again, want 1", n)
			}
		})
	}
}

// TestProcess_superseded_logs_and_exits: a second process on the same
// store and topic takes every partition from the first, as a rolling
// deploy (or a second replica) does. The first logs one INFO line a
// partition naming the newer owner, then one line saying it exits because
// it was replaced, by whom, and ends with no error (exit 0). The newer
// one, stopped by its signal, says nothing of the kind.
func TestProcess_superseded_logs_and_exits(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newProcessRig(t, b.open(t), 3)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 3, 0)
		d1, _ := testDeps(t, r.s, r.rec)
		oldLog := captureLog(t, d1)
		old := runningProcess(r.ctx, r.cfg, d1)
		waitFor(t, "the old process to read every partition", 5*time.Second, func() bool { return len(r.rec.writesPer()) == 3 })
		time.Sleep(2 * time.Millisecond) // a later start is a newer tick
		d2, _ := testDeps(t, r.s, r.rec)
		newLog := captureLog(t, d2)
		nctx, stopNew := context.WithCancel(r.ctx)
		fresh := runningProcess(nctx, r.cfg, d2)
		waitDone(t, "old process, handing every partition over,", old, 10*time.Second)
		newer := ""
		for p := range int32(3) {
			owner := mustLoad(t, r.s, leaseKey(r.cfg.Group, "src", p)).Owner
			if lines := oldLog.lines("level=INFO", `msg="superseded by a newer owner`, fmt.Sprintf("partition=%d ", p), "by="+owner+" "); len(lines) != 1 {
				t.Errorf("partition %d: %d INFO lines say it was superseded by %s, want 1:\n%s", p, len(lines), owner, strings.Join(oldLog.lines(`msg="superseded`), ""))
			}
			newer, _, _ = strings.Cut(owner, "/")
		}
		if n := oldLog.count(`msg="superseded`); n != 3 {
			t.Errorf("%d lines say superseded, want 3, one a partition", n)
		}
		if lines := oldLog.lines("level=INFO", "exiting because this process was replaced", "by=["+newer+"]", `partitions="[0 1 2]"`); len(lines) != 1 {
			t.Errorf("%d lines say the old process exits because %s replaced it, want 1:\n%s", len(lines), newer, strings.Join(oldLog.lines("was replaced"), ""))
		}
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopNew()
		waitDone(t, "new process", fresh, 10*time.Second)
		wantTally(t, r.rec.tally(total), 0, 3)
		if n := newLog.count(`msg="superseded`) + newLog.count("was replaced"); n != 0 {
			t.Errorf("the newer process, stopped by its signal, logged %d lines of being superseded or replaced", n)
		}
	})
}

// TestProcess_forced_exit_with_no_lease_left: a second signal after every
// lease was released or handed over leaves nothing running: the line says
// none, not an ERROR with "partitions" empty. With one left, it is an
// ERROR naming it.
func TestProcess_forced_exit_with_no_lease_left(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		s, cfg := b.open(t), testConfig(t, nil, "src")
		d, _ := testDeps(t, s, nil)
		logs := captureLog(t, d)
		owner := "process-0a0b"
		for p := range int32(2) {
			l := mustTake(t, s, leaseKey(cfg.Group, "src", p), lease{}, claim{Owner: fmt.Sprintf("%s/%d", owner, p), Tick: 1000})
			mustRelease(t, s, l, 5)
		}
		logLeftRunning(cfg, d, []int32{0, 1}, owner)
		if lines := logs.lines("level=INFO", "forced exit", "no lease left running", "partitions=none"); len(lines) != 1 || logs.count("level=ERROR") != 0 || logs.count(`partitions=""`) != 0 {
			t.Errorf("with every lease released: want one INFO line saying none is left, got:\n%s", strings.Join(logs.lines("forced exit"), ""))
		}
		mustTake(t, s, leaseKey(cfg.Group, "src", 2), lease{}, claim{Owner: owner + "/2", Tick: 1000})
		logLeftRunning(cfg, d, []int32{0, 1, 2}, owner)
		if lines := logs.lines("level=ERROR", "leases left running", `partitions="2 until `); len(lines) != 1 {
			t.Errorf("with partition 2 running: want one ERROR line naming it, got:\n%s", strings.Join(logs.lines("forced exit"), ""))
		}
	})
}
