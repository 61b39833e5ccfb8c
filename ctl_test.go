// ctl_test.go drives a running owner through baton ctl: seek, pause, resume.

package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// writesSince returns the offsets written to partition 0 after t.
func (r *recorder) writesSince(t time.Time) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, w := range r.writes[0] {
		if w.At.After(t) {
			out = append(out, w.Offset)
		}
	}
	return out
}

func (r *recorder) lastOffset() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.writes[0]
	if len(ws) == 0 {
		return -1
	}
	return ws[len(ws)-1].Offset
}

func TestCtl_seek_pause_resume(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster, rec := b.open(t), newCluster(t, 1, "src"), newRecorder(nil)
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			for i := range 5000 {
				cl.Produce(ctx, &kgo.Record{Topic: "src", Value: fmt.Appendf(nil, "%d", i)}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			d, _ := testDeps(t, s, rec)
			// A slow action keeps the owner mid-stream.
			d.action = func(r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
				time.Sleep(200 * time.Microsecond)
				return append(out, r), nil
			}
			octx, stopOwner := context.WithCancel(ctx)
			wait := invoke(octx, cfg, d, invocation{"src", 0, 1000, "A"}, time.Minute)
			waitFor(t, "the owner to be mid-stream", 5*time.Second, func() bool { return rec.lastOffset() > 200 })
			key := leaseKey(cfg.Group, "src", 0)
			ctl := func(verb string, args ...string) {
				t.Helper()
				a, rest, err := parseCtl(append([]string{verb}, args...))
				if err != nil || len(rest) != 0 {
					t.Fatalf("parseCtl: %v %v", err, rest)
				}
				var out bytes.Buffer
				if err := runCtl(ctx, cfg, d, a, &out); err != nil {
					t.Fatalf("ctl %s: %v", verb, err)
				}
			}
			applied := func(what string, cond func(lease) bool) time.Time {
				t.Helper()
				var at time.Time
				waitFor(t, what, cfg.CommitEvery+2*time.Second, func() bool {
					l, err := s.load(ctx, key)
					at = time.Now()
					return err == nil && cond(l)
				})
				return at
			}

			ctl("seek", "-partition", "0", "-offset", "4000")
			at := applied("the forward seek to be applied", func(l lease) bool { return l.Seek == noOffset && l.Offset >= 4000 })
			for _, o := range rec.writesSince(at) {
				if o < 4000 {
					t.Fatalf("offset %d written after the seek to 4000 was applied", o)
				}
			}
			waitFor(t, "reading past 4000", 5*time.Second, func() bool { return rec.lastOffset() > 4100 })

			ctl("seek", "-partition", "0", "-offset", "100")
			at = applied("the backward seek to be applied", func(l lease) bool { return l.Seek == noOffset && l.Offset < 4000 })
			waitFor(t, "reading again from 100", 5*time.Second, func() bool { return len(rec.writesSince(at)) > 50 })
			if got := rec.writesSince(at); got[0] < 100 || got[0] > 100+int64(len(got)) {
				t.Fatalf("after the seek back to 100, writes start at %d", got[0])
			}

			ctl("pause", "-partition", "0")
			at = applied("the pause to be committed", func(l lease) bool { return l.Paused })
			waitFor(t, "the owner to stop", 2*cfg.CommitEvery+time.Second, func() bool {
				l, _ := s.load(ctx, key)
				return l.Offset == rec.lastOffset()+1
			})
			stopped := rec.lastOffset()
			time.Sleep(3 * cfg.CommitEvery)
			if n := len(rec.writesSince(at.Add(cfg.CommitEvery))); n != 0 || rec.lastOffset() != stopped {
				t.Fatalf("%d records written while paused", n)
			}
			ctl("resume", "-partition", "0")
			waitFor(t, "reading to resume", cfg.CommitEvery+2*time.Second, func() bool { return rec.lastOffset() > stopped })
			if got := rec.writesSince(time.Now().Add(-time.Hour)); !contains(got, stopped+1) {
				t.Fatalf("resume did not continue at %d", stopped+1)
			}

			var out bytes.Buffer
			a, _, _ := parseCtl([]string{"status"})
			if err := runCtl(ctx, cfg, d, a, &out); err != nil || !strings.Contains(out.String(), "A") || !strings.Contains(out.String(), "5000") {
				t.Fatalf("status: %v\n%s", err, out.String())
			}
			stopOwner()
			if o, err := wait(); err != nil || o.End != endReleased {
				t.Fatalf("owner: %+v, %v", o, err)
			}
		})
	}
}

func contains(xs []int64, x int64) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestCtl_args(t *testing.T) {
	for _, tc := range []struct {
		args []string
		n    int
		want string // error text, "" for none
	}{
		{[]string{"seek", "-partition", "1", "-offset", "5"}, 3, ""},
		{[]string{"seek", "-partition", "all", "-offset", "5"}, 3, "-partition"},
		{[]string{"seek", "-partition", "1"}, 3, "exactly one"},
		{[]string{"seek", "-partition", "1", "-offset", "5", "-time", "2026-01-01T00:00:00Z"}, 3, "exactly one"},
		{[]string{"pause", "-partition", "7"}, 3, "want 0..2"},
		{[]string{"pause", "-partition", "all"}, 3, ""},
		{[]string{"status"}, 3, ""},
	} {
		a, _, err := parseCtl(tc.args)
		if err == nil {
			_, err = ctlPartitions(a, tc.n)
		}
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := parseCtl([]string{"seek", "-offset", "-3"}); err == nil || !strings.Contains(err.Error(), "-offset") {
		t.Errorf("negative offset: %v", err)
	}
}

// A record poisoned by a tick from the future (written before such ticks
// were refused) makes every real tick stale; one ctl reset repairs it, and
// leaves a healthy record alone.
func TestCtl_reset_repairs_a_future_tick(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, cluster := b.open(t), newCluster(t, 2, "src")
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			ctx := ctxT(t)
			d, _ := testDeps(t, s, nil)
			future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			poisoned, healthy := leaseKey(cfg.Group, "src", 0), leaseKey(cfg.Group, "src", 1)
			p := mustTake(t, s, poisoned, lease{}, claim{Owner: "old", Tick: future})
			if err := s.release(ctx, p, 7); err != nil {
				t.Fatal(err)
			}
			h := mustTake(t, s, healthy, lease{}, claim{Owner: "live", Tick: time.Now().UnixMilli()})
			now := time.Now().UnixMilli()
			if out, err := runInvocation(ctx, cfg, d, invocation{"src", 0, now, "real"}); err != nil || out.End != endStale {
				t.Fatalf("a real tick before the reset: %+v, %v; want stale", out, err)
			}
			a, _, err := parseCtl([]string{"reset", "-partition", "all"})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := runCtl(ctx, cfg, d, a, &out); err != nil {
				t.Fatalf("ctl reset: %v", err)
			}
			if !strings.Contains(out.String(), "partition 0: reset") || !strings.Contains(out.String(), "partition 1: no tick in the future") {
				t.Fatalf("ctl reset said:\n%s", out.String())
			}
			if got := mustLoad(t, s, healthy); got != h {
				t.Fatalf("reset changed a healthy record: %+v, was %+v", got, h)
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if out, err := runInvocation(rctx, cfg, d, invocation{"src", 0, now, "real-again"}); err != nil || out.End != endReleased || out.From != 7 {
				t.Fatalf("a real tick after the reset: %+v, %v; want a run from offset 7", out, err)
			}
		})
	}
}
