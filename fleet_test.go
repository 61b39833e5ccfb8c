// fleet_test.go tests process mode as a fleet: processes sharing a topic's
// partitions through the lease store, balanced by hand-overs.

package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fleetProc is one process of a fleet in the test binary: its own store
// client and Kafka clients, its own context (a SIGTERM), and a switch that
// cuts it off from the store and the sink (a SIGKILL).
type fleetProc struct {
	cancel context.CancelFunc
	done   chan error
	down   *atomic.Bool
}

// client is a store client of its own for a process of the fleet: the
// memory store is one in the test binary, so every process shares r's.
func client(t *testing.T, r *rig, b backend) store {
	if b.name == "memory" {
		return r.s
	}
	return b.open(t)
}

// startFleetProc runs process mode with -balance on r's topic, against s.
func startFleetProc(t *testing.T, r *rig, s store, now func() time.Time) *fleetProc {
	t.Helper()
	fs := newFaultStore(s)
	d, _ := testDeps(t, fs, r.rec)
	d.wrapSink = func(inv invocation, k sink) sink { return r.rec.wrap(inv, crashSink{k, &fs.down}) }
	if now != nil {
		d.now = now
	}
	cfg := *r.cfg
	cfg.Mode, cfg.Balance = "process", true
	ctx, cancel := context.WithCancel(r.ctx)
	p := &fleetProc{cancel: cancel, done: make(chan error, 1), down: &fs.down}
	go func() { p.done <- runProcess(ctx, &cfg, d) }()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

// stop is a SIGTERM: every run hands over or releases.
func (p *fleetProc) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	if err := <-p.done; err != nil {
		t.Fatalf("process stopped with %v", err)
	}
	p.done <- nil // for the cleanup
}

// kill is a SIGKILL: nothing of the process reaches the store or the sink
// again, and its leases end on their own.
func (p *fleetProc) kill() {
	p.down.Store(true)
	p.cancel()
	<-p.done
	p.done <- nil
}

// shares is how many live leases of the topic's partitions each process
// owns, as a sorted list, and whether every partition is owned.
func shares(r *rig, parts int32) ([]int, bool) {
	var ls []lease
	for p := range parts {
		if l, err := r.s.load(r.ctx, leaseKey(r.cfg.Group, "src", p)); err == nil {
			ls = append(ls, l)
		}
	}
	return sharesOf(ls, time.Now(), r.cfg.Skew, int(parts))
}

// sharesOf is how many of ls, live leases of parts partitions, each
// process owns, sorted, and whether every partition is owned.
func sharesOf(ls []lease, now time.Time, skew time.Duration, parts int) ([]int, bool) {
	counts := map[string]int{}
	owned := 0
	for _, l := range ls {
		if l.State == stateRunning && !l.expired(now, skew) {
			counts[processOf(l.Owner)]++
			owned++
		}
	}
	var out []int
	for _, c := range counts {
		out = append(out, c)
	}
	sort.Ints(out)
	return out, owned == parts
}

// waitShares waits until the processes own want, and says how long it took.
func waitShares(t *testing.T, r *rig, parts int32, want []int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got []int
	waitFor(t, fmt.Sprintf("shares %v", want), limit, func() bool {
		var all bool
		got, all = shares(r, parts)
		return all && fmt.Sprint(got) == fmt.Sprint(want)
	})
	return time.Since(start)
}

// TestFleet_balances: three processes share 12 partitions 4/4/4 within two
// lease periods, a fourth joining makes it 3/3/3/3, one killed leaves its
// partitions to the others within its lease, a skew and a balance period;
// then the rest stop one by one as on SIGTERM. Records flow throughout:
// nothing is lost or reordered, and every move is a hand-over whose gap the
// recorder keeps.
func TestFleet_balances(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		const parts = 12
		r := newRig(t, b.open(t), parts)
		pctx, stopProducing := context.WithCancel(r.ctx)
		defer stopProducing()
		produced, err := produce(pctx, r.cfg.Brokers, "src", parts, 5*time.Millisecond)
		must(t, err)
		period := r.cfg.TTL
		var procs []*fleetProc
		for range 3 {
			procs = append(procs, startFleetProc(t, r, client(t, r, b), nil))
		}
		took := waitShares(t, r, parts, []int{4, 4, 4}, 2*period+time.Second)
		t.Logf("%s: 4/4/4 after %v", b.name, took)

		procs = append(procs, startFleetProc(t, r, client(t, r, b), nil))
		took = waitShares(t, r, parts, []int{3, 3, 3, 3}, 2*period+time.Second)
		t.Logf("%s: a fourth joined: 3/3/3/3 after %v", b.name, took)
		d, _ := testDeps(t, r.s, nil)
		out := runCtlT(t, r.ctx, r.cfg, d, "status")
		_, table, _ := strings.Cut(out, "PROCESS")
		if got := regexp.MustCompile(`(?m)^process-\S+\s+3$`).FindAllString(table, -1); len(got) != 4 {
			t.Fatalf("ctl status: want each of the 4 processes with its 3 partitions after the table:\n%s", out)
		}

		procs[1].kill()
		took = waitShares(t, r, parts, []int{4, 4, 4}, period+r.cfg.Skew+3*r.cfg.CommitEvery+time.Second)
		t.Logf("%s: one killed: 4/4/4 again after %v", b.name, took)

		for i, p := range []*fleetProc{procs[0], procs[2]} {
			p.stop(t)
			want := []int{6, 6}
			if i == 1 {
				want = []int{12}
			}
			took = waitShares(t, r, parts, want, 2*period)
			t.Logf("%s: one stopped: %v after %v", b.name, want, took)
		}
		total := r.drain(t, produced, stopProducing, 20*time.Second)
		procs[3].stop(t)
		tl := r.rec.tally(total)
		wantTally(t, tl, tl.Produced, -1)
		var gaps []string
		for _, h := range r.rec.handoffs {
			gaps = append(gaps, h.Gap.Round(time.Millisecond/10).String())
		}
		t.Logf("%s: %d records, %d moves by hand-over, gaps %s; %d delivered twice (the killed process's since its last commits)",
			b.name, tl.Produced, tl.Handoffs, strings.Join(gaps, " "), tl.Duplicated)
	})
}

