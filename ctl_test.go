// ctl_test.go drives a running owner through baton ctl: seek, pause, resume.

package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// writesSince returns the offsets written to partition 0 after t.
func (r *recorder) writesSince(t time.Time) []int64 {
	var out []int64
	for _, w := range r.on(0) {
		if w.At.After(t) {
			out = append(out, w.Offset)
		}
	}
	return out
}

// lastOffset is the offset last written to partition 0, or -1.
func (r *recorder) lastOffset() int64 {
	if ws := r.on(0); len(ws) > 0 {
		return ws[len(ws)-1].Offset
	}
	return -1
}

// runCtlT runs baton ctl with args and gives what it printed.
func runCtlT(t *testing.T, ctx context.Context, cfg *config, d *deps, args ...string) string {
	t.Helper()
	a, rest, err := parseCtl(args)
	if err != nil || len(rest) != 0 {
		t.Fatalf("parseCtl %v: %v %v", args, err, rest)
	}
	var out bytes.Buffer
	if err := runCtl(ctx, cfg, d, a, &out); err != nil {
		t.Fatalf("ctl %v: %v", args, err)
	}
	return out.String()
}

// TestCtl_seek_pause_resume: an operator's seeks forward and back, a pause
// and a resume, obeyed by a running owner, one record at a time and with
// -concurrency 8 (keyed records): nothing from before a seek is written
// after it was applied, nothing while paused.
func TestCtl_seek_pause_resume(t *testing.T) {
	for _, n := range []int{1, 8} {
		t.Run("n"+strconv.Itoa(n), func(t *testing.T) { testSeekPauseResume(t, n) })
	}
}

func testSeekPauseResume(t *testing.T, concurrency int) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		s, rec, cfg, ctx := r.s, r.rec, r.cfg, r.ctx
		cfg.Concurrency = concurrency
		recs := numbered(0, 5000)
		for i, rec := range recs {
			rec.Key = []byte(concKey(int64(i)))
		}
		mustProduce(t, cfg.Brokers, recs...)
		d, _ := testDeps(t, s, rec)
		// A slow action keeps the owner mid-stream.
		d.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
			time.Sleep(200 * time.Microsecond)
			return append(out, r), nil
		}
		stopOwner, wait := r.start(d, 1000, "A")
		waitFor(t, "the owner to be mid-stream", 5*time.Second, func() bool { return rec.lastOffset() > 200 })
		ctl := func(args ...string) { t.Helper(); runCtlT(t, ctx, cfg, d, args...) }
		applied := func(what string, cond func(lease) bool) time.Time {
			t.Helper()
			var at time.Time
			waitFor(t, what, cfg.CommitEvery+2*time.Second, func() bool {
				l, err := s.load(ctx, r.key)
				at = time.Now()
				return err == nil && cond(l)
			})
			return at
		}

		ctl("seek", "-partition", "0", "-offset", "4000")
		at := applied("the forward seek to be applied", func(l lease) bool { return l.Seek == noOffset && l.Offset >= 4000 })
		if got := rec.writesSince(at); slices.ContainsFunc(got, func(o int64) bool { return o < 4000 }) {
			t.Fatalf("offsets %v written after the seek to 4000 was applied", got)
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
			l, _ := s.load(ctx, r.key)
			return l.Offset == rec.lastOffset()+1
		})
		stopped := rec.lastOffset()
		time.Sleep(3 * cfg.CommitEvery)
		if n := len(rec.writesSince(at.Add(cfg.CommitEvery))); n != 0 || rec.lastOffset() != stopped {
			t.Fatalf("%d records written while paused", n)
		}
		ctl("resume", "-partition", "0")
		waitFor(t, "reading to resume", cfg.CommitEvery+2*time.Second, func() bool { return rec.lastOffset() > stopped })
		if !slices.Contains(rec.writesSince(time.Now().Add(-time.Hour)), stopped+1) {
			t.Fatalf("resume did not continue at %d", stopped+1)
		}

		if out := runCtlT(t, ctx, cfg, d, "status"); !strings.Contains(out, "A") || !strings.Contains(out, "5000") {
			t.Fatalf("status:\n%s", out)
		}
		stopOwner()
		o, err := wait()
		wantEnd(t, "owner", o, err, endReleased)
	})
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
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 2)
		s, cfg, ctx := r.s, r.cfg, r.ctx
		d, _ := testDeps(t, s, nil)
		future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		healthy := leaseKey(cfg.Group, "src", 1)
		// Offset 7 within the log: past its end the run would start again by -start.
		mustProduce(t, cfg.Brokers, numbered(0, 10)...)
		p := mustTake(t, s, r.key, lease{}, claim{Owner: "old", Tick: future})
		mustRelease(t, s, p, 7)
		h := mustTake(t, s, healthy, lease{}, claim{Owner: "live", Tick: time.Now().UnixMilli()})
		now := time.Now().UnixMilli()
		out, err := runInvocation(ctx, cfg, d, invocation{"src", 0, now, "real"})
		wantEnd(t, "a real tick before the reset", out, err, endStale)
		if said := runCtlT(t, ctx, cfg, d, "reset", "-partition", "all"); !strings.Contains(said, "partition 0: reset") || !strings.Contains(said, "partition 1: no tick in the future") {
			t.Fatalf("ctl reset said:\n%s", said)
		}
		if got := mustLoad(t, s, healthy); got != h {
			t.Fatalf("reset changed a healthy record: %+v, was %+v", got, h)
		}
		if out, err := runInvocation(within(t, ctx, time.Second), cfg, d, invocation{"src", 0, now, "real-again"}); err != nil || out.End != endReleased || out.From != 7 {
			t.Fatalf("a real tick after the reset: %+v, %v; want a run from offset 7", out, err)
		}
	})
}

