//go:build e2e

// e2e_process_test.go runs the real binary as -mode process processes,
// started, signalled and killed at random.

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An e2eProc is one run of the binary in -mode process.
type e2eProc struct {
	name, parts string
	cmd         *exec.Cmd
	log         string
	started     time.Time
	done        chan struct{} // closed when it has exited
	sent        string        // the signal the test sent, if any
}

// e2eStartProc runs the binary owning parts, with env as its whole
// environment.
func e2eStartProc(t *testing.T, bin, dir, name, parts string, env []string) *e2eProc {
	t.Helper()
	p := &e2eProc{name: name, parts: parts, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-mode", "process", "-topic", "src", "-partitions", parts, "-sink", e2eSinkScheme(t)+"://out",
		"-ttl", e2eTTL.String(), "-skew", e2eSkew.String(), "-commit-interval", e2eCommitEvery.String())
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = env, logf, logf
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s (-partitions %s) log, last lines:\n%s", name, parts, e2eTail(p.log, 8))
		}
	})
	return p
}

func (p *e2eProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// owner is the prefix of the owner ids the process writes in leases, from
// its log; "" until it has logged one.
func (p *e2eProc) owner() string {
	for _, f := range e2eLogLines(p.log) {
		if o, _, ok := strings.Cut(f["owner"], "/"); ok {
			return o
		}
	}
	return ""
}

func (p *e2eProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.sent = sig.String()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

// e2eHandoffsIn reads the cooperative handoffs a process logged: partition
// and offset of each.
func e2eHandoffsIn(log string) [][2]int64 {
	var hs [][2]int64
	for _, f := range e2eLogLines(log) {
		if f["msg"] != "baton handed over" {
			continue
		}
		part := f["partition"]
		if part == "" { // only in the key: group/topic/partition
			part = f["key"][strings.LastIndex(f["key"], "/")+1:]
		}
		p, err1 := strconv.ParseInt(part, 10, 32)
		o, err2 := strconv.ParseInt(f["offset"], 10, 64)
		if err1 == nil && err2 == nil {
			hs = append(hs, [2]int64{p, o})
		}
	}
	return hs
}

var e2eTextAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// e2eLogLines reads a log of slog lines, JSON or text, as their top-level
// fields in text form; other lines are skipped.
func e2eLogLines(file string) []map[string]string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := map[string]string{}
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("{")) {
			var m map[string]json.RawMessage
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			for k, v := range m {
				var str string
				if json.Unmarshal(v, &str) == nil {
					fields[k] = str
				} else {
					fields[k] = string(v)
				}
			}
		} else {
			for _, m := range e2eTextAttr.FindAllStringSubmatch(string(line), -1) {
				v := m[2]
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				}
				fields[m[1]] = v
			}
		}
		if fields["msg"] != "" {
			lines = append(lines, fields)
		}
	}
	return lines
}

