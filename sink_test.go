// sink_test.go checks the sinks, the dead-letter topic and the -match
// filter: what reaches the sink, what reaches the dead-letter topic, and
// where the lease's offset ends.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestSink_parse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in            string
		scheme, topic string
		wantErr       bool
	}{
		{"stdout", "stdout", "", false},
		{"discard", "discard", "", false},
		{"kafka://out", "kafka", "out", false},
		{"kafka://out.v2_x-y", "kafka", "out.v2_x-y", false},
		{"kafka://", "", "", true},
		{"kafka+txn://out", "kafka+txn", "out", false},
		{"kafka+txn://", "", "", true},
		{"kafka+tx://out", "", "", true},
		{"kafka://a/b", "", "", true},
		{"kafka://a b", "", "", true},
		{"kafka:/out", "", "", true},
		{"s3://x", "", "", true},
		{"STDOUT", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			scheme, topic, err := parseSink(tt.in)
			if (err != nil) != tt.wantErr || scheme != tt.scheme || topic != tt.topic {
				t.Fatalf("parseSink(%q) = %q, %q, %v; want %q, %q, an error: %v", tt.in, scheme, topic, err, tt.scheme, tt.topic, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
				t.Errorf("error %q does not show the value", err)
			}
		})
	}
}

// stdoutLine is one line of the stdout sink, as a reader decodes it.
type stdoutLine struct {
	Topic     string         `json:"topic"`
	Partition int32          `json:"partition"`
	Offset    int64          `json:"offset"`
	Timestamp int64          `json:"timestamp_ms"`
	Key       *string        `json:"key"`
	KeyB64    *string        `json:"key_b64"`
	Value     *string        `json:"value"`
	ValueB64  *string        `json:"value_b64"`
	Headers   []stdoutHeader `json:"headers"`
}

type stdoutHeader struct {
	Key      string  `json:"key"`
	Value    *string `json:"value"`
	ValueB64 *string `json:"value_b64"`
}

// stdoutLines decodes every line of out; each must be one JSON object.
func stdoutLines(t *testing.T, out []byte) []stdoutLine {
	t.Helper()
	var lines []stdoutLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l stdoutLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %d %q: %v", len(lines)+1, sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestSink_stdout_json_lines(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1767366240123)
	binary := []byte{0xff, 0x00, 0xfe, 'x'}
	tests := []struct {
		name string
		rec  *kgo.Record
		want stdoutLine
	}{
		{"utf-8 value, key and headers",
			&kgo.Record{Topic: "src", Partition: 1, Offset: 7, Timestamp: at, Key: []byte("k1"), Value: []byte("héllo \"world\"\n"),
				Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "n", Value: []byte("1")}}},
			stdoutLine{Topic: "src", Partition: 1, Offset: 7, Timestamp: at.UnixMilli(), Key: new("k1"), Value: new("héllo \"world\"\n"),
				Headers: []stdoutHeader{{Key: "trace", Value: new("abc")}, {Key: "n", Value: new("1")}}}},
		{"binary value, no key",
			&kgo.Record{Topic: "src", Partition: 1, Offset: 8, Timestamp: at, Value: binary},
			stdoutLine{Topic: "src", Partition: 1, Offset: 8, Timestamp: at.UnixMilli(), ValueB64: new(base64.StdEncoding.EncodeToString(binary))}},
		{"empty key and value",
			&kgo.Record{Topic: "src", Partition: 1, Offset: 9, Timestamp: at, Key: []byte{}, Value: []byte{}},
			stdoutLine{Topic: "src", Partition: 1, Offset: 9, Timestamp: at.UnixMilli(), Key: new(""), Value: new("")}},
	}
	var buf bytes.Buffer
	var rs []*kgo.Record
	for _, tt := range tests {
		rs = append(rs, tt.rec)
	}
	writeFlush(t, newStdoutSink(&buf), rs...)
	if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
		t.Errorf("output does not end in a newline: %q", buf.String())
	}
	lines := stdoutLines(t, buf.Bytes())
	if got, want := len(lines), len(tests); got != want {
		t.Fatalf("%d lines, want %d:\n%s", got, want, buf.String())
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := lines[i], tt.want; !reflect.DeepEqual(got, want) {
				t.Errorf("line %d:\ngot  %s\nwant %s", i+1, showLine(got), showLine(want))
			}
		})
	}
}