// TestFleet_steady_state_moves_nothing: a balanced fleet whose clocks
// differ by up to the skew allowance runs 20 lease periods without one
// partition moving.
// (6 partitions, so that the test's processes leave the machine time to
// renew: a lease that lapses for want of CPU is taken, rightly, and moves.)
func TestFleet_steady_state_moves_nothing(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		const parts = 6
		r := newRig(t, b.open(t), parts)
		ctx, cancel := context.WithTimeout(context.Background(), 25*r.cfg.TTL+30*time.Second) // longer than ctxT's
		t.Cleanup(cancel)
		r.ctx = ctx
		pctx, stopProducing := context.WithCancel(r.ctx)
		defer stopProducing()
		_, err := produce(pctx, r.cfg.Brokers, "src", parts, 10*time.Millisecond)
		must(t, err)
		for _, off := range []time.Duration{-r.cfg.Skew, 0, r.cfg.Skew} {
			startFleetProc(t, r, client(t, r, b), func() time.Time { return time.Now().Add(off) })
		}
		waitSettled(t, r, parts, []int{2, 2, 2}, 5*r.cfg.TTL)
		since := time.Now()
		time.Sleep(20 * r.cfg.TTL)
		if got, all := shares(r, parts); !all || fmt.Sprint(got) != "[2 2 2]" || moves(r, parts, since) != 0 {
			t.Fatalf("after 20 lease periods: shares %v (all owned %v), %d moves; want 2/2/2 and none", got, all, moves(r, parts, since))
		}
	})
}

// moves counts the times a partition's writes passed from one process to
// another since since: a run a process starts again on its own partition
// (after a sink failure, say) changes the owner's name, not the process.
func moves(r *rig, parts int32, since time.Time) int {
	n := 0
	for p := range parts {
		last := ""
		for _, w := range r.rec.on(p) {
			who := processOf(w.Owner)
			if w.At.After(since) && last != "" && who != last {
				n++
			}
			last = who
		}
	}
	return n
}

// waitSettled waits until the processes own want and no ask is pending,
// for three commit intervals in a row: an ask made while the fleet was
// still forming (a process that counted fewer members) would otherwise
// move a partition after the shares first looked even.
func waitSettled(t *testing.T, r *rig, parts int32, want []int, limit time.Duration) {
	t.Helper()
	calm := 0
	waitFor(t, fmt.Sprintf("shares %v and no ask pending", want), limit, func() bool {
		got, all := shares(r, parts)
		asked := false
		for p := range parts {
			if l, err := r.s.load(r.ctx, leaseKey(r.cfg.Group, "src", p)); err == nil && l.asked(time.Now(), r.cfg.Skew) {
				asked = true
			}
		}
		if calm = calm + 1; !all || fmt.Sprint(got) != fmt.Sprint(want) || asked {
			calm = 0
		}
		if calm < 3 {
			time.Sleep(r.cfg.CommitEvery)
			return false
		}
		return true
	})
}

// TestFleet_store_outage_warns_once: while the lease store fails every
// read, a process of the fleet cannot balance; it says so once, not every
// balance period, says when reads succeed again, and then owns the
// partitions.
func TestFleet_store_outage_warns_once(t *testing.T) {
	r := newRig(t, newMemStore(), 4)
	var outage atomic.Bool
	outage.Store(true)
	s := &hookStore{store: r.s, before: func(_ context.Context, call storeCall) error {
		if call.op == "load" && outage.Load() {
			return errLost
		}
		return nil
	}}
	d, _ := testDeps(t, s, r.rec)
	lb := captureLog(t, d)
	cfg := *r.cfg
	cfg.Mode, cfg.Balance = "process", true
	ctx, cancel := context.WithCancel(r.ctx)
	done := runningProcess(ctx, &cfg, d)
	defer func() { cancel(); <-done }()
	waitFor(t, "a few failed balance passes", 5*time.Second, func() bool { return lb.count("fleet: lease read failed") > 0 })
	time.Sleep(6 * cfg.CommitEvery)
	outage.Store(false)
	waitShares(t, r, 4, []int{4}, 10*time.Second)
	if warned, healed := lb.count("fleet: lease read failed"), lb.count("lease reads succeed again"); warned != 1 || healed != 1 {
		t.Fatalf("%d warnings of failed lease reads, %d lines saying they succeed again; want one each:\n%s", warned, healed, strings.Join(lb.lines("fleet:"), "\n"))
	}
}
