// sink.go holds the sinks: a Kafka topic, stdout (one JSON line a record),
// and discard.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A sink receives what the action keeps. write may return before the record
// is durable; flush returns once everything written is acknowledged, and only
// then does the owner commit the offsets before it.
type sink interface {
	write(ctx context.Context, r *kgo.Record) error
	flush(ctx context.Context) error
	// abort drops what is not yet acknowledged: a fenced owner writes
	// nothing more, and an owner whose sink failed reads from its last
	// commit again.
	abort(ctx context.Context)
}

// parseSink checks a -sink value: kafka://TOPIC, kafka+txn://TOPIC (exactly
// once, txn.go), stdout or discard.
func parseSink(v string) (scheme, topic string, err error) {
	if v == "stdout" || v == "discard" {
		return v, "", nil
	}
	for _, scheme := range []string{"kafka", "kafka+txn"} {
		if topic, ok := strings.CutPrefix(v, scheme+"://"); ok {
			if topic == "" || strings.ContainsAny(topic, "/ ") {
				return "", "", fmt.Errorf("want %s://TOPIC with a topic name, got %q", scheme, v)
			}
			return scheme, topic, nil
		}
	}
	return "", "", fmt.Errorf("want kafka://TOPIC, kafka+txn://TOPIC, stdout or discard, got %q", v)
}

// discardSink drops every record: for benchmarks and dry runs.
type discardSink struct{}

func (discardSink) write(context.Context, *kgo.Record) error { return nil }
func (discardSink) flush(context.Context) error              { return nil }
func (discardSink) abort(context.Context)                    {}

// kafkaSink produces to a topic through an idempotent producer. Records of
// source partition p go to partition p of the sink (modulo its count), so
// order per source partition survives.
type kafkaSink struct {
	cl    *kgo.Client
	topic string
	tx    *txn // the open transaction, for kafka+txn; nil otherwise

	mu  sync.Mutex
	err error // the first failed produce since the last flush
}

func newKafkaSink(cl *kgo.Client, topic string, tx *txn) *kafkaSink {
	s := &kafkaSink{cl: cl, topic: topic, tx: tx}
	if tx != nil {
		tx.sinks = append(tx.sinks, s)
	}
	return s
}

// samePartition sends a record to the partition it names, so that a sink
// keeps the source's partitioning.
var samePartition = kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
	return func(r *kgo.Record, n int) int { return int(r.Partition) % n }
})

func (s *kafkaSink) write(ctx context.Context, r *kgo.Record) error {
	if err := s.failed(); err != nil {
		return err
	}
	if s.tx != nil {
		if s.tx.err != nil {
			return s.tx.err
		}
		s.tx.writes++
	}
	// A shutdown must not fail records already handed to the sink: the
	// owner flushes them before it lets go of the lease. The record's own
	// context, which never ends either, names the record it came from.
	out := &kgo.Record{Topic: s.topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers, Context: fromSource{r}}
	s.cl.Produce(context.WithoutCancel(ctx), out, s.done)
	return nil
}

// fromSource rides in a produced record's Context, which the producer only
// asks whether it ended, so that a refused produce names the source offset
// (the run gives each record it writes its source's offset). One pointer
// fits in an interface without an allocation. It never ends, like the
// context.WithoutCancel it stands in for, and holds no values.
type fromSource struct{ r *kgo.Record }

func (fromSource) Deadline() (time.Time, bool) { return time.Time{}, false }
func (fromSource) Done() <-chan struct{}       { return nil }
func (fromSource) Err() error                  { return nil }
func (fromSource) Value(any) any               { return nil }

func (s *kafkaSink) done(r *kgo.Record, err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = fmt.Errorf("sink kafka://%s: produce: %w", r.Topic, err)
	if src, ok := r.Context.(fromSource); ok && refusedForGood(err) {
		s.err = &refusedError{Topic: r.Topic, Offset: src.r.Offset, err: s.err}
	}
}

// refusedForGood is a produce error that no retry can cure: the record is
// too large for the producer or the broker, or the broker finds it invalid
// (a compacted topic's record without a key, say). The producer refuses a
// record larger than its batch limit itself, with kerr.MessageTooLarge.
func refusedForGood(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord)
}

// refusedError is a produce refused for good; Offset is the source offset
// of the refused record (with a batch refused whole, of its first record).
type refusedError struct {
	Topic  string
	Offset int64
	err    error
}

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

