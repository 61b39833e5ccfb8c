// sink.go holds the sink contract and every sink, built from its -sink URL:
// a Kafka topic, stdout (one JSON line a record), discard, each with the
// -dlq dead-letter topic behind it; kafka+txn is in txn.go.

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A sink is where an owner's output goes: what the action keeps (write),
// and what neither the action nor the sink could take (deadLetter). The
// owned run drives every sink through the same steps, and a sink with
// nothing to do at a step does nothing:
//
//	begin once the lease is owned → write, deadLetter … → flush(next) at
//	each commit → restart after a failure → abort when fenced
//
// write may return before the record is durable; flush returns once
// everything written is, and only then does the owner commit the offsets
// before next. write keeps nothing of r past its return but the bytes r
// points to (the action may reuse r). A sink that keeps its own record of
// the offset (kafka+txn, txn.go) says where its durable output ends from
// begin and restart.
type sink interface {
	// begin runs once the lease is owned, before any write. It returns
	// where the sink's durable output ends (noOffset: the sink does not
	// know), and the owner starts at the greater of that and the lease's.
	begin(ctx context.Context) (int64, error)
	write(ctx context.Context, r *kgo.Record) error
	// deadLetter writes r, which failed with cause, to the dead-letter
	// topic, or fails with errNoDLQ when there is none.
	deadLetter(ctx context.Context, r *kgo.Record, cause error) error
	flush(ctx context.Context, next int64) error
	// abort drops what is not durable: a fenced owner writes nothing more.
	abort(ctx context.Context)
	// restart, after a failed write or flush, drops what is not durable so
	// the sink takes writes again, and returns where its durable output
	// ends, as begin does; the owner reads again from there or its last
	// commit, whichever is greater.
	restart(ctx context.Context) (int64, error)
	// seek tells the sink an operator moved the reading position to.
	seek(ctx context.Context, to int64) error
	// keepsOffset reports whether the sink commits the offset to the Kafka
	// group itself; otherwise the owner does, after each lease commit.
	keepsOffset() bool
	// A sink that fences at the broker (kafka+txn) commits only what a
	// lease write vouched for: mark runs before each lease write, vouched
	// after one that succeeded, and unvouched reports that the sink
	// changed since (txn.go): the owner then writes the lease before the
	// sink commits.
	mark(ctx context.Context)
	vouched()
	unvouched(ctx context.Context) bool
}

// errNoDLQ is deadLetter's answer when no -dlq is set.
var errNoDLQ = errors.New("no -dlq set")

// newSink builds the sink -sink names, with -dlq behind it. Every sink is
// built here, from its URL; the owned run never asks which kind it has.
func newSink(cfg *config, cl *kgo.Client, stdout io.Writer, inv invocation, group groupOffset) sink {
	var out sink
	switch cfg.SinkScheme {
	case "kafka+txn":
		return newTxnSink(cfg, cl, inv, group) // with its dead letters in the same transaction
	case "kafka":
		out = newKafkaSink(cl, cfg.SinkTopic, cfg.KafkaTimeout)
	case "stdout":
		out = newStdoutSink(stdout)
	default:
		out = discardSink{}
	}
	if cfg.DLQ == "" {
		return out
	}
	return withDLQ{out, newKafkaSink(cl, cfg.DLQ, cfg.KafkaTimeout), maxRecord(cl, cfg.DLQ)}
}

// sinkOpts are the client options the sink needs: its produce limits
// (produceLimits), and for kafka+txn a transactional client. A kafka+txn
// owner needs no such bound (the next owner's InitProducerID fences its
// producer at the broker, and franz-go forbids failing records of unknown
// fate in a transaction); only the delivery timeout applies to it.
func sinkOpts(cfg *config, inv invocation) []kgo.Opt {
	delivery, request := cfg.produceLimits()
	opts := []kgo.Opt{kgo.RecordDeliveryTimeout(delivery)}
	if cfg.SinkScheme == "kafka+txn" {
		return append(opts, txnOpts(cfg, inv)...)
	}
	// Duplicates are already possible (at least once); a record whose
	// fate is unknown is failed, the owner reads it again. The overhead
	// bounds the client's wait for every request, not only a produce: the
	// one client consumes too, so a fetch or a metadata request that does
	// not answer within it is cut off (and retried) as well.
	return append(opts, kgo.AllowIdempotentProduceCancellation(),
		kgo.ProduceRequestTimeout(request), kgo.RequestTimeoutOverhead(request))
}

