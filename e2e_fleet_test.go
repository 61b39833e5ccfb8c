//go:build e2e

// e2e_fleet_test.go runs the real binary as a fleet (fleet.go): three
// -mode process processes sharing a topic's partitions through the lease
// store, restarted one at a time as a rolling deploy does.

package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	fleetPartitions   = 12
	fleetSize         = 3
	fleetProduceEvery = 10 * time.Millisecond // a record a partition: 1200/s in all, light on 2 cores under -race
	fleetDwell        = 2 * e2eCommitEvery    // two balance periods
)

// Three processes share 12 partitions 4/4/4, and stay so; each is
// replaced in turn: SIGTERM, exit 0, its partitions taken by the other two
// (6/6), a new process started, 4/4/4 again, and nothing moves after.
// Records flow throughout, and every one reaches the sink once and in
// order: a SIGTERM hands over or releases, so no lease is ever taken from
// a run that stopped renewing.
func TestE2E_fleet_rolling_restart(t *testing.T) {
	t.Parallel()
	w := newE2EWorld(t, fleetPartitions, 2*time.Minute)
	env := w.env(t)
	t.Logf("%d partitions, %d processes; lease ttl %v, skew %v, commit every %v; store %s, sink %s",
		fleetPartitions, fleetSize, e2eTTL, e2eSkew, e2eCommitEvery, storeName, e2eSinkScheme(t))
	produced, stopProducing := w.producing(t, fleetPartitions, fleetProduceEvery)

	begin := time.Now()
	logf := func(format string, a ...any) {
		t.Logf("%6.2fs "+format, append([]any{time.Since(begin).Seconds()}, a...)...)
	}
	var all []*e2eProc
	start := func() *e2eProc {
		p := e2eStartProc(t, w.bin, w.logs, fmt.Sprintf("p%d", len(all)+1), "all", env)
		all = append(all, p)
		return p
	}
	fleet := make([]*e2eProc, fleetSize)
	for i := range fleet {
		fleet[i] = start()
	}
	owners, took := w.waitFleet(t, fleet, 15*time.Second)
	logf("%s own 4/4/4, %s after the start", e2eNames(fleet), e2eMs(took))
	w.wantStill(t, fleet, owners, fleetDwell)

	for i, old := range fleet {
		old.signal(t, syscall.SIGTERM)
		sent := time.Now()
		e2eWantExit0(t, old, 10*time.Second)
		logf("%s: SIGTERM, exit 0 after %s", old.name, e2eMs(time.Since(sent)))
		// Its leases were handed over or released: the other two take
		// them within a period or two (a take lost to the other costs
		// one). The limit is lax; the forced takes below tell a release
		// from a lease that ran out.
		rest := slices.Delete(slices.Clone(fleet), i, i+1)
		_, took = w.waitFleet(t, rest, e2eTTL)
		logf("%s own 6/6, %s after the exit", e2eNames(rest), e2eMs(took))
		fleet[i] = start()
		owners, took = w.waitFleet(t, fleet, 15*time.Second)
		logf("%s started: %s own 4/4/4 after %s", fleet[i].name, e2eNames(fleet), e2eMs(took))
		// As a deploy waits for the new one to be ready: here, a while
		// of reading with nothing moving.
		w.wantStill(t, fleet, owners, fleetDwell)
	}

	stopProducing()
	total := produced()
	waitFor(t, "the sink to hold every produced record", 15*time.Second, func() bool { return w.sink.complete(total) })
	logf("drained")
	for _, p := range fleet {
		p.signal(t, syscall.SIGTERM)
	}
	for _, p := range fleet {
		e2eWantExit0(t, p, 10*time.Second)
	}
	logf("%s: SIGTERM at the end, exit 0", e2eNames(fleet))

	e2eWantOnceInOrder(t, w, total, logf)
	e2eWantNoForcedTakes(t, all, logf)
}

// waitFleet waits until procs, and no other process, own every partition
// with a live lease, each ⌊P/N⌋ or ⌈P/N⌉ of them, seen on two reads in a
// row (a read of every lease is no snapshot: one taken mid-read could make
// a passing state look settled). It gives the owners, and how long it took.
func (w *e2eWorld) waitFleet(t *testing.T, procs []*e2eProc, limit time.Duration) (map[int32]string, time.Duration) {
	t.Helper()
	start := time.Now()
	lo, hi := fleetPartitions/len(procs), (fleetPartitions+len(procs)-1)/len(procs)
	var owners map[int32]string
	settled := func() bool {
		owners = w.fleetOwners(t)
		counts := e2eCounts(owners)
		if len(owners) != fleetPartitions || len(counts) != len(procs) {
			return false
		}
		for _, p := range procs {
			if c := counts[p.owner()]; c < lo || c > hi {
				return false
			}
		}
		return true
	}
	for seen := 0; seen < 2; time.Sleep(20 * time.Millisecond) {
		if settled() {
			seen++
			continue
		}
		seen = 0
		if time.Since(start) > limit {
			t.Fatalf("%s: not each %d..%d of %d partitions within %v; live leases by process: %s",
				e2eNames(procs), lo, hi, fleetPartitions, limit, e2eNamedCounts(e2eCounts(owners), procs))
		}
	}
	return owners, time.Since(start)
}