// ctl pause reads the record while a seek waits in it, and writes after the
// owner applied and cleared the seek: the pause must not put the seek back,
// or the owner applies it twice and delivers its records again.
func TestCtl_pause_after_seek_applies_seek_once(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		s, rec, cfg, ctx := r.s, r.rec, r.cfg, r.ctx
		const target = 15000
		mustProduce(t, cfg.Brokers, numbered(0, 20000)...)
		// The owner's commit applying the seek waits until the pause has
		// read the record with the seek in it.
		var read atomic.Bool
		slow := &hookStore{store: s, before: func(ctx context.Context, call storeCall) error {
			for deadline := time.Now().Add(5 * time.Second); call.op == "commit" && call.offset == target && !read.Load() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			return nil
		}}
		d, _ := testDeps(t, slow, rec)
		d.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
			time.Sleep(200 * time.Microsecond)
			return append(out, r), nil
		}
		stopOwner, wait := r.start(d, 1000, "A")
		waitFor(t, "the owner to be mid-stream", 5*time.Second, func() bool { return rec.lastOffset() > 200 })
		late := &hookStore{store: s, before: func(ctx context.Context, call storeCall) error {
			if call.op != "control" || call.l.Seek != target {
				return nil
			}
			read.Store(true) // the pause read the seek; the owner applies it and reads on first
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if l, err := s.load(ctx, call.key); err == nil && l.Seek == noOffset && rec.lastOffset() > target+50 {
					break
				}
			}
			return nil
		}}
		dctl, _ := testDeps(t, late, nil)
		runCtlT(t, ctx, cfg, d, "seek", "-partition", "0", "-offset", fmt.Sprint(target))
		runCtlT(t, ctx, cfg, dctl, "pause", "-partition", "0")
		if !read.Load() {
			t.Fatal("the pause did not read the pending seek: the race was not injected")
		}
		r.waitLease(t, "the pause to be committed", func(l lease) bool { return l.Paused && l.Seek == noOffset })
		runCtlT(t, ctx, cfg, d, "resume", "-partition", "0")
		waitFor(t, "reading past the seek", 10*time.Second, func() bool { return rec.lastOffset() > target+500 })
		n := 0
		for _, w := range rec.on(0) {
			if w.Offset == target {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("offset %d written %d times: the seek was applied %d times", target, n, n)
		}
		stopOwner()
		o, err := wait()
		wantEnd(t, "owner", o, err, endReleased)
	})
}

// statusCell is the column named col of partition p's row in ctl status
// output (a column before SUCCESSOR TICK, whose name has a space).
func statusCell(t *testing.T, out string, p int, col string) string {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := slices.Index(strings.Fields(lines[0]), col)
	for _, line := range lines[1:] {
		if f := strings.Fields(line); i >= 0 && len(f) > i && f[0] == fmt.Sprint(p) {
			return f[i]
		}
	}
	t.Fatalf("no %s for partition %d in:\n%s", col, p, out)
	return ""
}

// ctl status on a group with no lease records says so and points to -group:
// a mistyped group showed a table of "none" and nothing else (issue 22).
func TestCtl_status_without_leases_suggests_group(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 2)
		d, _ := testDeps(t, r.s, nil)
		out := runCtlT(t, r.ctx, r.cfg, d, "status")
		for _, w := range []string{"no lease record", fmt.Sprintf("%q", r.cfg.Group), "-group (BATON_GROUP)"} {
			if !strings.Contains(out, w) {
				t.Errorf("status of a group with no leases does not say %s:\n%s", w, out)
			}
		}
		mustTake(t, r.s, r.key, lease{}, claim{Owner: "A", Tick: 1000})
		if out := runCtlT(t, r.ctx, r.cfg, d, "status"); strings.Contains(out, "-group") {
			t.Errorf("status with a lease suggests checking -group:\n%s", out)
		}
	})
}

// A released lease has no expiry to count down: its EXPIRES is "-", a
// running one's the time left (issue 22).
func TestCtl_status_released_shows_no_expiry(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 2)
		d, _ := testDeps(t, r.s, nil)
		mustProduce(t, r.cfg.Brokers, numbered(0, 10)...) // offset 7 within the log
		mustRelease(t, r.s, mustTake(t, r.s, r.key, lease{}, claim{Owner: "old", Tick: 1000}), 7)
		mustTake(t, r.s, leaseKey(r.cfg.Group, "src", 1), lease{}, claim{Owner: "live", Tick: 1000})
		out := runCtlT(t, r.ctx, r.cfg, d, "status")
		if got := statusCell(t, out, 0, "EXPIRES"); got != "-" {
			t.Errorf("released lease: EXPIRES %q, want -:\n%s", got, out)
		}
		if left, err := time.ParseDuration(statusCell(t, out, 1, "EXPIRES")); err != nil || left <= 0 || left > time.Minute {
			t.Errorf("running lease: EXPIRES %v (%v), want the minute left:\n%s", left, err, out)
		}
	})
}