func (s *kafkaSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// clear forgets a failed produce, once its transaction is aborted.
func (s *kafkaSink) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = nil
}

func (s *kafkaSink) flush(ctx context.Context) error {
	if err := s.cl.Flush(ctx); err != nil {
		return fmt.Errorf("sink kafka://%s: flush: %w", s.topic, err)
	}
	return s.failed()
}

// abort drops what is not acknowledged and forgets the failures, so the
// sink takes writes again (the owner reads from its last commit again).
func (s *kafkaSink) abort(ctx context.Context) {
	if s.tx != nil {
		s.tx.abort(ctx)
		return
	}
	_ = s.cl.AbortBufferedRecords(ctx)
	s.clear()
}

// stdoutSink writes one JSON object a line. Keys and values that are not
// UTF-8 are written as base64 under key_b64 and value_b64.
type stdoutSink struct {
	w   io.Writer
	buf bytes.Buffer
	err error // a failed write, kept until abort: nothing more is written
}

var (
	// stdoutMu keeps lines whole when several partitions share one stdout.
	stdoutMu sync.Mutex
	// stdoutCut holds, per writer, the rest of a line that a failed write
	// cut short. The next write to that writer, by any sink, finishes it
	// first, so every line on the output is whole. Guarded by stdoutMu.
	stdoutCut = map[io.Writer][]byte{}
)

// stdoutChunk is how much the sink holds before it writes whole lines out.
const stdoutChunk = 64 << 10

// newStdoutSink writes to w, which must be comparable (os.Stdout is): it
// keys stdoutCut.
func newStdoutSink(w io.Writer) *stdoutSink { return &stdoutSink{w: w} }

type jsonRecord struct {
	Topic     string       `json:"topic"`
	Partition int32        `json:"partition"`
	Offset    int64        `json:"offset"`
	Timestamp int64        `json:"timestamp_ms"`
	Key       *string      `json:"key,omitempty"`
	KeyB64    []byte       `json:"key_b64,omitempty"`
	Value     *string      `json:"value,omitempty"`
	ValueB64  []byte       `json:"value_b64,omitempty"`
	Headers   []jsonHeader `json:"headers,omitempty"`
}

type jsonHeader struct {
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 []byte  `json:"value_b64,omitempty"`
}

// text returns b as a string when it is UTF-8, else as bytes for base64.
func text(b []byte) (*string, []byte) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	return nil, b
}

func (s *stdoutSink) write(ctx context.Context, r *kgo.Record) error {
	if s.err != nil {
		return s.err
	}
	j := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli()}
	j.Key, j.KeyB64 = text(r.Key)
	j.Value, j.ValueB64 = text(r.Value)
	for _, h := range r.Headers {
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueB64 = text(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	s.buf.Write(b)
	s.buf.WriteByte('\n')
	if s.buf.Len() >= stdoutChunk {
		return s.flush(ctx)
	}
	return nil
}

// flush writes the held lines in one call, so lines stay whole. A failed
// write (a full disk under a redirected stdout) fails every later write and
// flush until abort: the owner then reads again from its last commit, so
// lines that did not make it out are written again, never skipped.
func (s *stdoutSink) flush(context.Context) error {
	if s.err != nil {
		return s.err
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	if cut := stdoutCut[s.w]; len(cut) > 0 {
		n, err := s.w.Write(cut)
		if err != nil {
			stdoutCut[s.w] = cut[n:]
			return s.fail(err)
		}
		delete(stdoutCut, s.w)
	}
	b := s.buf.Bytes()
	if len(b) == 0 {
		return nil
	}
	n, err := s.w.Write(b)
	if err != nil {
		if n > 0 && b[n-1] != '\n' {
			rest := b[n:]
			stdoutCut[s.w] = bytes.Clone(rest[:bytes.IndexByte(rest, '\n')+1])
		}
		return s.fail(err)
	}
	s.buf.Reset()
	return nil
}

func (s *stdoutSink) fail(err error) error {
	s.err = fmt.Errorf("sink stdout: write: %w", err)
	return s.err
}

// abort drops the held lines and a failed write, so the sink takes writes
// again.
func (s *stdoutSink) abort(context.Context) {
	s.buf.Reset()
	s.err = nil
}
