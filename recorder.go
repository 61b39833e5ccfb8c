// recorder.go holds what the demo and the tests watch baton with: a
// producer that numbers each partition's records, and the recorder of what
// reached a sink (lost, duplicated, reordered, handoff gaps). It is in every
// build, so the tests compile with the Lambda build's tags too.

package main

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produce writes numbered records to every partition, one each every
// interval, until ctx ends. The function it returns waits for the producer
// and gives the count acknowledged per partition.
func produce(ctx context.Context, brokers []string, topic string, partitions int32, every time.Duration) (func() []int64, error) {
	return produceAcked(ctx, brokers, topic, partitions, every, nil)
}

// produceAcked is produce, telling acked of every record the broker took.
func produceAcked(ctx context.Context, brokers []string, topic string, partitions int32, every time.Duration, acked func(*kgo.Record)) (func() []int64, error) {
	// No linger: a record a millisecond goes out as it comes, not in bursts
	// that would show up in every handoff gap.
	// A quick metadata refresh: after a NOT_LEADER (the chaos runs inject
	// them) the default waits 5 s, and the stream would stop that long.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	counts := make([]int64, partitions)
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cl.Close()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for n := 0; ctx.Err() == nil; n++ {
			for p := range partitions {
				r := &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(n))}
				cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
					if err != nil {
						return
					}
					mu.Lock()
					counts[r.Partition]++
					mu.Unlock()
					if acked != nil {
						acked(r)
					}
				})
			}
			select {
			case <-ctx.Done():
			case <-tk.C:
			}
		}
		cl.Flush(context.Background())
	})
	return func() []int64 {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(counts)
	}, nil
}

func waitDelivered(ctx context.Context, rec *recorder, total []int64, limit time.Duration) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) && ctx.Err() == nil {
		if rec.tally(total).Lost == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A handoff is seen at the sink: the first write of a new owner of a
// partition, and how long the partition went unserved before it.
type handoff struct {
	Partition int32
	From, To  string
	Offset    int64
	Gap       time.Duration
}

// write is one record reaching the sink.
type write struct {
	Owner  string
	Offset int64
	At     time.Time
}

// recorder watches the sink: every write, by whom and when.
type recorder struct {
	mu        sync.Mutex
	writes    map[int32][]write
	acks      map[ackKey]time.Time // when the broker took each record, if told
	dropped   map[ackKey]bool      // source records the action returned nothing for (watch)
	handoffs  []handoff
	onHandoff func(handoff)
}

func newRecorder(onHandoff func(handoff)) *recorder {
	return &recorder{writes: map[int32][]write{}, acks: map[ackKey]time.Time{}, dropped: map[ackKey]bool{}, onHandoff: onHandoff}
}

// watch wraps an action so the tally counts the records it dropped as
// dropped, not lost: it notes each record act returned nothing for. A
// record it never saw, or kept and the sink never got, is still lost.
func (r *recorder) watch(act actionFunc) actionFunc {
	return func(ctx context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		at, n := ackKey{rec.Partition, rec.Offset}, len(out) // before act changes rec
		out, err := act(ctx, rec, out)
		if err == nil && len(out) == n {
			r.mu.Lock()
			r.dropped[at] = true
			r.mu.Unlock()
		}
		return out, err
	}
}

type ackKey struct {
	partition int32
	offset    int64
}

// acked notes when the broker took a record, so a gap that the producer
// caused is not blamed on a handoff.
func (r *recorder) acked(rec *kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acks[ackKey{rec.Partition, rec.Offset}] = time.Now()
}

func (r *recorder) wrap(inv invocation, s sink) sink { return recordingSink{s, r, inv.Owner} }

type recordingSink struct {
	sink
	r     *recorder
	owner string
}

func (s recordingSink) write(ctx context.Context, rec *kgo.Record) error {
	s.r.note(s.owner, rec)
	return s.sink.write(ctx, rec)
}

func (r *recorder) note(owner string, rec *kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	ws := r.writes[rec.Partition]
	if n := len(ws); n > 0 && ws[n-1].Owner != owner {
		// The stream was unserved from the old owner's last write, or from
		// when the broker took this record if that came later.
		since := ws[n-1].At
		if at, ok := r.acks[ackKey{rec.Partition, rec.Offset}]; ok && at.After(since) {
			since = at
		}
		h := handoff{Partition: rec.Partition, From: ws[n-1].Owner, To: owner, Offset: rec.Offset, Gap: now.Sub(since)}
		r.handoffs = append(r.handoffs, h)
		if r.onHandoff != nil {
			r.onHandoff(h)
		}
	}
	r.writes[rec.Partition] = append(ws, write{owner, rec.Offset, now})
}

// A tally compares what reached the sink with what was produced. Dropped
// are the records missing at the sink that gone accounts for.
type tally struct {
	Produced, Delivered, Dropped, Lost, Duplicated, Reordered, Handoffs int
	MaxGap                                                              time.Duration
}

// add counts one partition's delivered source offsets, in the order they
// arrived, against n records produced at offsets 0..n-1, and returns the
// missing ones that gone (nil: none) does not account for: the action
// dropped them (the recorder), or they went to the dead-letter topic (the
// chaos runs).
func (t *tally) add(offsets []int64, n int64, gone func(int64) bool) (missing []int64) {
	t.Produced += int(n)
	seen := map[int64]bool{}
	last := int64(-1)
	for _, o := range offsets {
		switch {
		case seen[o]:
			t.Duplicated++
		case o < last:
			t.Reordered++
		}
		seen[o] = true
		last = max(last, o)
	}
	for o := range n {
		switch {
		case seen[o]:
		case gone != nil && gone(o):
			t.Dropped++
		default:
			t.Lost++
			missing = append(missing, o)
		}
	}
	t.Delivered += len(seen)
	return missing
}

// tally counts against produced[p] records at offsets 0.. of each partition.
func (r *recorder) tally(produced []int64) tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t tally
	for p, n := range produced {
		var offsets []int64
		for _, w := range r.writes[int32(p)] {
			offsets = append(offsets, w.Offset)
		}
		t.add(offsets, n, func(o int64) bool { return r.dropped[ackKey{int32(p), o}] })
	}
	for _, h := range r.handoffs {
		t.MaxGap = max(t.MaxGap, h.Gap)
	}
	t.Handoffs = len(r.handoffs)
	return t
}
