//go:build !lambda.norpc

// demo.go holds the embedded default: an in-process Kafka, a producer, the
// memory lease store and overlapping short invocations, so that `go run .`
// shows baton's job done with no setup. Its recorder also serves the tests.

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The demo's schedule: like a Lambda with a 3 s timeout started every 2 s,
// so each invocation overlaps the next by a second.
const (
	demoTopic      = "demo"
	demoPartitions = 2
	demoProduce    = 12 * time.Second
	demoLife       = 3 * time.Second
	demoEvery      = 2 * time.Second
	demoRate       = time.Millisecond // one record a partition
)

// runDemo runs the demo with the action in consume.go: a fork's own.
func runDemo(ctx context.Context, w io.Writer, log *slog.Logger) error {
	return runDemoWith(ctx, w, log, action)
}

// runDemoWith runs the demo with act as the action. The tally counts what
// act dropped as dropped, not lost: a fork's filter is no loss.
func runDemoWith(ctx context.Context, w io.Writer, log *slog.Logger, act actionFunc) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(demoPartitions, demoTopic))
	if err != nil {
		return fmt.Errorf("demo kafka: %w", err)
	}
	defer cluster.Close()
	cfg := demoConfig(cluster.ListenAddrs())
	rec := newRecorder(func(h handoff) {
		fmt.Fprintf(w, "handoff p%d  %s -> %s  at offset %d  gap %.1f ms\n", h.Partition, h.From, h.To, h.Offset, float64(h.Gap.Microseconds())/1000)
	})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if log.Enabled(ctx, slog.LevelDebug) {
		quiet = log
	}
	d := &deps{store: newMemStore(), kafka: kgo.NewClient, now: time.Now, log: quiet, stdout: io.Discard,
		action: rec.watch(act), wrapSink: rec.wrap}
	fmt.Fprintf(w, "baton demo: in-process Kafka at %v, memory lease store, topic %q with %d partitions\n", cfg.Brokers, demoTopic, demoPartitions)
	fmt.Fprintf(w, "a producer writes a record a millisecond per partition for %v; an invocation with a %v deadline starts every %v per partition\n", demoProduce, demoLife, demoEvery)

	pctx, stopProducing := context.WithTimeout(ctx, demoProduce)
	defer stopProducing()
	produced, err := produceAcked(pctx, cfg.Brokers, demoTopic, demoPartitions, demoRate, rec.acked)
	if err != nil {
		return err
	}
	schedCtx, stopSchedule := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { schedule(schedCtx, cfg, d, demoPartitions) })
	<-pctx.Done()
	total := produced()
	waitDelivered(ctx, rec, total, 3*demoLife)
	stopSchedule()
	wg.Wait()
	t := rec.tally(total)
	fmt.Fprintf(w, "produced=%d delivered=%d dropped=%d lost=%d duplicated=%d reordered=%d handoffs=%d max_gap_ms=%.1f\n",
		t.Produced, t.Delivered, t.Dropped, t.Lost, t.Duplicated, t.Reordered, t.Handoffs, float64(t.MaxGap.Microseconds())/1000)
	if t.Lost > 0 || t.Reordered > 0 {
		return fmt.Errorf("demo lost %d and reordered %d records", t.Lost, t.Reordered)
	}
	return nil
}

// schedule starts an invocation per partition every demoEvery, each with a
// deadline demoLife away, until ctx ends; it waits for all it started.
func schedule(ctx context.Context, cfg *config, d *deps, partitions int32) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tk := time.NewTicker(demoEvery)
	defer tk.Stop()
	for n := 1; ; n++ {
		tick := time.Now()
		for p := range partitions {
			inv := invocation{Topic: cfg.Topic, Partition: p, Tick: tick.UnixMilli(), Owner: fmt.Sprintf("inv-%d", n)}
			wg.Go(func() {
				ictx, cancel := context.WithDeadline(ctx, tick.Add(demoLife))
				defer cancel()
				if _, err := runInvocation(ictx, cfg, d, inv); err != nil {
					d.log.Error("invocation failed", "owner", inv.Owner, "err", err)
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// demoConfig shortens the lease timings to fit invocations of seconds.
func demoConfig(brokers []string) *config {
	c := &config{Mode: "demo", Brokers: brokers, Topic: demoTopic, Group: "demo", SinkScheme: "discard",
		TTL: 3 * time.Second, Skew: 200 * time.Millisecond, CommitEvery: 500 * time.Millisecond}
	c.setTiming()
	c.NearHandoff, c.ReadEvery, c.WaitPoll = demoLife, 50*time.Millisecond, 5*time.Millisecond
	c.MarginFloor, c.FetchWait = 200*time.Millisecond, 100*time.Millisecond
	return c
}