// e2eSeed is BATON_E2E_SEED, or the time.
func e2eSeed(t *testing.T) uint64 {
	if s := os.Getenv("BATON_E2E_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BATON_E2E_SEED=%q: want a number", s)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// Three slots, like three replicas under a supervisor, own the partitions
// between them; each slot's process is started, rolled (a new one started
// while the old runs: the old hands over and exits), stopped (SIGTERM: it
// releases) at random, and one is killed with SIGKILL mid-stream and
// restarted. The random choices come from a printed seed.
func TestE2E_process_restarts_and_sigkill(t *testing.T) {
	t.Parallel()
	w := newE2EWorld(t, procPartitions, 2*time.Minute)
	leases, group, sink, env := w.leases, w.group, w.sink, w.env(t)
	// Rolling restarts of the older way, which -balance=false keeps: the
	// newest process takes its slot's partitions over (e2e_fleet_test.go
	// rolls a balanced fleet).
	env = append(env, "BATON_BALANCE=false")
	seed := e2eSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d (BATON_E2E_SEED=%d replays this schedule); lease ttl %v, skew %v, commit every %v; store %s",
		seed, seed, e2eTTL, e2eSkew, e2eCommitEvery, storeName)

	// The slots' partitions: the four split 2+1+1 in a random way.
	perm := rng.Perm(procPartitions)
	slotParts := [][]int{perm[:2], perm[2:3], perm[3:]}
	flag := func(ps []int) string { return strings.Join(strings.Fields(strings.Trim(fmt.Sprint(ps), "[]")), ",") }
	produced, stopProducing := w.producing(t, procPartitions, e2eProduceEvery)

	begin := time.Now()
	var all []*e2eProc
	maxUp := 0 // processes running at once
	slots := make([]*e2eProc, len(slotParts))
	logf := func(format string, a ...any) {
		t.Logf("%6.2fs "+format, append([]any{time.Since(begin).Seconds()}, a...)...)
	}
	start := func(slot int, why string) *e2eProc {
		p := e2eStartProc(t, w.bin, w.logs, fmt.Sprintf("p%d", len(all)+1), flag(slotParts[slot]), env)
		logf("slot %d: start %s (-partitions %s): %s", slot, p.name, p.parts, why)
		all = append(all, p)
		slots[slot] = p
		n := 0
		for _, q := range all {
			if !q.exited() {
				n++
			}
		}
		maxUp = max(maxUp, n)
		return p
	}
	up := func(slot int) bool { return slots[slot] != nil && !slots[slot].exited() && slots[slot].sent == "" }
	for slot := range slots {
		start(slot, "first start")
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	}

	killStep := 3 + rng.IntN(4)
	var (
		victim    *e2eProc
		killAt    time.Time
		atKill    = map[int]lease{} // the victim's partitions' leases right after the kill
		takenAt   = map[int]time.Time{}
		victimSet []int
	)
	for step := range procSteps {
		time.Sleep(time.Duration(600+rng.IntN(1000)) * time.Millisecond)
		slot := rng.IntN(len(slots))
		if step == killStep {
			for i := 0; i < len(slots) && !up(slot); i++ {
				slot = (slot + 1) % len(slots)
			}
			if !up(slot) {
				start(slot, "every slot was down; one to kill")
			}
			victim, victimSet = slots[slot], slotParts[slot]
			// Kill it once it owns its partitions and has committed records.
			for _, p := range victimSet {
				got, _ := w.lease(t, int32(p), 5*time.Second, victim.name+" to own its partitions",
					func(l lease) bool { return strings.HasPrefix(l.Owner, victim.owner()+"/") && l.State == stateRunning })
				w.lease(t, int32(p), 5*time.Second, victim.name+" to commit",
					func(l lease) bool { return l.Owner == got.Owner && l.Offset > got.Offset })
			}
			time.Sleep(time.Duration(rng.IntN(int(e2eCommitEvery/time.Millisecond))) * time.Millisecond)
			killAt = time.Now()
			victim.signal(t, syscall.SIGKILL)
			for _, p := range victimSet {
				atKill[p] = mustLoad(t, leases, leaseKey(group, "src", int32(p)))
			}
			logf("slot %d: SIGKILL %s owning partitions %v at offsets %v", slot, victim.name, victimSet, e2eOffsets(atKill))
			// Its supervisor restarts it; the new one must wait out the
			// dead one's lease, and no longer.
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			heir := start(slot, "restart after the kill")
			for _, p := range victimSet {
				_, takenAt[p] = w.lease(t, int32(p), e2eTTL+e2eSkew+5*time.Second, heir.name+" to take over",
					func(l lease) bool { o := heir.owner(); return o != "" && strings.HasPrefix(l.Owner, o+"/") })
				logf("partition %d taken over by %s %s after the SIGKILL", p, heir.name, e2eMs(takenAt[p].Sub(killAt)))
			}
			continue
		}
		switch {
		case !up(slot):
			start(slot, "slot was down")
		case rng.IntN(2) == 0:
			old := slots[slot]
			start(slot, "rolling restart; "+old.name+" hands over and exits")
		default:
			logf("slot %d: SIGTERM %s", slot, slots[slot].name)
			slots[slot].signal(t, syscall.SIGTERM)
		}
	}
	for slot := range slots {
		if !up(slot) {
			start(slot, "slot was down at the end")
		}
	}
	time.Sleep(time.Second)
	stopProducing()
	total := produced()
	waitFor(t, "the sink to hold every produced record", 15*time.Second, func() bool { return sink.complete(total) })
	for slot := range slots {
		logf("slot %d: SIGTERM %s at the end", slot, slots[slot].name)
		slots[slot].signal(t, syscall.SIGTERM)
	}

	// How each process ended: SIGKILL for the victim; exit 0 for the rest,
	// rolled ones on their own.
	for _, p := range all {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not exit within 10s (sent %q)", p.name, p.sent)
		}
		st := p.cmd.ProcessState
		switch {
		case p == victim:
			if ws, ok := st.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Errorf("%s: %v; want killed by SIGKILL", p.name, st)
			}
		case st.ExitCode() != 0:
			t.Errorf("%s (sent %q): %v; want exit status 0", p.name, p.sent, st)
		}
	}

	// The SIGKILLed process's partitions were taken over within the lease
	// TTL and the skew allowance, and not before its lease ran out.
	if victim == nil {
		t.Fatal("no process was killed")
	}
	for _, p := range victimSet {
		// The heir polls every 20 ms and we poll every 5 ms, each read a
		// store round trip: 250 ms covers them.
		if took := takenAt[p].Sub(killAt); took > e2eTTL+e2eSkew+250*time.Millisecond {
			t.Errorf("partition %d: taken over %v after the SIGKILL; want within ttl + skew = %v", p, took, e2eTTL+e2eSkew)
		}
	}

	var gaps []time.Duration
	for _, proc := range all {
		for _, h := range e2eHandoffsIn(proc.log) {
			recs := sink.partition(int32(h[0]))
			if gap, ok := e2eGapBefore(recs, analyseSink(recs, total[h[0]]), h[1]); ok {
				gaps = append(gaps, gap)
			}
		}
	}
	txn := e2eSinkScheme(t) == "kafka+txn"
	for p := range procPartitions {
		recs := sink.partition(int32(p))
		rep := analyseSink(recs, total[p])
		logf("partition %d: produced %d, sink %d records, duplicates %d (rewinds to %v), out of order %d, missing %d",
			p, total[p], rep.Written, rep.Duplicates, rep.Rewinds, rep.Skips, rep.Missing)
		if rep.Missing != 0 || rep.Skips != 0 {
			t.Errorf("partition %d: %d records missing, %d out of order", p, rep.Missing, rep.Skips)
		}
		l, killed := atKill[p]
		switch {
		case txn && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates with the exactly-once sink (killed: %v)", p, rep.Duplicates, killed)
		case txn && killed:
			logf("partition %d: no duplicates after the SIGKILL (the exactly-once sink)", p)
		case !killed && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates, and its owner was never killed", p, rep.Duplicates)
		case killed && (len(rep.Rewinds) > 1 || len(rep.Rewinds) == 1 && rep.Rewinds[0] != l.Offset):
			t.Errorf("partition %d: rewinds to %v; want at most one, to the killed owner's last commit %d", p, rep.Rewinds, l.Offset)
		case killed:
			// The heir's first write: the last copy of the committed offset.
			i := rep.first[l.Offset]
			for j := i + 1; j < len(recs); j++ {
				if recs[j].N == l.Offset {
					i = j
				}
			}
			if end := time.UnixMilli(l.ExpiresAt).Add(e2eSkew); recs[i].At.Before(end) {
				t.Errorf("partition %d: the heir wrote at %v, before the dead owner's lease plus skew ended at %v", p, recs[i].At, end)
			}
			logf("partition %d: the heir wrote from offset %d %s after the SIGKILL; sink gap %s, %d duplicates",
				p, l.Offset, e2eMs(recs[i].At.Sub(killAt)), e2eMs(recs[i].At.Sub(recs[max(i-1, 0)].At)), rep.Duplicates)
		}
		w.wantReleased(t, int32(p), total[p])
	}
	logf("%d processes, up to %d at once; %d cooperative handoffs, gap p50 %s, max %s", len(all), maxUp, len(gaps), e2eMs(percentile(gaps, 50)), e2eMs(percentile(gaps, 100)))
}

