// sinkfault_test.go checks what an owner does when its sink or its lease
// store fails: a stdout write that fails, a produce the broker refuses, a
// record too large for the sink, a store that stops answering. Nothing may
// be lost, the committed offset never passes a record the sink lacks, and
// the log says so once, not at every retry.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
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
)

// logBuffer holds a run's log lines, read while the run goes on.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines are the lines that hold every one of parts.
func (l *logBuffer) lines(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []string
	for line := range strings.Lines(l.b.String()) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			found = append(found, line)
		}
	}
	return found
}

func (l *logBuffer) count(parts ...string) int { return len(l.lines(parts...)) }

// captureLog sends d's log to a buffer, and to stderr as well under
// BATON_TEST_LOG.
func captureLog(t testing.TB, d *deps) *logBuffer {
	lb := &logBuffer{}
	var w io.Writer = lb
	if os.Getenv("BATON_TEST_LOG") != "" {
		w = io.MultiWriter(lb, os.Stderr)
	}
	d.log = slog.New(slog.NewTextHandler(w, nil)).With("test", t.Name())
	return lb
}

// flakyWriter is a redirected stdout that fails on cue: fail holds the
// error of a Write call by its number, from 1. With ENOSPC half the bytes,
// ending inside a line, are written first, as on a disk that fills up.
type flakyWriter struct {
	mu     sync.Mutex
	out    bytes.Buffer
	writes int
	fail   map[int]error
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	err := w.fail[w.writes]
	if err == nil {
		return w.out.Write(p)
	}
	n := 0
	if errors.Is(err, syscall.ENOSPC) {
		if n = len(p) / 2; p[n-1] == '\n' {
			n++
		}
		w.out.Write(p[:n])
	}
	return n, err
}

func (w *flakyWriter) calls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

func (w *flakyWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.out.Bytes())
}

// writtenBefore is the offset before which every record is on the output,
// counting whole lines only.
func (w *flakyWriter) writtenBefore() int64 {
	out := w.bytes()
	seen := map[int64]bool{}
	for line := range strings.Lines(string(out[:bytes.LastIndexByte(out, '\n')+1])) {
		var l stdoutLine
		if json.Unmarshal([]byte(line), &l) == nil {
			seen[l.Offset] = true
		}
	}
	n := int64(0)
	for seen[n] {
		n++
	}
	return n
}

// watchedStore checks, as each offset is recorded (commit, release,
// hand-over), that every record before it reached the sink (written), and
// keeps what broke that.
type watchedStore struct {
	hookStore
	mu     sync.Mutex
	passed []string
}

func newWatchedStore(s store, written func() int64) *watchedStore {
	w := &watchedStore{}
	w.hookStore = hookStore{store: s, before: func(_ context.Context, call storeCall) error {
		switch call.op {
		case "commit", "release", "handOver":
			if n := written(); call.offset > n {
				w.mu.Lock()
				defer w.mu.Unlock()
				w.passed = append(w.passed, fmt.Sprintf("%s at offset %d with only %d records written", call.op, call.offset, n))
			}
		}
		return nil
	}}
	return w
}

func (w *watchedStore) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.passed)
}

// numbered is n records for src/0 whose values are their offsets, from from.
func numbered(from, n int) []*kgo.Record {
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: "src", Value: []byte(strconv.Itoa(from + i))})
	}
	return rs
}

// wantInOrder checks an at-least-once stream: each value first appears in
// the order of want, with nothing missing and nothing else; a value may
// come again (read again after a rewind).
func wantInOrder(t *testing.T, what string, got, want []string) {
	t.Helper()
	var first []string
	for _, v := range got {
		if !slices.Contains(first, v) {
			first = append(first, v)
		}
	}
	if !slices.Equal(first, want) {
		t.Errorf("%s: %v; want %v in this order (repeats allowed)", what, got, want)
	}
}

func values(rs []*kgo.Record) []string {
	var vs []string
	for _, r := range rs {
		vs = append(vs, string(r.Value))
	}
	return vs
}

