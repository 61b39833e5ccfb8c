// cost.go holds the cost and memory arithmetic the bench and baton template share.

package main

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// The Lambda schedule the cost figures assume (DESIGN.md): a 15-minute
// function started every 14 minutes per group, so the successor arrives a
// minute before the owner's deadline.
const (
	lambdaTimeout = 15 * time.Minute
	lambdaEvery   = 14 * time.Minute
)

// lambdaCommitEvery is the commit interval under Lambda's default lease.
const lambdaCommitEvery = lambdaTTL / commitsPerTTL

// Prices (us-east-1 list prices, no free tier), as of pricesDate: Lambda
// arm64 duration and requests; DynamoDB on-demand request units (a
// strongly consistent read of an item up to 4 KB is one read unit, a write
// of up to 1 KB one write unit; a failed conditional write still costs one).
const (
	pricesDate           = "2025-01-31"
	lambdaArmGBSecondUSD = 0.0000133334
	lambdaRequestUSD     = 0.20 / 1e6
	dynamoWriteUnitUSD   = 0.625 / 1e6
	dynamoReadUnitUSD    = 0.125 / 1e6
	monthHours           = 730 // AWS's month for pricing
)

// lambdaMonthUSD is what a function of mb MB costs a month on the Lambda
// schedule, running all month: its GB-seconds and invocations.
func lambdaMonthUSD(mb int) (usd, gbSeconds, invocations float64) {
	month := float64(monthHours) * 3600 // seconds
	gbSeconds = float64(mb) / 1024 * month
	invocations = month / lambdaEvery.Seconds()
	return gbSeconds*lambdaArmGBSecondUSD + invocations*lambdaRequestUSD, gbSeconds, invocations
}

// storeMonthUSD is a month of DynamoDB on-demand calls at reads and writes
// a minute.
func storeMonthUSD(reads, writes float64) float64 {
	return float64(monthHours) * 60 * (reads*dynamoReadUnitUSD + writes*dynamoWriteUnitUSD)
}

// The rule for a function's memory: peak RSS × memHeadroom, rounded up to
// a multiple of memStep MB, at least the Lambda minimum of memMin MB.
const (
	memHeadroom = 1.5
	memStep     = 64
	memMin      = 128
	memMax      = 10240 // Lambda's largest
)

// memoryFor is the MemorySize the rule gives for a peak RSS in bytes.
func memoryFor(rss int64) int {
	need := float64(rss) / (1 << 20) * memHeadroom
	mb := (int(need) + memStep - 1) / memStep * memStep
	return max(mb, memMin)
}

// What the full bench run of 2026-11-29 (./bootstrap.sh bench, the published
// Performance figures) measured,
// which the template's defaults and estimate stand on:
//   - benchGroup quiet partitions (100 records/s of 200 B each, the largest
//     group the bench runs) in one process peaked at benchGroupRSS;
//   - a benchMemMB (128 MB) function read about benchRate records/s of 200 B, or
//     benchRate2K of 2 KiB, through a Kafka sink (lambda_128_rps_kafka,
//     _rps_kafka_2k: 45,889 and 11,171);
//   - one partition under Lambda's default lease made benchReadsPerMin reads
//     and benchWritesPerMin writes a minute averaged over a 14-minute cycle
//     (store_reads_per_min, store_writes_per_min). These are the measured
//     figures, not derived: the writes are about one a commit interval
//     (60 s / 7.5 s = 8) plus a handoff's, but the reads are the owner's
//     and the successor's polls around a handoff, which depend on when the
//     successor arrives, and no constant gives them honestly.
const (
	benchGroup        = 8
	benchGroupRSS     = 31_142_707 // bytes: 29.7 MiB
	benchMemMB        = 128
	benchRate         = 46_000
	benchRate2K       = 11_000
	benchReadsPerMin  = 4.7
	benchWritesPerMin = 8.1
)

// memoryDefaultMB is the function's MemorySize default for groups of k
// partitions: what the bench's rule sized benchGroup quiet partitions at
// (128 MB, as for 1 and 4), for every benchGroup partitions or fewer, up
// to Lambda's largest. Past the largest group measured it grows by that
// much a benchGroup rather than by the rule (memory hardly grew from 4 to
// 8 partitions), so that each partition keeps the share of CPU, which
// grows with memory, that the measured group had: about an eighth of
// benchRate. A busier partition needs more, and -memory-size (MemorySize)
// gives it.
func memoryDefaultMB(k int) int {
	groups := (k + benchGroup - 1) / benchGroup
	return min(groups*memoryFor(benchGroupRSS), memMax)
}

