//go:build e2e

// e2e_grow_test.go runs the real binary under aws-lambda-rie with the
// template's slot events while the topic grows: a partition added after
// deployment is read by the next tick with no redeploy.

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// growingProducer numbers each partition's records 0, 1, 2, ... as
// produce does, on partitions 0..parts-1, parts raised while it runs.
type growingProducer struct {
	parts  atomic.Int32
	mu     sync.Mutex
	counts map[int32]int64
	wg     sync.WaitGroup
}

func startGrowingProducer(t *testing.T, ctx context.Context, brokers []string, parts int32, every time.Duration) *growingProducer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	g := &growingProducer{counts: map[int32]int64{}}
	g.parts.Store(parts)
	g.wg.Go(func() {
		defer cl.Close()
		next := map[int32]int64{}
		for ctx.Err() == nil {
			for p := range g.parts.Load() {
				// Sequential per partition: a number is used once it was
				// acked, so the sink's numbers are 0..count-1.
				r := &kgo.Record{Topic: "src", Partition: p, Value: []byte(strconv.FormatInt(next[p], 10))}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					cl.ForceMetadataRefresh() // a partition just added
					continue
				}
				next[p]++
				g.mu.Lock()
				g.counts[p] = next[p]
				g.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	})
	return g
}

// total waits for the producer and gives the counts of partitions 0..n-1.
func (g *growingProducer) total(n int32) []int64 {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]int64, n)
	for p := range n {
		out[p] = g.counts[p]
	}
	return out
}

// TestE2E_partition_added: a stack deployed for 2 partitions, 2 an
// invocation, is one schedule: slot 0 of 1, sized 2. The topic (and the
// sink topic) grow to 3 partitions after the second tick. The next tick's
// invocation lists 3 partitions and owns the new one too, warns once that
// it reads more than it was sized for, naming PartitionCount=3, and says
// UnscheduledPartitions 1; every record of every partition reaches the sink
// once, in order.
func TestE2E_partition_added(t *testing.T) {
	t.Parallel()
	needRIE(t)
	const (
		timeout = 5 * time.Second
		every   = 3 * time.Second
		ticks   = 5
		growAt  = 2 // the topic grows before this tick
	)
	w := newE2EWorld(t, 2, 2*time.Minute)
	sink := w.sink
	_, s := newRIEFleet(t, w, 3, timeout)
	pctx, stopProducing := context.WithCancel(w.ctx)
	defer stopProducing()
	prod := startGrowingProducer(t, pctx, w.brokers, 2, 4*time.Millisecond)

	base := time.Now().Truncate(time.Second).Add(2 * time.Second)
	var lastTick time.Time
	for n := range ticks {
		tick := base.Add(time.Duration(n) * every)
		if n == growAt {
			// Between two ticks: the last call listed 2 partitions.
			time.Sleep(time.Until(tick.Add(-every / 2)))
			growTopic(t, w.brokers, "out", 3)
			growTopic(t, w.brokers, "src", 3)
			prod.parts.Store(3)
			// A reader that knows the sink's new partition from its start
			// (the world's learns of it only at its metadata refresh).
			sink = e2eReadSink(t, w.brokers, "out")
		}
		lastTick = tick
		time.Sleep(time.Until(tick))
		s.send(s.pick(), 0, tick, fmt.Sprintf(`{"topic":"src","slot":0,"slots":1,"sized":2,"tick":%q}`, tick.UTC().Format(time.RFC3339)), nil)
	}
	time.Sleep(time.Until(lastTick.Add(time.Second)))
	stopProducing()
	total := prod.total(3)
	s.wg.Wait()
	waitFor(t, "the sink to hold every produced record", 10*time.Second, func() bool { return sink.complete(total) })

	for i, p := range s.issued {
		c := p.wait()
		outs := c.groupOutcomes()
		want := 2
		if i >= growAt {
			want = 3
		}
		if c.Err != nil || c.Status != http.StatusOK || len(outs) != want {
			t.Errorf("tick %d on %s: status %d, %v, body %s; want an outcome for each of %d partitions", i, c.Emulator, c.Status, c.Err, c.Body, want)
		}
	}
	for p := range int32(3) {
		rep := analyseSink(sink.partition(p), total[p])
		if rep.Missing != 0 || rep.Skips != 0 || rep.Duplicates != 0 || total[p] == 0 {
			t.Errorf("partition %d: produced %d; %d missing, %d out of order, %d duplicates", p, total[p], rep.Missing, rep.Skips, rep.Duplicates)
		}
		w.wantReleased(t, p, total[p])
	}
	// One WARN and one metric line a call after the growth, from the
	// emulators' logs (the runtime's stdout and stderr).
	var warns, over, fine int
	for _, e := range s.emus {
		b, err := os.ReadFile(e.log)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			switch {
			case strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "sized for") && strings.Contains(line, "PartitionCount=3"):
				warns++
			case strings.Contains(line, `"UnscheduledPartitions":1`):
				over++
			case strings.Contains(line, `"UnscheduledPartitions":0`):
				fine++
			}
		}
	}
	if want := ticks - growAt; warns != want || over != want || fine != growAt {
		t.Errorf("%d WARN lines, %d UnscheduledPartitions 1 and %d of 0; want %d, %d and %d", warns, over, fine, want, want, growAt)
	}
	t.Logf("produced %v; %d calls, the new partition read from tick %d", total, len(s.issued), growAt)
}
