//go:build e2e

// e2e_lambda_test.go runs the real binary under aws-lambda-rie, invoked the
// way EventBridge Scheduler and Lambda's async retries invoke it.

package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rieScheduler invokes emulators as EventBridge Scheduler invokes a
// function: it never sends a second invoke to a busy emulator (that crashes
// the emulator; on AWS it would go to another container), and picks idle
// ones in turn, so each container serves several partitions over time.
type rieScheduler struct {
	t      *testing.T
	emus   []*rieEmulator
	port   int // kfake's
	ctx    context.Context
	next   int
	wg     sync.WaitGroup
	mu     sync.Mutex
	issued []*riePending
}

// riePending is an invocation on its way: wait gives its call.
type riePending struct {
	emu  *rieEmulator
	done chan struct{}
	c    rieCall
}

func (p *riePending) wait() rieCall { <-p.done; return p.c }

func (s *rieScheduler) pick() *rieEmulator {
	s.t.Helper()
	for i := range s.emus {
		e := s.emus[(s.next+i)%len(s.emus)]
		if e.claim() {
			s.next = (s.next + i + 1) % len(s.emus)
			return e
		}
	}
	s.t.Fatalf("no idle emulator: every one of %d is running an invocation", len(s.emus))
	return nil
}

// start invokes a picked emulator in the background, once gate (if any)
// is closed.
func (s *rieScheduler) start(e *rieEmulator, partition int32, tick time.Time, gate <-chan struct{}) *riePending {
	return s.send(e, partition, tick, fmt.Sprintf(`{"topic":"src","partition":%d,"tick":%q}`, partition, tick.UTC().Format(time.RFC3339)), gate)
}

// send invokes e with payload in the background, once gate (if any) is
// closed.
func (s *rieScheduler) send(e *rieEmulator, partition int32, tick time.Time, payload string, gate <-chan struct{}) *riePending {
	p := &riePending{emu: e, done: make(chan struct{})}
	s.mu.Lock()
	s.issued = append(s.issued, p)
	s.mu.Unlock()
	s.wg.Go(func() {
		defer close(p.done)
		if gate != nil {
			<-gate
		}
		p.c = e.invoke(s.ctx, partition, tick, payload, s.port)
	})
	return p
}

// finish lets the last tick's invocations read on until their deadline
// (everything produced up to a second after that tick is theirs to
// deliver), then waits for every invocation, and for the sink to hold
// every record produced.
func (s *rieScheduler) finish(w *e2eWorld, lastTick time.Time, produced func() []int64, stopProducing func()) []int64 {
	time.Sleep(time.Until(lastTick.Add(time.Second)))
	stopProducing()
	total := produced()
	s.wg.Wait()
	waitFor(s.t, "the sink to hold every produced record", 10*time.Second, func() bool { return w.sink.complete(total) })
	return total
}

// newRIEFleet starts n emulators under timeout and a scheduler over them.
func newRIEFleet(t *testing.T, w *e2eWorld, n int, timeout time.Duration) ([]*rieEmulator, *rieScheduler) {
	emus := w.emulators(t, needRIE(t), n, w.rieEnv(t, timeout))
	return emus, &rieScheduler{t: t, emus: emus, port: w.conns.port, ctx: w.ctx}
}