func e2eOffsets(ls map[int]lease) map[int]int64 {
	o := map[int]int64{}
	for p, l := range ls {
		o[p] = l.Offset
	}
	return o
}

// A process stopped while it waits for the baton must not take the baton
// with it: afterwards the old owner still owns the partition, or it is
// released; it is never owned in the name of a process that has exited,
// which nobody could take before the lease ends.
func TestE2E_process_sigterm_while_waiting_leaves_no_lease(t *testing.T) {
	t.Parallel()
	w := newE2EWorld(t, 1, time.Minute)
	// The newest process takes all (-balance=false): b asks for a's partition.
	env := append(w.env(t), "BATON_BALANCE=false")
	w.producing(t, 1, e2eProduceEvery)
	a := e2eStartProc(t, w.bin, w.logs, "a", "0", env)
	w.lease(t, 0, 5*time.Second, "a to own partition 0",
		func(l lease) bool { o := a.owner(); return o != "" && strings.HasPrefix(l.Owner, o+"/") })
	b := e2eStartProc(t, w.bin, w.logs, "b", "0", env)
	w.lease(t, 0, 5*time.Second, "b to ask for the baton",
		func(l lease) bool { o := b.owner(); return o != "" && strings.HasPrefix(l.Successor, o+"/") })
	b.signal(t, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Fatal("b did not exit within 5s of SIGTERM")
	}
	gone := time.Now()
	// a sees an ask at its next commit: two intervals are plenty.
	time.Sleep(2*e2eCommitEvery + 200*time.Millisecond)
	l := mustLoad(t, w.leases, leaseKey(w.group, "src", 0))
	if strings.HasPrefix(l.Owner, b.owner()+"/") && l.State == stateRunning {
		t.Errorf("b exited (%v) while it waited for the baton, and %v later the lease is running in its name (a exited: %v): "+
			"nobody reads partition 0 until that lease expires, ttl + skew after the hand-over (32 s with the defaults); "+
			"a wait that ends without the baton must withdraw its ask", b.cmd.ProcessState, time.Since(gone).Round(time.Millisecond), a.exited())
	}
	t.Logf("after b's SIGTERM: lease owner %q, state %s, successor %q; a running: %v", l.Owner, l.State, l.Successor, !a.exited())
}

const (
	procPartitions = 4
	procSteps      = 10
)
