//go:build e2e

// e2e_lambda_group_test.go runs the real binary under aws-lambda-rie with events
// naming "partitions": 8 partitions in 2 groups of 4, each group invoked on
// a schedule whose invocations overlap, as a template with
// PartitionsPerInvocation 4 schedules them; one group's tick is delivered
// twice.

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// A 5 s function timeout and a tick every 3 s: each invocation overlaps
// the next by 2 s, a second more than TestE2E_lambda_rotations_under_rie
// gives, since twice the partitions run on the same two cores and an
// owner stops three times its slowest commit before its deadline. Records
// come every 4 ms a partition: 2,000 a second in all.
const (
	rieGroupPartitions   = 8
	rieGroupSize         = 4
	rieGroupTimeout      = 5 * time.Second
	rieGroupEvery        = 3 * time.Second
	rieGroupTicks        = 9
	rieGroupDupTick      = 3 // group 1's tick is delivered again while its first delivery runs
	rieGroupProduceEvery = 4 * time.Millisecond
)

// groupOutcomes is a group call's answer: one outcome a partition.
func (c rieCall) groupOutcomes() []outcome {
	var ans struct {
		Partitions []outcome `json:"partitions"`
	}
	if json.Unmarshal([]byte(c.Body), &ans) != nil {
		return nil
	}
	return ans.Partitions
}

// startGroup invokes a picked emulator with an event naming ps at tick, in
// the background.
func (s *rieScheduler) startGroup(e *rieEmulator, ps []int32, tick time.Time) *riePending {
	list, _ := json.Marshal(ps)
	return s.send(e, ps[0], tick, fmt.Sprintf(`{"topic":"src","partitions":%s,"tick":%q}`, list, tick.UTC().Format(time.RFC3339)), nil)
}