func TestE2E_lambda_rotations_under_rie(t *testing.T) {
	t.Parallel()
	needRIE(t)
	w := newE2EWorld(t, riePartitions, 3*time.Minute)
	leases, group, conns, sink, ctx := w.leases, w.group, w.conns, w.sink, w.ctx
	// Two containers a partition, so that a tick's invocation never finds
	// its partition's previous one still running in the same container; one
	// spare for the duplicate deliveries.
	emus, s := newRIEFleet(t, w, 2*riePartitions+1, rieTimeout)
	produced, stopProducing := w.producing(t, riePartitions, e2eProduceEvery)
	t.Logf("%d emulators (timeout %v), %d partitions, a tick every %v for %d ticks; lease ttl %v, skew %v, commit every %v; store %s",
		len(emus), rieTimeout, riePartitions, rieEvery, rieTicks, e2eTTL, e2eSkew, e2eCommitEvery, storeName)

	var (
		killAt      time.Time
		killedLease lease
		killed      *riePending
		lateDup     rieCall
		sameDup     [2]*riePending
	)
	base := time.Now().Truncate(time.Second).Add(2 * time.Second)
	var lastTick time.Time
	for n := range rieTicks {
		tick := base.Add(time.Duration(n) * rieEvery)
		lastTick = tick
		time.Sleep(time.Until(tick))
		byPartition := map[int32]*riePending{}
		for p := range int32(riePartitions) {
			if n == rieSameDupTick && p == 2 {
				a, b := s.pick(), s.pick()
				gate := make(chan struct{})
				sameDup = [2]*riePending{s.start(a, p, tick, gate), s.start(b, p, tick, gate)}
				close(gate)
				continue
			}
			byPartition[p] = s.start(s.pick(), p, tick, nil)
		}
		tickMs := tick.UnixMilli()
		switch n {
		case rieLateDupTick:
			// Once the first delivery has claimed the tick (asked for the
			// baton), the same payload arrives in another warm container.
			w.lease(t, 1, 2*time.Second, "the first delivery to claim its tick",
				func(l lease) bool { return l.Tick == tickMs || l.SuccessorTick == tickMs })
			e := s.pick()
			lateDup = s.start(e, 1, tick, nil).wait()
		case rieKillTick:
			// Once the invocation owns partition 0 and has committed
			// records, its runtime is killed half a commit interval later:
			// a container that dies mid-invocation, with records written
			// since its last commit.
			key := leaseKey(group, "src", 0)
			got, _ := w.lease(t, 0, 2*time.Second, "the invocation to own partition 0",
				func(l lease) bool { return l.Tick == tickMs && l.State == stateRunning })
			w.lease(t, 0, 2*time.Second, "the invocation to commit",
				func(l lease) bool { return l.Tick == tickMs && l.Offset > got.Offset })
			time.Sleep(e2eCommitEvery / 2)
			killed = byPartition[0]
			pid := killed.emu.runtimePID()
			killAt = time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var err error
			if killedLease, err = leases.load(ctx, key); err != nil || killedLease.Tick != tickMs {
				t.Fatalf("lease after the kill: %+v, %v", killedLease, err)
			}
			t.Logf("tick %d: killed %s's runtime (pid %d) owning partition 0, last commit at offset %d, lease until %s",
				n, killed.emu.name, pid, killedLease.Offset, time.UnixMilli(killedLease.ExpiresAt).Format("15:04:05.000"))
		}
	}
	total := s.finish(w, lastTick, produced, stopProducing)

	// Every invocation answered: nothing hit the emulator's timeout.
	var calls []rieCall
	var slack []time.Duration // from each answer to its deadline
	for _, p := range s.issued {
		c := p.wait()
		calls = append(calls, c)
		if c.Out.End != "" {
			slack = append(slack, c.Start.Add(rieTimeout).Sub(c.End))
		}
		switch {
		case c.Err != nil:
			t.Errorf("%s %s: %v", c.Emulator, c.Payload, c.Err)
		case p == killed:
			if c.Status != http.StatusBadGateway || !strings.Contains(c.Body, "Runtime.ExitError") {
				t.Errorf("killed invocation on %s: status %d %s; want 502 Runtime.ExitError", c.Emulator, c.Status, c.Body)
			}
		case c.timedOut():
			t.Errorf("%s %s: the emulator killed the runtime at the deadline %s; it had logged: %s",
				c.Emulator, c.Payload, c.Start.Add(rieTimeout).Format("15:04:05.000"), p.emu.story(c))
		case c.Status != http.StatusOK || c.Out.End == "":
			t.Errorf("%s %s: status %d, body %s", c.Emulator, c.Payload, c.Status, c.Body)
		case c.End.Sub(c.Start) >= rieTimeout:
			t.Errorf("%s %s: answered after %v, past the %v timeout", c.Emulator, c.Payload, c.End.Sub(c.Start), rieTimeout)
		case c.Out.End != endDuplicate && (c.Out.Records == 0 || c.Out.End != endHanded && c.Out.End != endReleased):
			t.Errorf("%s %s: %s; want records read, then handed over or released", c.Emulator, c.Payload, c.Body)
		}
		if c.LeftOpen != 0 {
			t.Errorf("%s %s: its runtime kept %d Kafka connections open after answering", c.Emulator, c.Payload, c.LeftOpen)
		}
	}

	// Duplicate deliveries exit before any Kafka connection.
	// Connections are counted by the process that opened them, so other
	// invocations starting meanwhile do not count.
	if lateDup.Out.End != endDuplicate {
		t.Errorf("late duplicate of tick %d on %s: %s; want %q", rieLateDupTick, lateDup.Emulator, lateDup.Body, endDuplicate)
	}
	if n := conns.from(lateDup.PID, lateDup.Start, lateDup.End); n != 0 || lateDup.PID == 0 {
		t.Errorf("late duplicate on %s: its runtime (pid %d) opened %d Kafka connections", lateDup.Emulator, lateDup.PID, n)
	}
	t.Logf("late duplicate (tick %d, partition 1) on %s: %q in %v, Kafka connections from its runtime: %d",
		rieLateDupTick, lateDup.Emulator, lateDup.Out.End, lateDup.End.Sub(lateDup.Start).Round(time.Millisecond), conns.from(lateDup.PID, lateDup.Start, lateDup.End))
	dups := 0
	for i, p := range sameDup {
		c := p.c
		n := conns.from(c.PID, c.Start, c.End)
		t.Logf("same-instant delivery %d of tick %d (partition 2) on %s: %q, Kafka connections from its runtime: %d", i+1, rieSameDupTick, c.Emulator, c.Out.End, n)
		if c.Out.End == endDuplicate {
			dups++
			if n != 0 {
				t.Errorf("same-instant duplicate on %s ended %q but its runtime opened %d Kafka connections first", c.Emulator, c.Out.End, n)
			}
		}
	}
	if dups != 1 {
		t.Errorf("tick %d delivered twice at once: %d deliveries ended %q, want exactly 1", rieSameDupTick, dups, endDuplicate)
	}

	// Per partition: the baton passes with the offset, every handoff is a
	// rotation with a gap measured at the sink, nothing is lost or
	// reordered, and duplicates follow only the kill.
	var gaps []time.Duration
	txn := e2eSinkScheme(t) == "kafka+txn"
	for p := range int32(riePartitions) {
		recs := sink.partition(p)
		rep := analyseSink(recs, total[p])
		var seq []rieCall
		for _, c := range calls {
			if c.Partition == p && c.Out.End != endDuplicate {
				seq = append(seq, c)
			}
		}
		slices.SortFunc(seq, func(a, b rieCall) int { return a.Tick.Compare(b.Tick) })
		rotations := 0
		for i, c := range seq {
			if c.ID == killed.c.ID && i+1 < len(seq) {
				// With kafka+txn it may start later: where the killed owner's
				// last transaction ended, if that came after its lease commit.
				if from := seq[i+1].Out.From; from < killedLease.Offset || !txn && from != killedLease.Offset {
					t.Errorf("partition %d: the invocation after the killed one started at %d, not at its last commit %d", p, from, killedLease.Offset)
				}
			}
			if c.Out.End != endHanded {
				continue
			}
			rotations++
			if i+1 < len(seq) && seq[i+1].Out.End != "" && seq[i+1].Out.From != c.Out.To {
				t.Errorf("partition %d: %s handed over at %d, the next started at %d", p, c.Emulator, c.Out.To, seq[i+1].Out.From)
			}
			gap, ok := e2eGapBefore(recs, rep, c.Out.To)
			if !ok {
				continue
			}
			gaps = append(gaps, gap)
			next := "?"
			if i+1 < len(seq) {
				next = seq[i+1].Emulator
			}
			t.Logf("partition %d rotation %2d: %s -> %s at offset %6d, gap %s", p, rotations, c.Emulator, next, c.Out.To, e2eMs(gap))
		}
		if rotations < 12 {
			t.Errorf("partition %d: %d rotations, want at least 12", p, rotations)
		}
		if last := seq[len(seq)-1]; last.Out.End != endReleased || last.Out.To != total[p] {
			t.Errorf("partition %d: the last invocation %+v; want released at offset %d", p, last.Out, total[p])
		}
		w.wantReleased(t, p, total[p])
		t.Logf("partition %d: produced %d, sink %d records, duplicates %d (rewinds to %v), out of order %d, missing %d",
			p, total[p], rep.Written, rep.Duplicates, rep.Rewinds, rep.Skips, rep.Missing)
		if rep.Missing != 0 || rep.Skips != 0 {
			t.Errorf("partition %d: %d records missing, %d out of order", p, rep.Missing, rep.Skips)
		}
		switch {
		case txn && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates with the exactly-once sink", p, rep.Duplicates)
		case p != 0 && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates with no kill", p, rep.Duplicates)
		case p == 0 && len(rep.Rewinds) > 1, p == 0 && len(rep.Rewinds) == 1 && rep.Rewinds[0] != killedLease.Offset:
			t.Errorf("partition 0: rewinds to %v; want at most one, to the killed owner's last commit %d", rep.Rewinds, killedLease.Offset)
		case p == 0 && len(rep.Rewinds) == 1:
			took := recs[rep.rewindAt[0]].At // the next owner's first write
			t.Logf("partition 0 after the kill: the next owner wrote from offset %d at +%s (lease end + skew at +%s), %d duplicates",
				rep.Rewinds[0], e2eMs(took.Sub(killAt)), e2eMs(time.UnixMilli(killedLease.ExpiresAt).Add(e2eSkew).Sub(killAt)), rep.Duplicates)
		}
	}
	t.Logf("handoff gap over %d rotations: p50 %s, max %s (sink: from the old owner's last record to the new owner's first, by record timestamps)",
		len(gaps), e2eMs(percentile(gaps, 50)), e2eMs(percentile(gaps, 100)))
	t.Logf("answers before the %v deadline: least %s, p50 %s ahead", rieTimeout, e2eMs(percentile(slack, 0)), e2eMs(percentile(slack, 50)))

	// A reused container behaves like a fresh one: same runtime process,
	// same kind of answer, no connection left behind.
	for _, e := range emus {
		var pids []int
		ends, warm, afterKill := map[string]int{}, 0, false
		for _, c := range e.history() {
			if c.died() { // killed, by the test or at the deadline: its runtime is gone
				ends["killed"]++
				afterKill = true
				continue
			}
			ends[c.Out.End]++
			switch {
			case len(pids) == 0 || afterKill:
				pids = append(pids, c.PID)
			case c.PID == pids[len(pids)-1]:
				warm++
			default:
				t.Errorf("%s: an invocation ran in runtime %d after one in %d with no kill between: the container was not reused", e.name, c.PID, pids[len(pids)-1])
				pids = append(pids, c.PID)
			}
			afterKill = false
		}
		if warm == 0 {
			t.Errorf("%s: no invocation reused a warm runtime", e.name)
		}
		t.Logf("%s: %d invocations, %d of them in a warm runtime (pids %v), ends %v", e.name, len(e.history()), warm, pids, ends)
	}
}