// checkMemory is nil for a MemorySize Lambda takes.
func checkMemory(mb int) error {
	if mb < memMin || mb > memMax {
		return fmt.Errorf("-memory-size %d: want %d to %d (MB, Lambda's range)", mb, memMin, memMax)
	}
	return nil
}

// estimate is a month of n partitions in groups of at most k (a slot of
// the topic each), each group a function of mb MB, at Lambda's default
// lease.
type estimate struct {
	n, k, mb, functions int
	gbSeconds, requests float64
	lambdaUSD           float64 // duration and requests, all functions
	reads, writes       float64 // store calls, all partitions
	storeUSD            float64
}

func estimateMonth(n, k, mb int) estimate {
	e := estimate{n: n, k: min(k, n), mb: mb, functions: (n + k - 1) / k}
	usd, gbs, req := lambdaMonthUSD(mb)
	f := float64(e.functions)
	e.lambdaUSD, e.gbSeconds, e.requests = usd*f, gbs*f, req*f
	minutes := float64(monthHours) * 60 * float64(n)
	e.reads, e.writes = benchReadsPerMin*minutes, benchWritesPerMin*minutes
	e.storeUSD = storeMonthUSD(benchReadsPerMin, benchWritesPerMin) * float64(n)
	return e
}

// perPartition is the month's total over the partitions.
func (e estimate) perPartition() float64 { return (e.lambdaUSD + e.storeUSD) / float64(e.n) }

// rate is about how many records a second of 200 B and of 2 KiB one
// function of mb MB reads through a Kafka sink: the 128 MB measurement
// scaled by the share of a vCPU, which Lambda gives in proportion to
// memory. The bench measured more than this at 256 to 1,769 MB; past
// 1,769 MB (one vCPU) it is held there, more vCPUs not being measured.
func rate(mb int) (small, large float64) {
	scale := float64(min(mb, 1769)) / benchMemMB
	return benchRate * scale, benchRate2K * scale
}

// print writes the estimate for a person: what baton template would
// deploy, on stderr.
func (e estimate) print(w io.Writer) {
	n := float64(e.n)
	small, large := rate(e.mb)
	group := fmt.Sprintf("its %d partitions", e.k)
	if e.n%e.k != 0 {
		group = fmt.Sprintf("its up to %d partitions", e.k)
	}
	fmt.Fprintf(w, "baton template: estimated cost a month, us-east-1 list prices of %s, no free tier\n", pricesDate)
	fmt.Fprintf(w, "  %d partitions, %d an invocation: %d functions of %d MB (arm64), each running all month\n",
		e.n, e.k, e.functions, e.mb)
	fmt.Fprintf(w, "  Lambda duration: %s GB-s, $%.2f ($%.2f a partition)\n",
		thousands(e.gbSeconds), e.gbSeconds*lambdaArmGBSecondUSD, e.gbSeconds*lambdaArmGBSecondUSD/n)
	fmt.Fprintf(w, "  Lambda requests: %s (one a function every %g min), $%.2f ($%.4f a partition)\n",
		thousands(e.requests), lambdaEvery.Minutes(), e.requests*lambdaRequestUSD, e.requests*lambdaRequestUSD/n)
	fmt.Fprintf(w, "  DynamoDB on-demand: %s reads, %s writes (%.1f and %.1f a minute a partition at Lambda's default lease, TTL %g s, a commit every %g s: bench of 2026-11-29), $%.2f ($%.2f a partition)\n",
		thousands(e.reads), thousands(e.writes), benchReadsPerMin, benchWritesPerMin, lambdaTTL.Seconds(), lambdaCommitEvery.Seconds(), e.storeUSD, e.storeUSD/n)
	fmt.Fprintf(w, "  total: $%.2f a month, $%.2f a partition (not counted: CloudWatch Logs, the table's storage and backups, EventBridge Scheduler, data transfer)\n",
		e.lambdaUSD+e.storeUSD, e.perPartition())
	fmt.Fprintf(w, "  throughput at %d MB: about %s records/s of 200 B (%s/s of 2 KiB) through a Kafka sink a function, shared by %s: about %s/s (%s/s) a partition%s\n",
		e.mb, thousands(small), thousands(large), group, thousands(small/float64(e.k)), thousands(large/float64(e.k)), rateSource(e.mb))
}

// rateSource says where rate's figures come from.
func rateSource(mb int) string {
	if mb == benchMemMB {
		return " (bench of 2026-11-29; more a partition needs more memory: -memory-size, deploy's --param MemorySize)"
	}
	return fmt.Sprintf(" (the 128 MB bench figure × %d/128 for the larger share of a vCPU; the bench measured more at 256 to 1,769 MB)", min(mb, 1769))
}

// thousands is x rounded, with a comma every three digits.
func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