// sinkTimings checks the timings a sink puts bounds on.
func sinkTimings(c *config) []error {
	if c.SinkScheme == "kafka+txn" && c.TTL+c.CommitEvery > maxTxnTimeout {
		return []error{optionErr("ttl", "with kafka+txn, -ttl plus -commit-interval is the transaction timeout, which brokers cap at %v by default; got %v", maxTxnTimeout, c.TTL+c.CommitEvery)}
	}
	return nil
}

// steps are the sink steps that a plain sink has nothing to do at.
type steps struct{}

func (steps) begin(context.Context) (int64, error) { return noOffset, nil }
func (steps) deadLetter(context.Context, *kgo.Record, error) error {
	return errNoDLQ
}
func (steps) seek(context.Context, int64) error { return nil }
func (steps) keepsOffset() bool                 { return false }
func (steps) mark(context.Context)              {}
func (steps) vouched()                          {}
func (steps) unvouched(context.Context) bool    { return false }

// withDLQ puts a dead-letter topic behind a sink.
type withDLQ struct {
	sink
	dlq   *kafkaSink
	limit int // the largest dead letter the producer takes
}

func (w withDLQ) deadLetter(ctx context.Context, r *kgo.Record, cause error) error {
	return w.dlq.write(ctx, deadLetter(r, cause, w.limit))
}

func (w withDLQ) flush(ctx context.Context, next int64) error {
	if err := w.dlq.flush(ctx, next); err != nil {
		return err
	}
	return w.sink.flush(ctx, next)
}

func (w withDLQ) abort(ctx context.Context) {
	w.dlq.abort(ctx)
	w.sink.abort(ctx)
}

func (w withDLQ) restart(ctx context.Context) (int64, error) {
	w.dlq.abort(ctx)
	return w.sink.restart(ctx)
}

// sinkUsage is -sink's line in baton -h: every sink parseSink takes.
const sinkUsage = "kafka://TOPIC, kafka+txn://TOPIC (exactly once; see DESIGN.md), stdout or discard"

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

// deadLetter is the record as it came, with headers naming where it came
// from and why it failed. One larger than limit, the largest record the
// producer takes, keeps its headers and the start of its value, and a
// header with the value's size says so.
func deadLetter(r *kgo.Record, err error, limit int) *kgo.Record {
	h := append([]kgo.RecordHeader{}, r.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: "baton.source.topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "baton.source.partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: "baton.source.offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: "baton.error", Value: []byte(err.Error())})
	dl := &kgo.Record{Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: h}
	if recordSize(dl) > limit {
		dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: "baton.truncated", Value: []byte(strconv.Itoa(len(r.Value)))})
		dl.Value = r.Value[:max(0, len(r.Value)-(recordSize(dl)-limit))]
	}
	return dl
}