// The Lambda schedule: a 4 s function timeout and a tick every 3 s per
// partition, so each invocation overlaps the next by a second, as a
// 15-minute function scheduled every 14 minutes does.
const (
	rieTimeout     = 4 * time.Second
	rieEvery       = rieTimeout - time.Second
	riePartitions  = 3
	rieTicks       = 16
	rieLateDupTick = 3 // partition 1's tick is delivered again while its first delivery runs
	rieKillTick    = 5 // partition 0's invocation has its runtime SIGKILLed
	rieSameDupTick = 9 // partition 2's tick is delivered to two emulators at the same instant
)

// Lambda retries a failed invocation with the same event: the retry of an
// owner whose runtime was SIGKILLed takes over once the lease has lapsed.
func TestE2E_lambda_retry_after_kill_takes_over(t *testing.T) {
	t.Parallel()
	needRIE(t)
	w := newE2EWorld(t, 1, time.Minute)
	leases, group, conns, sink, ctx := w.leases, w.group, w.conns, w.sink, w.ctx
	emus, _ := newRIEFleet(t, w, 2, 8*time.Second)
	first, retry := emus[0], emus[1]
	produced, stopProducing := w.producing(t, 1, e2eProduceEvery)
	tick := time.Now().Truncate(time.Second)
	payload := fmt.Sprintf(`{"topic":"src","partition":0,"tick":%q}`, tick.UTC().Format(time.RFC3339))
	key := leaseKey(group, "src", 0)

	first.claim()
	killed := make(chan rieCall, 1)
	go func() { killed <- first.invoke(ctx, 0, tick, payload, conns.port) }()
	got, _ := w.lease(t, 0, 5*time.Second, "the first delivery to own the partition",
		func(l lease) bool { return l.State == stateRunning && l.Offset > 0 })
	w.lease(t, 0, 2*time.Second, "a commit", func(l lease) bool { return l.Offset > got.Offset })
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
