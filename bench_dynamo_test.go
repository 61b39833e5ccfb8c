//go:build !redis

// bench_dynamo_test.go is what the default build measures: throughput,
// an action waiting on I/O with -concurrency (bench_io_test.go), handoffs
// on the memory store and DynamoDB Local, crashes, the store's traffic and
// cost, a fleet of processes sharing partitions (bench_fleet_test.go), peak
// RSS, start time, sizing and the cost per group size.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func benchBuild(t *testing.T, b *bench) {
	b.phase(t, "throughput", b.throughput)
	b.phase(t, "io", b.io)
	b.phase(t, "handoff", func(t *testing.T) {
		n, check := pick(b, 20, handoffRuns), pick(b, 50*time.Millisecond, defaultReadEvery)
		brokers := newCluster(t, 1, "memory", "dynamodb").ListenAddrs()
		mem := newBatonChain(t, b, "memory", newMemStore(), brokers, "memory", check)
		ddb := newBatonChain(t, b, "dynamodb", compiledBackend(t).open(t), brokers, "dynamodb", check)
		gaps := b.handoffs(t, n, mem, ddb)
		b.handoffNote(n, check)
		b.note("%s", mem.parts())
		b.note("%s", ddb.parts())
		b.printGaps("memory", gaps["memory"])
		b.printGaps("dynamodb", gaps["dynamodb"])
	})
	b.phase(t, "crash and store traffic", func(t *testing.T) {
		commitEvery := pick(b, 500*time.Millisecond, defaultCommitEvery)
		t.Run("baton", func(t *testing.T) {
			t.Parallel()
			ttl, skew := pick(b, 4500*time.Millisecond, defaultTTL), pick(b, 100*time.Millisecond, defaultSkew) // the shortest lease the produce limits allow with this skew (a third of it, less two skews, at least 1.3 s)
			r := batonCrash(t, b.ctx, compiledBackend(t).open(t), ttl, skew, commitEvery)
			b.note("crash: baton on %s, ttl %v, skew %v, commit every %v%s; killed %v after a commit; B started at the crash; one record a %v",
				storeName, ttl, skew, commitEvery, pick(b, fmt.Sprintf(" (-quick: shortened; defaults %v, %v, %v)", defaultTTL, defaultSkew, defaultCommitEvery), " (the defaults)"), r.committed.Round(time.Millisecond), chainRate)
			b.note("crash: bounds: takeover <= ttl + skew + one wait poll = %v; duplicates <= one commit interval of records = %d",
				ttl+skew+defaultWaitPoll, int(commitEvery/chainRate))
			b.printCrash("", "", r)
		})
		t.Run("group-6s", func(t *testing.T) {
			if b.quick { // the long pole of -quick, and not baton
				b.figure("group_crash_takeover_s", "skipped in -quick")
				b.figure("group_crash_duplicates", "skipped in -quick")
				return
			}
			t.Parallel()
			r := groupCrash(t, b.ctx, 6*time.Second, commitEvery)
			b.note("crash: franz-go group, session timeout 6s, autocommit every %v, heartbeat 3s; killed %v after an autocommit; B already a member",
				commitEvery, r.committed.Round(time.Millisecond))
			b.printCrash("group_", "", r)
		})
		t.Run("group-45s", func(t *testing.T) {
			if b.quick {
				b.figure("group_crash_takeover_s_45s", "skipped in -quick (the full bench: about 45 s)")
				b.figure("group_crash_duplicates_45s", "skipped in -quick")
				return
			}
			t.Parallel()
			r := groupCrash(t, b.ctx, 45*time.Second, commitEvery)
			b.note("crash: franz-go group, session timeout 45s (the default); killed %v after an autocommit", r.committed.Round(time.Millisecond))
			b.printCrash("group_", "_45s", r)
		})
		t.Run("store", func(t *testing.T) {
			t.Parallel()
			b.storeOps(t, compiledBackend(t).open(t))
		})
	})
	b.phase(t, "fleet", b.fleet)
	bin := filepath.Join(t.TempDir(), "baton")
	b.phase(t, "build", func(t *testing.T) { goBuild(t, ".", bin, "lambda.norpc") })
	b.phase(t, "rss", func(t *testing.T) { b.rss(t, bin) })
	b.phase(t, "init", func(t *testing.T) {
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_REGION=us-east-1",
			"AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local", "BATON_BROKERS=127.0.0.1:9092", "BATON_TOPIC=bench"}
		b.initTimes(t, bin, env, 50)
	})
	b.phase(t, "sizing", func(t *testing.T) { b.sizing(t, bin) })
	b.phase(t, "cost", func(t *testing.T) { b.cost(t, bin) })
}

// rss runs the baton binary in process mode (DynamoDB Local as its store)
// over n records of 1 KiB into the discard sink (a million; -quick, a
// quarter), and prints its peak RSS.
func (b *bench) rss(t *testing.T, bin string) {
	const size = 1024
	n := pick[int64](b, 250_000, 1_000_000)
	url := needServer(t, "BATON_TEST_DYNAMO")
	brokers := newCluster(t, 1, "big").ListenAddrs()
	start := time.Now()
	fill(t, b.ctx, brokers, "big", int(n), size)
	b.note("rss: %d records of %d B produced to kfake in %.1f s", n, size, time.Since(start).Seconds())
	table := fmt.Sprintf("baton-bench-%d", time.Now().UnixNano())
	cmd := exec.Command(bin, "-mode=process", "-brokers="+strings.Join(brokers, ","), "-topic=big", "-partitions=0",
		"-sink=discard", "-group=bench", "-lease-table="+table, "-create-table=true", "-commit-interval=1s")
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_DYNAMODB="+url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	s := testDynamo(t, url, table)
	var took time.Duration
	for took == 0 {
		select {
		case err := <-exited:
			t.Fatalf("baton exited early: %v\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		l, err := s.load(ctx, "bench/big/0")
		cancel()
		if err == nil && l.Offset >= n {
			took = time.Since(start)
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("baton did not commit %d records in 5 minutes\n%s", n, stderr.String())
		}
	}
	hwm, err := vmHWM(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("baton: %v\n%s", err, stderr.String())
	}
	dropTable(t, table)
	b.note("rss: baton -mode process, DynamoDB Local store, commit every 1s, discard sink: %d records in %.1f s (start to the commit of the last), then SIGTERM",
		n, took.Seconds())
	b.figure("peak_rss_mib", "%.1f", float64(hwm)/(1<<20))
}