// TestSink_stdout_same_bytes_as_encoding_json: the stdout sink's encoder
// writes what json.Marshal wrote for a record before it (marshalLine), byte
// for byte: escapes, HTML characters, U+2028, bytes that are not UTF-8 in a
// header key, nil and empty keys and values, base64.
func TestSink_stdout_same_bytes_as_encoding_json(t *testing.T) {
	t.Parallel()
	// Bytes that each take a path of their own through the encoder.
	pieces := [][]byte{[]byte("a"), []byte("héllo"), []byte(`"`), []byte(`\`), []byte("<>&"), []byte("\b\f\n\r\t"),
		{0x00}, {0x01}, {0x1f}, {0x7f}, []byte("\u2028"), []byte("\u2029"), []byte("€"), []byte("𝄞"), {0xff}, {0xe2, 0x80}, {0xc3}, []byte("/")}
	rnd := rand.New(rand.NewPCG(1, 2))
	gen := func() []byte {
		switch rnd.IntN(6) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		var b []byte
		for range rnd.IntN(8) {
			b = append(b, pieces[rnd.IntN(len(pieces))]...)
		}
		return b
	}
	for i := range 5000 {
		r := &kgo.Record{Topic: "src", Partition: int32(rnd.IntN(100)), Offset: rnd.Int64N(1<<40) - 5,
			Timestamp: time.UnixMilli(rnd.Int64N(1<<42) - 1<<41), Key: gen(), Value: gen()}
		if i%7 == 0 {
			r.Timestamp = time.Time{}
		}
		for range rnd.IntN(3) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(gen()), Value: gen()})
		}
		if i%11 == 0 {
			r.Headers = []kgo.RecordHeader{}
		}
		got, want := appendLine(nil, r), marshalLine(t, r)
		if !bytes.Equal(got, want) {
			t.Fatalf("record %+v:\ngot  %s\nwant %s", r, got, want)
		}
	}
}

// marshalLine is a record's line as the stdout sink wrote it with
// encoding/json, before it had an encoder of its own.
func marshalLine(t *testing.T, r *kgo.Record) []byte {
	type header struct {
		Key      string  `json:"key"`
		Value    *string `json:"value,omitempty"`
		ValueB64 []byte  `json:"value_b64,omitempty"`
	}
	type record struct {
		Topic     string   `json:"topic"`
		Partition int32    `json:"partition"`
		Offset    int64    `json:"offset"`
		Timestamp int64    `json:"timestamp_ms"`
		Key       *string  `json:"key,omitempty"`
		KeyB64    []byte   `json:"key_b64,omitempty"`
		Value     *string  `json:"value,omitempty"`
		ValueB64  []byte   `json:"value_b64,omitempty"`
		Headers   []header `json:"headers,omitempty"`
	}
	text := func(b []byte) (*string, []byte) {
		if b == nil {
			return nil, nil
		}
		if utf8.Valid(b) {
			s := string(b)
			return &s, nil
		}
		return nil, b
	}
	j := record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli()}
	j.Key, j.KeyB64 = text(r.Key)
	j.Value, j.ValueB64 = text(r.Value)
	for _, h := range r.Headers {
		jh := header{Key: h.Key}
		jh.Value, jh.ValueB64 = text(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func showLine(l stdoutLine) string {
	b, _ := json.Marshal(l)
	return string(b)
}

// writeFlush writes rs to s, then flushes it.
func writeFlush(t *testing.T, s sink, rs ...*kgo.Record) {
	t.Helper()
	for _, r := range rs {
		if err := s.write(ctxT(t), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
}

func TestSink_stdout_abort_drops_unflushed(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	var buf bytes.Buffer
	s := newStdoutSink(&buf)
	writeFlush(t, s, &kgo.Record{Topic: "src", Value: []byte("kept")})
	if err := s.write(ctx, &kgo.Record{Topic: "src", Offset: 1, Value: []byte("dropped")}); err != nil {
		t.Fatal(err)
	}
	s.abort(ctx)
	_ = s.flush(ctx, 0)
	lines := stdoutLines(t, buf.Bytes())
	if len(lines) != 1 || lines[0].Value == nil || *lines[0].Value != "kept" {
		t.Fatalf("after abort: %q; want only the flushed record", buf.String())
	}
}

func TestSink_stdout_binary_key_kept(t *testing.T) {
	t.Parallel()
	key := []byte{0xff, 0x01}
	var buf bytes.Buffer
	writeFlush(t, newStdoutSink(&buf), &kgo.Record{Topic: "src", Key: key, Value: []byte("v")})
	var line struct {
		Key    *string `json:"key"`
		KeyB64 []byte  `json:"key_b64"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	got := line.KeyB64
	if got == nil && line.Key != nil {
		got = []byte(*line.Key)
	}
	if !bytes.Equal(got, key) {
		t.Errorf("key reads back as %x, want %x: %s", got, key, buf.String())
	}
}

// TestSink_stdout_lines_stay_whole_across_partitions: in process mode every
// partition's run has its own stdoutSink over the one os.Stdout.
func TestSink_stdout_lines_stay_whole_across_partitions(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	var out bytes.Buffer
	p0, p1 := newStdoutSink(&out), newStdoutSink(&out)
	big := strings.Repeat("x", 3000)
	for i, s := range []*stdoutSink{p0, p1, p1} {
		if err := s.write(ctx, &kgo.Record{Topic: "src", Offset: int64(i), Value: []byte(big)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*stdoutSink{p0, p1} {
		if err := s.flush(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := len(stdoutLines(t, out.Bytes())), 3; got != want {
		t.Fatalf("%d lines, want %d", got, want)
	}
}

// mustProduce writes the records, each to the partition it names, and
// waits for them to be acknowledged.
func mustProduce(t *testing.T, brokers []string, rs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeN reads n records of topic, across its partitions, from the start.
func consumeN(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableFetchSessions())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// A limit, not a wait: on a machine loaded by the chaos seeds a fresh
	// client took more than 3 s to its first fetch once.
	ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s", len(got), n, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		got = append(got, fs.Records()...)
	}
	return got
}

// waitCommitted waits until the lease of topic/partition holds offset.
func waitCommitted(t *testing.T, cfg *config, d *deps, topic string, partition int32, offset int64) {
	t.Helper()
	key := leaseKey(cfg.Group, topic, partition)
	waitFor(t, fmt.Sprintf("%s to commit offset %d", key, offset), 3*time.Second, func() bool {
		l, err := d.store.load(context.Background(), key)
		return err == nil && l.Offset == offset
	})
}

// on is a copy of the writes to partition p's sink, in order.
func (r *recorder) on(p int32) []write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes[p])
}

// sinkOffsets is the offsets of partition's records that reached the sink,
// in order.
func sinkOffsets(r *recorder, partition int32) []int64 {
	var offs []int64
	for _, w := range r.on(partition) {
		offs = append(offs, w.Offset)
	}
	return offs
}

// headerMap is a record's headers by key.
func headerMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func TestSink_kafka_keeps_keys_headers_and_partition(t *testing.T) {
	t.Parallel()
	cfg := newRig(t, nil, 3, "out").cfg
	cfg.SinkScheme, cfg.SinkTopic = "kafka", "out"
	d, _ := testDeps(t, newMemStore(), nil)
	var sent []*kgo.Record
	for i := range 5 {
		r := &kgo.Record{Topic: "src", Partition: 2, Value: fmt.Appendf(nil, "v%d", i),
			Headers: []kgo.RecordHeader{{Key: "seq", Value: fmt.Appendf(nil, "%d", i)}, {Key: "from", Value: []byte("test")}}}
		if i != 3 {
			r.Key = fmt.Appendf(nil, "k%d", i) // record 3 has no key
		}
		sent = append(sent, r)
	}
	mustProduce(t, cfg.Brokers, sent...)
	out, err := runTo(t, cfg, d, 2, int64(len(sent)))
	wantEnd(t, "A at shutdown", out, err, endReleased)
	if got, want := out.Written, len(sent); got != want {
		t.Errorf("outcome says %d written, want %d", got, want)
	}

	got := consumeN(t, cfg.Brokers, "out", len(sent))
	if len(got) != len(sent) {
		t.Fatalf("sink topic has %d records, want %d", len(got), len(sent))
	}
	for i, r := range got {
		w := sent[i]
		sameHeaders := slices.EqualFunc(r.Headers, w.Headers, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) })
		if r.Partition != 2 || (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || !sameHeaders {
			t.Errorf("record %d: partition %d, key %q, value %q, headers %v; want 2, %q, %q (in order), %v",
				i, r.Partition, r.Key, r.Value, r.Headers, w.Key, w.Value, w.Headers)
		}
	}
}

// wantDeadLetterHeaders checks that dead letter dl kept its record's trace
// header, t1, and names its source, src/0 offset 1; it gives dl's headers.
func wantDeadLetterHeaders(t *testing.T, dl *kgo.Record) map[string]string {
	t.Helper()
	h := headerMap(dl)
	for k, want := range map[string]string{"trace": "t1", "baton.source.topic": "src",
		"baton.source.partition": "0", "baton.source.offset": "1"} {
		if got := h[k]; got != want {
			t.Errorf("dead letter header %s = %q, want %q (headers %v)", k, got, want, h)
		}
	}
	return h
}

// failOn is an action that fails on one value and keeps the others.
func failOn(value string, err error) actionFunc {
	return func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		if string(r.Value) == value {
			return nil, err
		}
		return append(out, r), nil
	}
}

var errBadValue = errors.New("value is bad")

func TestDLQ_failed_record_goes_to_dlq_with_headers(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1, "dlq")
	cfg, rec := r.cfg, r.rec
	cfg.DLQ = "dlq"
	d, _ := testDeps(t, r.s, rec)
	d.action = failOn("bad", errBadValue)
	mustProduce(t, cfg.Brokers,
		&kgo.Record{Topic: "src", Value: []byte("good")},
		&kgo.Record{Topic: "src", Key: []byte("kb"), Value: []byte("bad"), Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}},
		&kgo.Record{Topic: "src", Value: []byte("good")})
	out, err := runTo(t, cfg, d, 0, 3)
	wantEnd(t, "A, going on past the bad record, at shutdown", out, err, endReleased)
	if out.Records != 3 || out.Written != 2 || out.DeadLettered != 1 {
		t.Errorf("outcome %+v; want 3 records, 2 written, 1 dead-lettered", out)
	}
	if got, want := sinkOffsets(rec, 0), []int64{0, 2}; !slices.Equal(got, want) {
		t.Errorf("sink got offsets %v, want %v", got, want)
	}
	if l := mustLoad(t, d.store, r.key); l.Offset != 3 || l.State != stateReleased {
		t.Errorf("lease %+v; want released at offset 3", l)
	}

	dl := consumeN(t, cfg.Brokers, "dlq", 1)[0]
	if string(dl.Value) != "bad" || string(dl.Key) != "kb" {
		t.Errorf("dead letter value %q, key %q; want bad, kb", dl.Value, dl.Key)
	}
	h := wantDeadLetterHeaders(t, dl)
	if got := h["baton.error"]; !strings.Contains(got, errBadValue.Error()) {
		t.Errorf("dead letter header baton.error = %q, want it to hold %q", got, errBadValue)
	}
}