func TestSink_stdout_write_error_loses_nothing(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		cfg := r.cfg
		cfg.SinkScheme = "stdout"
		// The first write stops mid-line on a full disk; the next, which
		// would finish that line, fails outright; then the disk recovers.
		w := &flakyWriter{fail: map[int]error{1: syscall.ENOSPC, 2: syscall.EIO}}
		s := newWatchedStore(r.s, w.writtenBefore)
		d, _ := testDeps(t, s, nil)
		d.stdout = w
		log := captureLog(t, d)
		mustProduce(t, cfg.Brokers, numbered(0, 30)...)

		cancel, wait := r.start(d, 1000, "A")
		waitFor(t, "the writes to fail and then succeed", 5*time.Second, func() bool { return w.calls() >= 4 })
		mustProduce(t, cfg.Brokers, numbered(30, 30)...)
		waitCommitted(t, cfg, d, "src", 0, 60)
		cancel()
		out, err := wait()
		wantEnd(t, "A at shutdown", out, err, endReleased)
		if got, want := out.Rewinds, 2; got != want {
			t.Errorf("%d rewinds, want %d (one a failed write)", got, want)
		}
		if v := s.violations(); len(v) > 0 {
			t.Errorf("the lease passed records not on the output: %v", v)
		}
		var got []string
		for _, l := range stdoutLines(t, w.bytes()) { // every line whole
			got = append(got, *l.Value)
		}
		wantInOrder(t, "stdout", got, values(numbered(0, 60)))
		if got, want := log.count("sink failed; reading again"), 2; got != want {
			t.Errorf("%d rewind lines, want %d", got, want)
		}
		if n := log.count("level=ERROR"); n != 0 {
			t.Errorf("%d ERROR lines, want none: %v", n, log.lines("level=ERROR"))
		}
	})
}

// TestSink_stdout_cut_line_finished_first: a write cut short mid-line is
// finished by the next write to that stdout, even another partition's, so
// no line is ever broken or joined to another.
func TestSink_stdout_cut_line_finished_first(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	w := &flakyWriter{fail: map[int]error{1: syscall.ENOSPC}}
	p0, p1 := newStdoutSink(w), newStdoutSink(w)
	for i := range 3 {
		if err := p0.write(ctx, &kgo.Record{Topic: "src", Offset: int64(i), Value: []byte("p0")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p0.flush(ctx, 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("flush: %v; want the write's ENOSPC", err)
	}
	if err := p0.write(ctx, &kgo.Record{Topic: "src", Offset: 3, Value: []byte("p0")}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write after a failed flush: %v; want the failure until abort", err)
	}
	writeFlush(t, p1, &kgo.Record{Topic: "src", Partition: 1, Value: []byte("p1")})
	p0.abort(ctx)
	writeFlush(t, p0, &kgo.Record{Topic: "src", Value: []byte("p0")}) // after abort
	var got []string
	for _, l := range stdoutLines(t, w.bytes()) {
		got = append(got, fmt.Sprintf("%d/%d", l.Partition, l.Offset))
	}
	// p0's first line was whole, its second cut and then finished.
	if want := []string{"0/0", "0/1", "1/0", "0/0"}; !slices.Equal(got, want) {
		t.Errorf("lines %v, want %v", got, want)
	}
}

// newKafkaSinkRig is a rig whose sink is topic out, with the other topics,
// and n numbered records on src/0; d runs on its store, its log captured.
func newKafkaSinkRig(t *testing.T, s store, n int, topics ...string) (*rig, *deps, *logBuffer) {
	r := newRig(t, s, 1, append([]string{"out"}, topics...)...)
	r.cfg.SinkScheme, r.cfg.SinkTopic = "kafka", "out"
	d, _ := testDeps(t, r.s, nil)
	if n > 0 {
		mustProduce(t, r.cfg.Brokers, numbered(0, n)...)
	}
	return r, d, captureLog(t, d)
}

// refuseOut makes the broker answer produce requests to topic out with
// code while refuse says so.
func refuseOut(cluster *kfake.Cluster, refuse func(*kmsg.ProduceRequest) bool, code int16) *atomic.Int64 {
	var refused atomic.Int64
	id := cluster.TopicInfo("out").TopicID
	cluster.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		toOut := len(pr.Topics) > 0 && (pr.Topics[0].Topic == "out" || pr.Topics[0].TopicID == id)
		if !toOut || !refuse(pr) {
			return nil, nil, false
		}
		refused.Add(1)
		return refuseProduce(pr, code), nil, true
	})
	return &refused
}

// TestSink_refused_produce_on_idle_partition_recovers: the broker refuses a
// produce and nothing more comes to read, so the failure shows only at the
// commit's flush. The owner reads again from its last commit, writes the
// records again and goes on committing and renewing, in the same run.
func TestSink_refused_produce_on_idle_partition_recovers(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r, d, log := newKafkaSinkRig(t, b.open(t), 5)
		cfg := r.cfg
		var once atomic.Bool
		refused := refuseOut(r.cluster, func(*kmsg.ProduceRequest) bool { return once.CompareAndSwap(false, true) },
			kerr.PolicyViolation.Code)

		cancel, wait := r.start(d, 1000, "A")
		waitCommitted(t, cfg, d, "src", 0, 5)
		before := mustLoad(t, d.store, r.key)
		lines := len(log.lines(""))
		time.Sleep(5 * cfg.CommitEvery)
		after := mustLoad(t, d.store, r.key)
		if after.Owner != "A" || after.State != stateRunning || after.ExpiresAt <= before.ExpiresAt {
			t.Errorf("lease %+v then %+v; want A's, running and renewed", before, after)
		}
		if n := len(log.lines("")) - lines; n > 5 {
			t.Errorf("%d log lines in %v of an idle partition, want a few at most: %v", n, 5*cfg.CommitEvery, log.lines(""))
		}
		cancel()
		out, err := wait()
		if err != nil || out.End != endReleased || out.To != 5 {
			t.Fatalf("%+v, %v; want released at offset 5 at shutdown", out, err)
		}
		if got, want := refused.Load(), int64(1); got != want || out.Rewinds != 1 {
			t.Errorf("%d produces refused, %d rewinds; want %d and 1", got, out.Rewinds, want)
		}
		wantInOrder(t, "sink topic", values(consumeN(t, cfg.Brokers, "out", 5)), values(numbered(0, 5)))
		if n := log.count("will retry"); n != 0 {
			t.Errorf("%d retry lines, want none: a refused produce is not a lease store failure", n)
		}
	})
}

