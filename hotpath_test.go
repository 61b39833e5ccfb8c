package main

// hotpath_test.go measures the owned run's per-record path, action and sink
// write, over a batch already fetched: what it costs a record, and what it
// allocates (issue 15: nothing, in steady state).
//
//	go test -run x -bench HotPath -benchmem .       time and allocations a record
//	go test -run TestHotPath -v .                   allocs_per_record lines

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// hotBatchLen is the records of one fetch, and of one flush.
const hotBatchLen = 1000

// hotBatch is a fetched batch: keys, JSON values with quotes to escape, a
// header.
func hotBatch(n int) []*kgo.Record {
	at := time.UnixMilli(1_700_000_000_000)
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: "src", Partition: 0, Offset: int64(i), Timestamp: at,
			Key:     fmt.Appendf(nil, "key-%06d", i),
			Value:   fmt.Appendf(nil, `{"id":%d,"name":"record %d","tags":["a","b"],"note":"a value of about a hundred bytes"}`, i, i),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("0af7651916cd43dd")}}}
	}
	return rs
}

// hotSink is one sink the benchmark drives; done closes what it opened.
type hotSink struct {
	name string
	open func(testing.TB) (s sink, done func())
}

var hotSinks = []hotSink{
	{"discard", func(testing.TB) (sink, func()) { return discardSink{}, func() {} }},
	{"stdout", func(testing.TB) (sink, func()) { return newStdoutSink(io.Discard), func() {} }},
	{"kafka", func(t testing.TB) (sink, func()) {
		cl := sinkClient(t)
		return newKafkaSink(cl, "out", 10*time.Second), cl.Close
	}},
}

