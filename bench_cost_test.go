//go:build !redis

// bench_cost_test.go is the bench's cost section: the memory one function
// needs to own k partitions of a modest topic, and the month's cost per
// partition for k = 1, 4 and 8 from that memory and the store traffic
// storeOps measured.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// groupSizes are the numbers of partitions one function owns in the cost
// figures. The largest is cost.go's benchGroup, on whose memory the
// template's MemorySize default stands.
var groupSizes = []int{1, 4, 8}

// The modest load of the cost section: each partition gets costRate records
// a second of costSize bytes.
const (
	costRate = 100
	costSize = 200
)

// groupRSS runs baton -mode process owning partitions 0..k-1 of a kfake
// topic of k partitions that gets costRate records a second of costSize
// bytes each, for d, and returns its peak RSS (VmHWM) and whether every
// partition committed.
func (b *bench) groupRSS(t *testing.T, bin string, k int, d time.Duration) (int64, error) {
	url := needServer(t, "BATON_TEST_DYNAMO")
	brokers := newCluster(t, int32(k), "quiet").ListenAddrs()
	table := fmt.Sprintf("baton-bench-cost-%d-%d", k, time.Now().UnixNano())
	if _, err := openDynamo(b.ctx, config{LeaseTable: table, CreateTable: true}, url, testAWS()...); err != nil {
		return 0, err
	}
	defer dropTable(t, table)
	s := testDynamo(t, url, table)

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("quiet"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		value := make([]byte, costSize)
		tick := time.NewTicker(time.Second / costRate)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for p := range k {
				cl.Produce(ctx, &kgo.Record{Partition: int32(p), Value: value}, nil)
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	parts := make([]string, k)
	for p := range k {
		parts[p] = strconv.Itoa(p)
	}
	group := fmt.Sprintf("bench.cost.%d.%d", k, os.Getpid())
	cmd := exec.Command(bin, "-mode=process", "-brokers="+strings.Join(brokers, ","), "-topic=quiet",
		"-partitions="+strings.Join(parts, ","), "-sink=discard", "-group="+group, "-lease-table="+table)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_DYNAMODB="+url, "BATON_LOG_LEVEL=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer stopProcess(cmd, exited)
	select {
	case err := <-exited:
		exited <- err
		return 0, fmt.Errorf("exited: %v (%s)", err, lastLine(stderr.String()))
	case <-time.After(d):
	}
	hwm, err := vmHWM(cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	for p := range k {
		lctx, lcancel := context.WithTimeout(b.ctx, time.Second)
		l, err := s.load(lctx, leaseKey(group, "quiet", int32(p)))
		lcancel()
		if err != nil || l.Offset <= 0 {
			return hwm, fmt.Errorf("partition %d has no commit after %v (%v)", p, d, err)
		}
	}
	return hwm, nil
}

// cost prints the memory k partitions need and the month's cost per
// partition for each k, at the Lambda default lease and at the shorter
// process-mode one.
func (b *bench) cost(t *testing.T, bin string) {
	d := pick(b, 4*time.Second, 15*time.Second)
	hwm := make([]int64, len(groupSizes))
	errs := make([]error, len(groupSizes))
	t.Run("rss", func(t *testing.T) {
		for i, k := range groupSizes {
			t.Run(strconv.Itoa(k), func(t *testing.T) {
				t.Parallel()
				hwm[i], errs[i] = b.groupRSS(t, bin, k, d)
			})
		}
	})
	if b.writes == 0 {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("no store traffic measured (the store phase failed or did not run)")
			}
		}
	}
	storeUSD := storeMonthUSD(b.reads, b.writes)
	shortUSD := storeMonthUSD(b.reads, b.processWrites)
	var rows []string
	for i, k := range groupSizes {
		name := fmt.Sprintf("cost_per_partition_month_usd_k%d", k)
		if errs[i] != nil {
			b.figure(fmt.Sprintf("group_k%d_peak_rss_mib", k), "failed: %v", errs[i])
			b.figure(fmt.Sprintf("group_k%d_memory_mb", k), "failed: %v", errs[i])
			b.figure(name, "failed: %v", errs[i])
			if k > 1 {
				b.figure(name+"_ttl10s", "failed: %v", errs[i])
			}
			continue
		}
		mb := memoryFor(hwm[i])
		lambdaUSD, _, _ := lambdaMonthUSD(mb)
		b.figure(fmt.Sprintf("group_k%d_peak_rss_mib", k), "%.1f", float64(hwm[i])/(1<<20))
		b.figure(fmt.Sprintf("group_k%d_memory_mb", k), "%d", mb)
		b.figure(name, "%.2f", lambdaUSD/float64(k)+storeUSD)
		if k > 1 {
			b.figure(name+"_ttl10s", "%.2f", lambdaUSD/float64(k)+shortUSD)
		}
		rows = append(rows, fmt.Sprintf("k=%d: %.1f MiB -> %d MB, Lambda $%.3f/partition", k, float64(hwm[i])/(1<<20), mb, lambdaUSD/float64(k)))
	}
	b.note("cost: one function owns k partitions of a topic of k, each getting %d records/s of %d B (discard sink, no cgroup), for %v; its memory is peak RSS (VmHWM) × %.1f rounded up to %d MB, at least %d MB: %s",
		costRate, costSize, d, memHeadroom, memStep, memMin, strings.Join(rows, "; "))
	b.note("cost: per partition = (the function's GB-s all month + its invocations, one every %v) / k + the store calls of one partition (its own lease, so they do not change with k): $%.3f at the Lambda default lease (ttl %v, commit %v: %.1f reads %.1f writes a minute); _ttl10s: $%.3f at the process-mode lease (ttl %v, commit %v: %.1f writes a minute); the store note says which lease was measured and which scaled",
		lambdaEvery, storeUSD, lambdaTTL, lambdaCommitEvery, b.reads, b.writes, shortUSD, defaultTTL, defaultCommitEvery, b.processWrites)
}