// TestSink_refused_produce_for_good_releases: a sink that refuses every
// produce fails the run after maxRewinds rewinds: it releases at its last
// commit, with one ERROR line saying where and what to do.
func TestSink_refused_produce_for_good_releases(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r, d, log := newKafkaSinkRig(t, b.open(t), 3)
		cfg := r.cfg
		var broken atomic.Bool
		refuseOut(r.cluster, func(*kmsg.ProduceRequest) bool { return broken.Load() }, kerr.PolicyViolation.Code)

		_, wait := r.start(d, 1000, "A")
		waitCommitted(t, cfg, d, "src", 0, 3)
		broken.Store(true)
		mustProduce(t, cfg.Brokers, numbered(3, 2)...)
		out, err := wait()
		if !errors.Is(err, kerr.PolicyViolation) || out.End != endError || out.To != 3 || out.Rewinds != maxRewinds {
			t.Fatalf("%+v, %v; want the refusal as the error, %d rewinds, released at offset 3", out, err, maxRewinds)
		}
		if l := mustLoad(t, d.store, r.key); l.Offset != 3 || l.State != stateReleased {
			t.Errorf("lease %+v; want released at the last commit, offset 3", l)
		}
		errs := log.lines("level=ERROR")
		if len(errs) != 1 || !strings.Contains(errs[0], "partition=0") || !strings.Contains(errs[0], "offset=3") || !strings.Contains(errs[0], "baton ctl seek") {
			t.Errorf("ERROR lines %q; want one naming partition 0, offset 3 and baton ctl seek", errs)
		}
		wantInOrder(t, "sink topic", values(consumeN(t, cfg.Brokers, "out", 3)), values(numbered(0, 3)))
	})
}