// recordSize is at most what r takes in a batch of its own: the batch's
// header, and the record's fields with their varint lengths at the longest.
func recordSize(r *kgo.Record) int {
	n := 61 + 5 + 1 + 10 + 5 + 5 + len(r.Key) + 5 + len(r.Value) + 5
	for _, h := range r.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// maxRecord is the largest record, by recordSize, that the client produces
// to topic: its batch limit, set by kgo.ProducerBatchMaxBytes.
func maxRecord(cl *kgo.Client, topic string) int {
	if fn, ok := cl.OptValue(kgo.ProducerBatchMaxBytesFn).(func(string) int32); ok {
		return int(fn(topic))
	}
	return 1000012 // franz-go's default
}

// discardSink drops every record: for benchmarks and dry runs.
type discardSink struct{ steps }

func (discardSink) write(context.Context, *kgo.Record) error { return nil }
func (discardSink) flush(context.Context, int64) error       { return nil }
func (discardSink) abort(context.Context)                    {}
func (discardSink) restart(context.Context) (int64, error)   { return noOffset, nil }

// kafkaSink produces to a topic through an idempotent producer. Records of
// source partition p go to partition p of the sink (modulo its count), so
// order per source partition survives.
type kafkaSink struct {
	steps
	cl      *kgo.Client
	topic   string
	timeout time.Duration            // for a flush
	promise func(*kgo.Record, error) // done, made once: a method value allocates
	err     atomic.Pointer[sinkErr]  // the first failed produce since the sink last started again
}

// sinkErr holds an error for an atomic.Pointer.
type sinkErr struct{ error }

func newKafkaSink(cl *kgo.Client, topic string, timeout time.Duration) *kafkaSink {
	s := &kafkaSink{cl: cl, topic: topic, timeout: timeout}
	s.promise = s.done
	return s
}

// samePartition sends a record to the partition it names, so that a sink
// keeps the source's partitioning.
var samePartition = kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
	return func(r *kgo.Record, n int) int { return int(r.Partition) % n }
})

// produced is a record the producer holds: a copy of one written, with the
// source offset it came from. The producer owns it until its promise, which
// puts it back in producedPool, so the records in flight are reused.
type produced struct {
	kgo.Record
	source int64
}

var producedPool = sync.Pool{New: func() any { return new(produced) }}

func (s *kafkaSink) write(_ context.Context, r *kgo.Record) error {
	if err := s.failed(); err != nil {
		return err
	}
	// The copy leaves r to the run and the action; its bytes are shared.
	// A shutdown must not fail records already handed to the sink: the
	// owner flushes them before it lets go of the lease. So the record's
	// context never ends, and it names the produced record, for done.
	o := producedPool.Get().(*produced)
	o.Record = kgo.Record{Topic: s.topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers, Context: fromSource{o}}
	o.source = r.Offset
	s.cl.Produce(o.Context, &o.Record, s.promise)
	return nil
}

// fromSource rides in a produced record's Context, which the producer only
// asks whether it ended, so that a refused produce names the source offset
// (the run gives each record it writes its source's offset). One pointer
// fits in an interface without an allocation. It never ends, like the
// context.WithoutCancel it stands in for, and holds no values.
type fromSource struct{ p *produced }

func (fromSource) Deadline() (time.Time, bool) { return time.Time{}, false }
func (fromSource) Done() <-chan struct{}       { return nil }
func (fromSource) Err() error                  { return nil }
func (fromSource) Value(any) any               { return nil }