// sinkClient is a client to a kfake topic "out" with the options connect
// gives the client that the Kafka sink produces with.
func sinkClient(t testing.TB) *kgo.Client {
	cluster := newCluster(t, 1, "out")
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	cfg.SinkScheme, cfg.SinkTopic = "kafka", "out"
	cl, err := kgo.NewClient(append(sinkOpts(cfg, invocation{Topic: "src"}),
		kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(samePartition))...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// hotRun is an owned run as poll finds it, with nothing due: it hands the
// pending records to act and the sink.
func hotRun(s sink, act actionFunc) *run {
	never := time.Unix(1<<40, 0)
	return &run{cfg: &config{Concurrency: 1}, d: &deps{now: time.Now}, k: &kafka{sink: s},
		act: act, alone: [2]int64{noOffset, noOffset},
		nextCommit: never, validUntil: never}
}

// hotPass sends batch through the run and flushes the sink, as a commit
// would.
func hotPass(ctx context.Context, tb testing.TB, p *run, batch []*kgo.Record) {
	p.next, p.pending = batch[0].Offset, batch
	for len(p.pending) > 0 {
		if err := p.poll(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	if err := p.flush(ctx); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkHotPath: an op is one record, fetched → action → sink write,
// with a flush every hotBatchLen records.
func BenchmarkHotPath(b *testing.B) {
	for _, hs := range hotSinks {
		b.Run(hs.name, func(b *testing.B) {
			s, done := hs.open(b)
			defer done()
			p, batch, ctx := hotRun(s, matching(nil, action)), hotBatch(hotBatchLen), context.Background()
			hotPass(ctx, b, p, batch) // warm: connections, buffers
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n += len(batch) {
				hotPass(ctx, b, p, batch[:min(len(batch), b.N-n)])
			}
		})
	}
}

// TestHotPath_allocs prints each sink's allocations a record in steady
// state, with a flush (a commit) every hotBatchLen records: the passes of a
// whole batch allocate allocs_per_record more for each record than passes
// of one record, which allocate allocs_per_flush (printed with -v). It fails
// if the discard or stdout sink allocates for a record at all. The kafka
// sink's figure also counts what franz-go allocates producing (its batches
// and requests) and the in-process broker (kfake) taking them. It measures
// the action in consume.go, a fork's own, and counts only baton's share.
func TestHotPath_allocs(t *testing.T) {
	hotAllocs(t, matching(nil, action))
}

// A fork whose action allocates (a new value for each record) passes: what
// the action allocates is the fork's, not baton's (issue 22).
func TestHotPath_allocs_allocating_action(t *testing.T) {
	hotAllocs(t, func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		r.Value = bytes.ToUpper(r.Value)
		return append(out, r), nil
	})
}

// hotAllocs measures baton's allocations a record around act, each sink's
// in turn: what act allocates alone over the same records is not counted.
func hotAllocs(t *testing.T, act actionFunc) {
	if raceBuild() {
		t.Skip("the race detector allocates")
	}
	for _, hs := range hotSinks {
		t.Run(hs.name, func(t *testing.T) {
			s, done := hs.open(t)
			defer done()
			p, batch, ctx := hotRun(s, act), hotBatch(hotBatchLen), context.Background()
			hotPass(ctx, t, p, batch)
			per, one := perRecordAllocs(batch, func(rs []*kgo.Record) { hotPass(ctx, t, p, rs) })
			// The action's own share, alone over the same records, is the
			// fork's; franz-go's, producing the same records with nothing
			// of baton's, is franz-go's.
			own, plain := actionAllocs(batch, act), 0.0
			if hs.name == "kafka" {
				plain = plainProduceAllocs(t, batch)
			}
			t.Logf("sink=%s: %.3g allocations a record in all; the action's alone %.3g, franz-go's and kfake's producing without baton %.3g", hs.name, per, own, plain)
			per = max(0, per-own-plain)
			t.Logf("sink=%s allocs_per_record: %.3g allocs_per_flush: %v", hs.name, per, one)
			switch {
			case hs.name != "kafka" && per != 0:
				t.Errorf("sink %s: %.3g allocations a record; want 0", hs.name, per)
			case per >= 0.5:
				t.Errorf("sink %s: %.3g allocations a record; want next to none (franz-go's and kfake's, amortised over batches)", hs.name, per)
			}
		})
	}
}

// actionAllocs is what act allocates a record alone, handed batch as the
// run hands it records: an out it empties and passes again.
func actionAllocs(batch []*kgo.Record, act actionFunc) float64 {
	var out []*kgo.Record
	pass := func(rs []*kgo.Record) {
		for _, r := range rs {
			out, _ = act(context.Background(), r, out[:0])
		}
	}
	pass(batch)
	per, _ := perRecordAllocs(batch, pass)
	return per
}

// plainProduceAllocs is what franz-go and kfake allocate a record when a
// client with the Kafka sink's options produces batch and flushes, the
// records reused once their promises fired: the same passes as
// TestHotPath_allocs, with franz-go alone.
func plainProduceAllocs(t *testing.T, batch []*kgo.Record) float64 {
	cl := sinkClient(t)
	defer cl.Close()
	ctx := context.Background()
	out := make([]*kgo.Record, len(batch))
	for i, r := range batch {
		out[i] = &kgo.Record{Topic: "out", Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
	}
	pass := func(rs []*kgo.Record) {
		for _, r := range rs {
			cl.Produce(ctx, r, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pass(out)
	per, _ := perRecordAllocs(out, pass)
	return per
}

// perRecordAllocs is what pass allocates for each record of batch beyond
// what it allocates for one, and what it allocates for one. AllocsPerRun
// rounds down, so a batch's figure can be one allocation off now and then
// (kfake's storage growing, say): the median of three measurements.
func perRecordAllocs(batch []*kgo.Record, pass func([]*kgo.Record)) (per, one float64) {
	pers := make([]float64, 3)
	for i := range pers {
		one = testing.AllocsPerRun(100, func() { pass(batch[:1]) })
		all := testing.AllocsPerRun(20, func() { pass(batch) })
		pers[i] = max(0, all-one) / float64(len(batch)-1)
	}
	return medianF(pers), one
}

// raceBuild reports whether the test binary was built with -race.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