func TestE2E_lambda_partition_groups_under_rie(t *testing.T) {
	t.Parallel()
	needRIE(t)
	w := newE2EWorld(t, rieGroupPartitions, 2*time.Minute)
	conns, sink := w.conns, w.sink
	groups := [][]int32{{0, 1, 2, 3}, {4, 5, 6, 7}}
	// Two containers a group, so a tick's invocation never finds the
	// group's previous one still running in its container; one spare for
	// the duplicate delivery.
	emus, s := newRIEFleet(t, w, 2*len(groups)+1, rieGroupTimeout)
	produced, stopProducing := w.producing(t, rieGroupPartitions, rieGroupProduceEvery)
	t.Logf("%d emulators (timeout %v), %d partitions in groups of %d, a tick every %v for %d ticks; lease ttl %v, skew %v, commit every %v; store %s",
		len(emus), rieGroupTimeout, rieGroupPartitions, rieGroupSize, rieGroupEvery, rieGroupTicks, e2eTTL, e2eSkew, e2eCommitEvery, storeName)

	var dup rieCall
	base := time.Now().Truncate(time.Second).Add(2 * time.Second)
	var lastTick time.Time
	for n := range rieGroupTicks {
		tick := base.Add(time.Duration(n) * rieGroupEvery)
		lastTick = tick
		time.Sleep(time.Until(tick))
		for _, g := range groups {
			s.startGroup(s.pick(), g, tick)
		}
		if n == rieGroupDupTick {
			// Once the first delivery has claimed the tick on each of
			// group 1's partitions, the same event reaches another warm
			// container.
			tickMs := tick.UnixMilli()
			for _, p := range groups[1] {
				w.lease(t, p, 2*time.Second, fmt.Sprintf("the first delivery to claim its tick on partition %d", p),
					func(l lease) bool { return l.Tick == tickMs || l.SuccessorTick == tickMs })
			}
			dup = s.startGroup(s.pick(), groups[1], tick).wait()
		}
	}
	total := s.finish(w, lastTick, produced, stopProducing)

	// Every call answered in time with an outcome a partition; its runtime
	// kept no Kafka connection.
	perPartition := map[int32][]outcome{}
	ticks := map[string]time.Time{} // owner -> its call's tick
	var slack []time.Duration
	for _, p := range s.issued {
		c := p.wait()
		outs := c.groupOutcomes()
		switch {
		case c.Err != nil:
			t.Errorf("%s %s: %v", c.Emulator, c.Payload, c.Err)
			continue
		case c.timedOut():
			t.Errorf("%s %s: the emulator killed the runtime at the deadline; it had logged: %s", c.Emulator, c.Payload, p.emu.story(c))
			continue
		case c.Status != http.StatusOK || len(outs) != rieGroupSize:
			t.Errorf("%s %s: status %d, body %s; want an outcome for each of %d partitions", c.Emulator, c.Payload, c.Status, c.Body, rieGroupSize)
			continue
		case c.End.Sub(c.Start) >= rieGroupTimeout:
			t.Errorf("%s %s: answered after %v, past the %v timeout", c.Emulator, c.Payload, c.End.Sub(c.Start), rieGroupTimeout)
		}
		slack = append(slack, c.Start.Add(rieGroupTimeout).Sub(c.End))
		if c.LeftOpen != 0 {
			t.Errorf("%s %s: its runtime kept %d Kafka connections open after answering", c.Emulator, c.Payload, c.LeftOpen)
		}
		if c.ID == dup.ID {
			continue
		}
		for i, o := range outs {
			if !strings.HasSuffix(o.Key, fmt.Sprintf("/src/%d", c.Partition+int32(i))) || o.Records == 0 || o.End != endHanded && o.End != endReleased {
				t.Errorf("%s %s partition %d: %+v; want records read, then handed over or released", c.Emulator, c.Payload, c.Partition+int32(i), o)
			}
			perPartition[c.Partition+int32(i)] = append(perPartition[c.Partition+int32(i)], o)
			ticks[o.Owner] = c.Tick
		}
	}

	// The duplicate delivery: every partition judged a duplicate, before any
	// Kafka connection of its runtime.
	dupOuts := dup.groupOutcomes()
	for i, o := range dupOuts {
		if o.End != endDuplicate {
			t.Errorf("duplicate of group 1's tick %d, partition %d: %+v; want %q", rieGroupDupTick, groups[1][i], o, endDuplicate)
		}
	}
	n := conns.from(dup.PID, dup.Start, dup.End)
	if len(dupOuts) != rieGroupSize || n != 0 || dup.PID == 0 {
		t.Errorf("duplicate on %s: %s; its runtime (pid %d) opened %d Kafka connections", dup.Emulator, dup.Body, dup.PID, n)
	}
	t.Logf("duplicate of group 1's tick %d on %s: %d partitions %q in %v, Kafka connections from its runtime: %d",
		rieGroupDupTick, dup.Emulator, len(dupOuts), endDuplicate, dup.End.Sub(dup.Start).Round(time.Millisecond), n)

	// Per partition: the baton passes with the offset at every tick,
	// nothing is lost, duplicated or reordered at the sink.
	var gaps []time.Duration
	rotations, lost, dups := 0, int64(0), 0
	for p := range int32(rieGroupPartitions) {
		seq := perPartition[p]
		slices.SortFunc(seq, func(a, b outcome) int { return ticks[a.Owner].Compare(ticks[b.Owner]) })
		recs := sink.partition(p)
		rep := analyseSink(recs, total[p])
		handed := 0
		for i, o := range seq {
			if i+1 < len(seq) && seq[i+1].From != o.To {
				t.Errorf("partition %d: %s ended (%s) at %d, the next (%s) started at %d", p, o.Owner, o.End, o.To, seq[i+1].Owner, seq[i+1].From)
			}
			if o.End != endHanded {
				continue
			}
			handed++
			if gap, ok := e2eGapBefore(recs, rep, o.To); ok {
				gaps = append(gaps, gap)
			}
		}
		rotations += handed
		// A run that released at its deadline before the next asked (a
		// slow machine) still passes the offset on; most must hand over.
		if handed < rieGroupTicks/2 || len(seq) != rieGroupTicks {
			t.Errorf("partition %d: %d runs, %d handed over; want %d runs and at least %d handoffs", p, len(seq), handed, rieGroupTicks, rieGroupTicks/2)
		}
		if last := seq[len(seq)-1]; last.End != endReleased || last.To != total[p] {
			t.Errorf("partition %d: the last run %+v; want released at offset %d", p, last, total[p])
		}
		w.wantReleased(t, p, total[p])
		if rep.Missing != 0 || rep.Skips != 0 || rep.Duplicates != 0 {
			t.Errorf("partition %d: %d records missing, %d out of order, %d duplicates", p, rep.Missing, rep.Skips, rep.Duplicates)
		}
		lost, dups = lost+rep.Missing, dups+rep.Duplicates
		t.Logf("partition %d: produced %d, sink %d, %d rotations, duplicates %d, out of order %d, missing %d",
			p, total[p], rep.Written, handed, rep.Duplicates, rep.Skips, rep.Missing)
	}
	t.Logf("%d rotations over %d partitions: handoff gap p50 %s, max %s (sink record timestamps); lost %d, duplicates %d",
		rotations, rieGroupPartitions, e2eMs(percentile(gaps, 50)), e2eMs(percentile(gaps, 100)), lost, dups)
	t.Logf("answers before the %v deadline: least %s, p50 %s ahead", rieGroupTimeout, e2eMs(percentile(slack, 0)), e2eMs(percentile(slack, 50)))
}