// bigValue is a record value larger than the sink's producer takes in
// TestSink_oversized_record_*, though the broker takes it from the source's
// producer.
var bigValue = bytes.Repeat([]byte("x"), 20<<10)

// TestSink_oversized_record_dead_lettered: a record the sink can never
// take, refused by the producer before it is sent or by the broker, goes to
// the dead-letter topic and the run goes on. The dead letter, too large
// itself, keeps its headers and the start of its value, and says so.
// TestSink_oversized_record_dead_lettered: a record the producer or the
// broker refuses for good goes to -dlq after one rewind, and the rest reach
// the sink in order; also with -concurrency 8 (what the window held is
// dropped at the rewind, and the records read alone are read one at a time).
func TestSink_oversized_record_dead_lettered(t *testing.T) {
	for _, refuser := range []string{"producer", "broker", "broker/n8"} {
		for _, b := range backends(t) {
			t.Run(refuser+"/"+b.name, func(t *testing.T) {
				t.Parallel()
				r, d, log := newKafkaSinkRig(t, b.open(t), 0, "dlq")
				cfg := r.cfg
				cfg.DLQ = "dlq"
				refuser := refuser // the subtests of one refuser run side by side
				if refuser == "broker/n8" {
					refuser, cfg.Concurrency = "broker", 8
				}
				limit := 16 << 10
				if refuser == "producer" {
					cfg.KafkaOpts = []kgo.Opt{kgo.ProducerBatchMaxBytes(int32(limit))}
				} else {
					// The broker refuses any batch holding the big record, along
					// with whatever else came in it.
					limit = 1000012
					cfg.KafkaOpts = []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())}
					refuseOut(r.cluster, func(pr *kmsg.ProduceRequest) bool {
						return len(pr.Topics[0].Partitions[0].Records) > len(bigValue)
					}, kerr.MessageTooLarge.Code)
				}
				rs := numbered(0, 4)
				for i, rec := range rs {
					if cfg.Concurrency > 1 {
						rec.Key = []byte(concKey(int64(i))) // keyed, so they are in the action at once
					}
				}
				rs[1].Value, rs[1].Headers = bigValue, []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}
				mustProduce(t, cfg.Brokers, rs...)
				out, err := runTo(t, cfg, d, 0, 4)
				// One rewind, even when the broker refused a batch whole: what
				// it held is read again one record at a time.
				if err != nil || out.End != endReleased || out.DeadLettered != 1 || out.Rewinds != 1 {
					t.Fatalf("%+v, %v; want one dead letter after one rewind, released at shutdown", out, err)
				}
				wantInOrder(t, "sink topic", values(consumeN(t, cfg.Brokers, "out", 3)), []string{"0", "2", "3"})

				dl := consumeN(t, cfg.Brokers, "dlq", 1)[0]
				h := wantDeadLetterHeaders(t, dl)
				if got := h["baton.error"]; !strings.Contains(got, "MESSAGE_TOO_LARGE") {
					t.Errorf("dead letter header baton.error = %q, want it to name MESSAGE_TOO_LARGE", got)
				}
				if refuser == "producer" {
					if got, want := h["baton.truncated"], strconv.Itoa(len(bigValue)); got != want {
						t.Errorf("dead letter header baton.truncated = %q, want %q (the value's size)", got, want)
					}
					if len(dl.Value) == 0 || len(dl.Value) >= limit || !bytes.HasPrefix(bigValue, dl.Value) {
						t.Errorf("dead letter value of %d bytes; want the start of the record's, under %d", len(dl.Value), limit)
					}
				} else if _, ok := h["baton.truncated"]; ok || !bytes.Equal(dl.Value, bigValue) {
					t.Errorf("dead letter of %d bytes, truncated %q; want the whole record: it fits the dead-letter topic", len(dl.Value), h["baton.truncated"])
				}
				if n := log.count("level=ERROR"); n != 0 {
					t.Errorf("%d ERROR lines, want none: %v", n, log.lines("level=ERROR"))
				}
			})
		}
	}
}