func TestDLQ_without_dlq_stops_and_keeps_offset(t *testing.T) {
	t.Parallel()
	cluster, rec := newCluster(t, 1, "src"), newRecorder(nil)
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	d, _ := testDeps(t, newMemStore(), rec)
	d.action = failOn("bad", errBadValue)
	mustProduce(t, cfg.Brokers,
		&kgo.Record{Topic: "src", Value: []byte("good")},
		&kgo.Record{Topic: "src", Value: []byte("bad")},
		&kgo.Record{Topic: "src", Value: []byte("good")})
	key := leaseKey(cfg.Group, "src", 0)

	for i, owner := range []string{"A", "B"} {
		ctx, cancel := context.WithCancel(ctxT(t))
		out, err := invoke(ctx, cfg, d, invocation{Topic: "src", Partition: 0, Tick: int64(1000 * (i + 1)), Owner: owner}, 3*time.Second)()
		cancel()
		if !errors.Is(err, errBadValue) || !strings.Contains(err.Error(), "offset 1") {
			t.Fatalf("%s: error %v; want the action's error naming offset 1", owner, err)
		}
		if out.End != endError || out.To != 1 {
			t.Errorf("%s: outcome %+v; want an error end at offset 1", owner, out)
		}
		l := mustLoad(t, d.store, key)
		if got, want := l.Offset, int64(1); got != want || l.State != stateReleased {
			t.Errorf("%s: lease %+v; want released at the bad record's offset %d", owner, l, want)
		}
	}
	if got, want := sinkOffsets(rec, 0), []int64{0}; !slices.Equal(got, want) {
		t.Errorf("sink got offsets %v, want %v: only what came before the bad record, once", got, want)
	}
}

