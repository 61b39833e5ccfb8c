//go:build e2e

// e2e_retry_test.go runs the real binary under aws-lambda-rie through
// Lambda's own recovery: an owner's runtime is SIGKILLed, and Lambda's retry
// delivers the same event again once the lease has lapsed.

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestE2E_lambda_retry_after_kill_takes_over(t *testing.T) {
	t.Parallel()
	rie := needRIE(t)
	storeEnv, leases := e2eLeaseStore(t)
	bin := e2eBuild(t)
	cluster, conns := e2eCluster(t, 1)
	brokers, group := cluster.ListenAddrs(), e2eGroup(t)
	const timeout = 8 * time.Second
	env := append(rieEnv(t, timeout, brokers, group, storeEnv),
		"BATON_TTL="+e2eTTL.String(), "BATON_SKEW="+e2eSkew.String(), "BATON_COMMIT_INTERVAL="+e2eCommitEvery.String())
	logs := e2eLogDir(t)
	first, retry := startRIE(t, rie, bin, logs, "first", env), startRIE(t, rie, bin, logs, "retry", env)
	sink := e2eReadSink(t, brokers, "out")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced, err := produce(pctx, brokers, "src", 1, e2eProduceEvery)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Now().Truncate(time.Second)
	payload := fmt.Sprintf(`{"topic":"src","partition":0,"tick":%q}`, tick.UTC().Format(time.RFC3339))
	key := leaseKey(group, "src", 0)

	first.claim()
	killed := make(chan rieCall, 1)
	go func() { killed <- first.invoke(ctx, 0, tick, payload, conns.port) }()
	got, _ := e2eWaitLease(t, leases, key, 5*time.Second, "the first delivery to own the partition",
		func(l lease) bool { return l.State == stateRunning && l.Offset > 0 })
	e2eWaitLease(t, leases, key, 2*time.Second, "a commit", func(l lease) bool { return l.Offset > got.Offset })
	time.Sleep(e2eCommitEvery / 2)
	killAt := time.Now()
	if err := syscall.Kill(first.runtimePID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	left, err := leases.load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if c := <-killed; c.Status != http.StatusBadGateway || !strings.Contains(c.Body, "Runtime.ExitError") {
		t.Fatalf("killed invocation: status %d %s; want 502 Runtime.ExitError", c.Status, c.Body)
	}
	// Lambda's retry: the same payload, once the dead owner's lease ended.
	dead := time.UnixMilli(left.ExpiresAt).Add(e2eSkew)
	time.Sleep(time.Until(dead))
	retry.claim()
	rc := make(chan rieCall, 1)
	go func() { rc <- retry.invoke(ctx, 0, tick, payload, conns.port) }()
	time.Sleep(2 * time.Second)
	stopProducing()
	total := produced()
	c := <-rc
	if c.Status != http.StatusOK || c.Out.End != endReleased || c.Out.From != left.Offset || c.Out.Epoch != left.Epoch+1 {
		t.Fatalf("retry of the same event: status %d %s; want it to own epoch %d from the last commit %d and release", c.Status, c.Body, left.Epoch+1, left.Offset)
	}
	waitFor(t, "the sink to hold every produced record", 10*time.Second, func() bool { return sink.complete(total) })
	recs := sink.partition(0)
	rep := analyseSink(recs, total[0])
	if rep.Missing != 0 || rep.Skips != 0 || len(rep.Rewinds) > 1 || len(rep.Rewinds) == 1 && rep.Rewinds[0] != left.Offset {
		t.Fatalf("sink: %+v; want nothing missing or out of order, at most one rewind, to %d", rep, left.Offset)
	}
	var resumed time.Time
	for _, r := range recs {
		if r.At.After(killAt) {
			resumed = r.At
			break
		}
	}
	t.Logf("owner killed at offset %d (lease to +%s, dead at +%s); the retry of the same event took epoch %d and wrote at +%s: the partition had no reader for %s; %d duplicates",
		left.Offset, e2eMs(time.UnixMilli(left.ExpiresAt).Sub(killAt)), e2eMs(dead.Sub(killAt)), c.Out.Epoch,
		e2eMs(resumed.Sub(killAt)), e2eMs(resumed.Sub(killAt)), rep.Duplicates)
}