// wantStill checks, a while after the fleet settled as owners, that no
// partition moved: a fleet even within one asks for nothing.
func (w *e2eWorld) wantStill(t *testing.T, procs []*e2eProc, owners map[int32]string, after time.Duration) {
	t.Helper()
	time.Sleep(after)
	now := w.fleetOwners(t)
	for p := range int32(fleetPartitions) {
		if now[p] != owners[p] {
			t.Errorf("partition %d moved from %q to %q %v after %s settled", p, owners[p], now[p], after, e2eNames(procs))
		}
	}
}

// fleetOwners reads src's leases: the process of each live running one,
// named as fleet.go's processOf does (the owner id before its last '/').
func (w *e2eWorld) fleetOwners(t *testing.T) map[int32]string {
	owners := map[int32]string{}
	for p := range int32(fleetPartitions) {
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		l, err := w.leases.load(ctx, leaseKey(w.group, "src", p))
		cancel()
		if err == nil && l.State == stateRunning && !l.expired(time.Now(), e2eSkew) {
			owners[p] = processOf(l.Owner)
		}
	}
	return owners
}

func e2eCounts(owners map[int32]string) map[string]int {
	counts := map[string]int{}
	for _, who := range owners {
		counts[who]++
	}
	return counts
}

// e2eNamedCounts shows counts by the test's names of the processes, for
// a failure: "p1=4 p2=5 process-ab12cd34=3".
func e2eNamedCounts(counts map[string]int, procs []*e2eProc) string {
	names := map[string]string{}
	for _, p := range procs {
		names[p.owner()] = p.name
	}
	var parts []string
	for who, c := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", cmp.Or(names[who], who), c))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func e2eNames(procs []*e2eProc) string {
	var names []string
	for _, p := range procs {
		names = append(names, p.name)
	}
	return strings.Join(names, ",")
}

func e2eWantExit0(t *testing.T, p *e2eProc, limit time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %v of %s", p.name, limit, p.sent)
	}
	if st := p.cmd.ProcessState; st.ExitCode() != 0 {
		t.Fatalf("%s (sent %s): %v; want exit status 0", p.name, p.sent, st)
	}
}

// e2eWantOnceInOrder checks that every produced record reached the sink,
// in order, once (no process was killed, so none is written twice), and
// that every lease ended released at the end of its partition.
func e2eWantOnceInOrder(t *testing.T, w *e2eWorld, total []int64, logf func(string, ...any)) {
	t.Helper()
	var records, dups int64
	var widest time.Duration
	widestAt := -1
	for p := range fleetPartitions {
		recs := w.sink.partition(int32(p))
		rep := analyseSink(recs, total[p])
		records += total[p]
		dups += int64(rep.Duplicates)
		if rep.Missing != 0 || rep.Skips != 0 || rep.Duplicates != 0 {
			t.Errorf("partition %d: produced %d, sink %d: %d missing, %d out of order, %d duplicates (rewinds to %v)",
				p, total[p], rep.Written, rep.Missing, rep.Skips, rep.Duplicates, rep.Rewinds)
		}
		// The longest pause of the partition's stream: a move by release
		// and take shows here, a hand-over hardly.
		for i := 1; i < len(recs); i++ {
			if gap := recs[i].At.Sub(recs[i-1].At); gap > widest {
				widest, widestAt = gap, p
			}
		}
		w.wantReleased(t, int32(p), total[p])
	}
	logf("%d records over %d partitions, %d duplicates; longest pause in a partition's sink %s (partition %d)",
		records, fleetPartitions, dups, e2eMs(widest), widestAt)
}

// e2eWantNoForcedTakes checks, from the processes' logs, that no lease was
// taken forced (still running in another's name, but expired): every move
// was a hand-over, or a take of a released lease.
func e2eWantNoForcedTakes(t *testing.T, procs []*e2eProc, logf func(string, ...any)) {
	t.Helper()
	var taken, forced, handed, released int
	for _, p := range procs {
		for _, f := range e2eLogLines(p.log) {
			switch f["msg"] {
			case "lease taken":
				taken++
				if f["forced"] == "true" {
					forced++
					t.Errorf("%s took partition %s's expired lease (as %s, from %s): a run stopped renewing", p.name, f["partition"], f["owner"], f["previous_owner"])
				}
			case "baton handed over":
				handed++
			case "releasing":
				released++
			}
		}
	}
	logf("%d processes in all: %d leases taken (%d of them expired), %d handed over, %d released", len(procs), taken, forced, handed, released)
}