// done is every produced record's promise. The producer calls promises one
// at a time and is done with the record once it returns, so it goes back to
// the pool.
func (s *kafkaSink) done(r *kgo.Record, err error) {
	src, _ := r.Context.(fromSource)
	if err != nil && s.err.Load() == nil {
		e := fmt.Errorf("sink kafka://%s: produce: %w", r.Topic, err)
		if src.p != nil && refusedForGood(err) {
			e = &refusedError{Topic: r.Topic, Offset: src.p.source, err: e}
		}
		s.err.CompareAndSwap(nil, &sinkErr{e})
	}
	if src.p != nil {
		*src.p = produced{} // holds no bytes while pooled
		producedPool.Put(src.p)
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
	if e := s.err.Load(); e != nil {
		return e.error
	}
	return nil
}

// clear forgets a failed produce, once what it belonged to is dropped.
func (s *kafkaSink) clear() { s.err.Store(nil) }

func (s *kafkaSink) flush(ctx context.Context, _ int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.cl.Flush(ctx); err != nil {
		return fmt.Errorf("sink kafka://%s: flush: %w", s.topic, err)
	}
	return s.failed()
}

// abort drops what is not acknowledged and forgets the failures, so the
// sink takes writes again (the owner reads from its last commit again).
func (s *kafkaSink) abort(ctx context.Context) {
	_ = s.cl.AbortBufferedRecords(ctx)
	s.clear()
}

func (s *kafkaSink) restart(ctx context.Context) (int64, error) {
	s.abort(ctx)
	return noOffset, nil
}

// stdoutSink writes one JSON object a line. Keys and values that are not
// UTF-8 are written as base64 under key_b64 and value_b64.
type stdoutSink struct {
	steps
	w   io.Writer
	buf []byte // whole lines, not yet written
	err error  // a failed write, kept until abort: nothing more is written
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

func (s *stdoutSink) write(ctx context.Context, r *kgo.Record) error {
	if s.err != nil {
		return s.err
	}
	s.buf = appendLine(s.buf, r)
	if len(s.buf) >= stdoutChunk {
		return s.flush(ctx, noOffset)
	}
	return nil
}

// appendLine appends r's line to b: the JSON object encoding/json would
// write for it, field for field and byte for byte, with no allocation.
//
//	{"topic":…,"partition":…,"offset":…,"timestamp_ms":…,"key":…,"key_b64":…,
//	 "value":…,"value_b64":…,"headers":[{"key":…,"value":…,"value_b64":…},…]}
//
// A nil key or value is left out; one that is not UTF-8 goes under _b64.
func appendLine(b []byte, r *kgo.Record) []byte {
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"timestamp_ms":`...)
	b = strconv.AppendInt(b, r.Timestamp.UnixMilli(), 10)
	b = appendText(b, `,"key":`, `,"key_b64":`, r.Key)
	b = appendText(b, `,"value":`, `,"value_b64":`, r.Value)
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":[`...)
		for i, h := range r.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":`...)
			b = appendJSONString(b, h.Key)
			b = appendText(b, `,"value":`, `,"value_b64":`, h.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}', '\n')
}

// appendText appends v as a JSON string under name when it is UTF-8, else
// in base64 under b64; nothing when it is nil.
func appendText(b []byte, name, b64 string, v []byte) []byte {
	switch {
	case v == nil:
		return b
	case utf8.Valid(v):
		return appendJSONString(append(b, name...), v)
	}
	b = append(append(b, b64...), '"')
	return append(base64.StdEncoding.AppendEncode(b, v), '"')
}

// appendJSONString appends src quoted as encoding/json does (its
// appendString, with HTML escaping): ", \ and control characters escaped,
// <, > and & as \u003c, \u003e and \u0026, U+2028 and U+2029 escaped, and
// each byte that is not UTF-8 as \ufffd.
func appendJSONString[S []byte | string](b []byte, src S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(src); {
		if c := src[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, src[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		n := min(len(src)-i, utf8.UTFMax)
		c, size := utf8.DecodeRuneInString(string(src[i : i+n]))
		switch {
		case c == utf8.RuneError && size == 1:
			b = append(b, src[start:i]...)
			b = append(b, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			b = append(b, src[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, src[start:]...)
	return append(b, '"')
}

// flush writes the held lines in one call, so lines stay whole. A failed
// write (a full disk under a redirected stdout) fails every later write and
// flush until abort: the owner then reads again from its last commit, so
// lines that did not make it out are written again, never skipped.
func (s *stdoutSink) flush(context.Context, int64) error {
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
	b := s.buf
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
	s.buf = s.buf[:0]
	return nil
}

func (s *stdoutSink) fail(err error) error {
	s.err = fmt.Errorf("sink stdout: write: %w", err)
	return s.err
}

// abort drops the held lines and a failed write, so the sink takes writes
// again.
func (s *stdoutSink) abort(context.Context) {
	s.buf = s.buf[:0]
	s.err = nil
}

func (s *stdoutSink) restart(ctx context.Context) (int64, error) {
	s.abort(ctx)
	return noOffset, nil
}