func TestAction_match_filters(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	cfg, rec := r.cfg, r.rec
	cfg.Match = regexp.MustCompile(`^keep`)
	d, _ := testDeps(t, r.s, rec)
	var rs []*kgo.Record
	for _, v := range []string{"keep-0", "drop-1", "keep-2", "drop-3", "drop-4 keep"} {
		rs = append(rs, &kgo.Record{Topic: "src", Value: []byte(v)})
	}
	mustProduce(t, cfg.Brokers, rs...)
	out, err := runTo(t, cfg, d, 0, int64(len(rs)))
	wantEnd(t, "A at shutdown", out, err, endReleased)
	if got, want := sinkOffsets(rec, 0), []int64{0, 2}; !slices.Equal(got, want) {
		t.Errorf("sink got offsets %v, want %v", got, want)
	}
	if out.Records != len(rs) || out.Written != 2 {
		t.Errorf("outcome %+v; want %d records read, 2 written", out, len(rs))
	}
	if l, want := mustLoad(t, d.store, r.key), int64(len(rs)); l.Offset != want || l.State != stateReleased {
		t.Errorf("lease %+v; want released at offset %d, past the records filtered out", l, want)
	}
}

// TestSink_kafka_shutdown_keeps_records_in_flight: a shutdown ends the run,
// not the records it already gave the sink: one still retrying when the
// context is cancelled is delivered, and the lease released past it.
func TestSink_kafka_shutdown_keeps_records_in_flight(t *testing.T) {
	t.Parallel()
	r, d, _ := newKafkaSinkRig(t, newMemStore(), 1)
	cfg, cluster := r.cfg, r.cluster
	cfg.KafkaOpts = []kgo.Opt{kgo.MetadataMinAge(10 * time.Millisecond)} // retry at once

	// The sink's first produce request is held until the run is told to
	// shut down, and then answered with a retriable error.
	arrived, shutDown := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cluster.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() { close(arrived) })
		cluster.SleepControl(func() { <-shutDown })
		return refuseProduce(req.(*kmsg.ProduceRequest), kerr.NotLeaderForPartition.Code), nil, true
	})

	cancel, wait := r.start(d, 1000, "A")
	select {
	case <-arrived:
	case <-time.After(3 * time.Second):
		t.Fatal("the sink never produced")
	}
	cancel()
	close(shutDown)
	out, err := wait()
	wantEnd(t, "A at shutdown", out, err, endReleased)
	if l := mustLoad(t, d.store, r.key); l.Offset != 1 {
		t.Errorf("lease offset %d, want 1", l.Offset)
	}
	if got := consumeN(t, cfg.Brokers, "out", 1); string(got[0].Value) != "0" {
		t.Errorf("sink topic holds %q, want 0", got[0].Value)
	}
}

