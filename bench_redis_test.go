//go:build redis

// bench_redis_test.go is what the -tags redis build measures: handoffs on
// Redis beside the franz-go group consumer's, alternating.

package main

import (
	"slices"
	"testing"
	"time"
)

func benchBuild(t *testing.T, b *bench) {
	b.phase(t, "handoff", func(t *testing.T) {
		n, check := pick(b, 20, handoffRuns), pick(b, 50*time.Millisecond, defaultReadEvery)
		brokers := newCluster(t, 1, "redis", "group").ListenAddrs()
		rc := newBatonChain(t, b, "redis", compiledBackend(t).open(t), brokers, "redis", check)
		gc := newGroupChain(t, b, brokers, "group")
		gaps := b.handoffs(t, n, rc, gc)
		b.handoffNote(n, check)
		b.note("handoff: the franz-go group consumer (classic protocol, cooperative-sticky) commits what it polled, Closes (LeaveGroup), then a new client joins")
		b.note("%s", rc.parts())
		b.printGaps("redis", gaps["redis"])
		b.figure("group_handoff_gap_p50_ms", "%s", ms(median(gaps["group"])))
		b.note("handoff: group p99 %s ms, max %s ms", ms(percentile(gaps["group"], 99)), ms(slices.Max(gaps["group"])))
		b.figure("handoff_vs_group_ratio", "%.3f", median(gaps["redis"]).Seconds()/median(gaps["group"]).Seconds())
	})
}