// TestSink_oversized_record_without_dlq_stops: with no -dlq a record the
// sink can never take ends the run at it, as an action's error does: the
// lease is released there and the error says how to get past it.
func TestSink_oversized_record_without_dlq_stops(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r, d, log := newKafkaSinkRig(t, b.open(t), 0)
		cfg := r.cfg
		cfg.KafkaOpts = []kgo.Opt{kgo.ProducerBatchMaxBytes(16 << 10)}
		rs := numbered(0, 3)
		rs[1].Value = bigValue
		mustProduce(t, cfg.Brokers, rs...)

		out, err := invoke(ctxT(t), cfg, d, invocation{Topic: "src", Partition: 0, Tick: 1000, Owner: "A"}, time.Minute)()
		if !errors.Is(err, kerr.MessageTooLarge) || out.End != endError || out.To != 1 {
			t.Fatalf("%+v, %v; want the refusal as the error, the run ended at offset 1", out, err)
		}
		wantNamed(t, err, "src/0 offset 1", "baton ctl seek", "-dlq")
		if l := mustLoad(t, d.store, r.key); l.Offset != 1 || l.State != stateReleased {
			t.Errorf("lease %+v; want released at the refused record, offset 1", l)
		}
		if errs := log.lines("level=ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "offset=1") {
			t.Errorf("ERROR lines %q; want one, at offset 1", errs)
		}
		// Records after the refused one may have been sent before its
		// refusal came back: the next run writes them again.
		if got := values(consumeN(t, cfg.Brokers, "out", 1)); got[0] != "0" || slices.Contains(got, string(bigValue)) {
			t.Errorf("sink topic: %.40q; want 0 first, and never the refused record", got)
		}
	})
}

// TestHandoff_store_down_commit_backs_off: while the lease store fails, the
// owner retries its commit with a growing wait, not every few milliseconds
// (even once its lease is too old to write), says so once, and renews at
// the first commit that succeeds.
func TestHandoff_store_down_commit_backs_off(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		cfg := r.cfg
		fa := newFaultStore(r.s)
		cs := newCountingStore(fa) // counts commits: the only writes here
		d, _ := testDeps(t, cs, nil)
		log := captureLog(t, d)
		mustProduce(t, cfg.Brokers, numbered(0, 5)...)

		cancel, wait := r.start(d, 1000, "A")
		waitCommitted(t, cfg, d, "src", 0, 5)
		// Down for longer than the lease may go unrenewed before writes
		// pause, and less than the lease: two commit intervals past the
		// pause, so the owner, idle between retries, sees it even on a
		// loaded machine.
		outage := cfg.TTL - cfg.RenewMargin + 2*cfg.CommitEvery
		fa.down.Store(true)
		before := cs.writes.Load()
		time.Sleep(outage)
		tries := cs.writes.Load() - before
		fa.down.Store(false)
		back := time.Now()
		waitFor(t, "a commit to renew the lease", 2*time.Second, func() bool {
			l, err := d.store.load(r.ctx, r.key)
			return err == nil && time.UnixMilli(l.ExpiresAt).After(back.Add(cfg.TTL/2))
		})
		// The line comes after the store's answer, which the read above may beat.
		waitFor(t, "the owner to say commits work again", 2*time.Second, func() bool { return log.count("commit succeeded again") > 0 })
		if max := int64(outage/minBackoff) + 1; tries > max || tries < 2 {
			t.Errorf("%d commits tried in %v of outage; want 2 to %d", tries, outage, max)
		}
		if n := log.count("will retry"); n != 1 {
			t.Errorf("%d retry lines, want 1: %v", n, log.lines("will retry"))
		}
		if log.count("commit succeeded again") != 1 || log.count("sink writes paused") != 1 {
			t.Errorf("want one line as commits fail, one as writes pause (the outage outlasts the renewal margin), one as commits succeed again: %v", log.lines(""))
		}
		if l := mustLoad(t, d.store, r.key); l.Owner != "A" || l.State != stateRunning {
			t.Errorf("lease %+v; want A's and running", l)
		}
		cancel()
		if out, err := wait(); err != nil || out.End != endReleased || out.To != 5 {
			t.Fatalf("%+v, %v; want released at offset 5 at shutdown", out, err)
		}
	})
}