// TestSink_kafka_new_records_keep_source_partition: records an action makes
// (rather than passes on) go to the sink partition of their source too.
func TestSink_kafka_new_records_keep_source_partition(t *testing.T) {
	t.Parallel()
	cfg := newRig(t, nil, 3, "out").cfg
	cfg.SinkScheme, cfg.SinkTopic = "kafka", "out"
	d, _ := testDeps(t, newMemStore(), nil)
	d.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		return append(out, &kgo.Record{Key: r.Key, Value: bytes.ToUpper(r.Value)}), nil
	}
	mustProduce(t, cfg.Brokers, &kgo.Record{Topic: "src", Partition: 2, Value: []byte("v")})
	out, err := runTo(t, cfg, d, 2, 1)
	wantEnd(t, "A at shutdown", out, err, endReleased)
	r := consumeN(t, cfg.Brokers, "out", 1)[0]
	if got, want := r.Partition, int32(2); got != want || string(r.Value) != "V" {
		t.Errorf("new record %q on sink partition %d, want \"V\" on %d", r.Value, got, want)
	}
}

// TestSink_kafka_failure_reads_again: a produce the broker refuses for good
// fails the sink; the owner drops what it holds and reads again from its
// last commit, in the same run, instead of ending it. Nothing is lost;
// records since that commit may reach the sink twice (at-least-once).
func TestSink_kafka_failure_reads_again(t *testing.T) {
	t.Parallel()
	r, d, _ := newKafkaSinkRig(t, newMemStore(), 0)
	cfg, ctx := r.cfg, r.ctx
	var sinkProduces atomic.Int64
	refused := refuseOut(r.cluster, func(*kmsg.ProduceRequest) bool { return sinkProduces.Add(1) == 3 }, kerr.InvalidRecord.Code)
	produced, _ := flowing(t, ctx, cfg, 1, 1500*time.Millisecond)
	var emf bytes.Buffer
	d.emf = &emf
	a, err := runInvocation(within(t, ctx, 3*time.Second), cfg, d, invocation{Topic: "src", Partition: 0, Tick: 1000, Owner: "A"})
	total := produced()
	tl := newSinkReader(t, cfg.Brokers, "out", false).tally(ctx, total, time.Second)
	t.Logf("%+v %v; sink %+v", a, err, tl)
	if refused.Load() != 1 || err != nil || a.End != endReleased || a.Rewinds != 1 || int64(a.Records) <= a.To {
		t.Fatalf("refused %d produces; %+v, %v; want one refused, the run released after reading some records again", refused.Load(), a, err)
	}
	if tl.Lost != 0 {
		t.Fatalf("sink: %+v; want nothing lost", tl)
	}
	n := 0
	for _, l := range parseEMF(t, emf.Bytes()) {
		n += l.num("SinkRewinds")
	}
	if n != 1 {
		t.Fatalf("EMF SinkRewinds sum to %d; want 1", n)
	}
}
