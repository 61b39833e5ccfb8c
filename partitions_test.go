// partitions_test.go checks events naming several partitions: what
// parseEvents reads and refuses, and one handler call owning a group of
// partitions through takeovers, a duplicate delivery and a regrouping.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"go.uber.org/goleak"
)

func TestConfig_partitions_payloads(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 15, 4, 59, 0, time.UTC)
	tick := time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC).UnixMilli()
	invs := func(topic string, tick int64, ps ...int32) []invocation {
		var out []invocation
		for _, p := range ps {
			out = append(out, invocation{Topic: topic, Partition: p, Tick: tick})
		}
		return out
	}
	tests := []struct {
		name     string
		payload  string
		topic    string // cfg.Topic
		want     []invocation
		wantList bool
		wantSlot *slot
		wantErr  []string // what the error must name; nil: no error
	}{
		{name: "a group", payload: `{"topic":"t","partitions":[0,1,2,3],"tick":"2026-01-02T15:04:00Z"}`,
			want: invs("t", tick, 0, 1, 2, 3), wantList: true},
		{name: "a group in any order", payload: `{"topic":"t","partitions":[5,2,9],"tick":"2026-01-02T15:04:00Z"}`,
			want: invs("t", tick, 5, 2, 9), wantList: true},
		{name: "a group of one", payload: `{"topic":"t","partitions":[7]}`,
			want: invs("t", now.UnixMilli(), 7), wantList: true},
		{name: "partition and partitions naming the same one", payload: `{"topic":"t","partition":7,"partitions":[7]}`,
			want: invs("t", now.UnixMilli(), 7), wantList: true},
		{name: "a group reads -topic and a rule's time", payload: `{"partitions":[0,1],"time":"2026-01-02T15:04:00Z"}`, topic: "src",
			want: invs("src", tick, 0, 1), wantList: true},
		{name: "null partitions: one partition", payload: `{"topic":"t","partition":2,"partitions":null}`,
			want: invs("t", now.UnixMilli(), 2)},
		{name: "one partition as before", payload: `{"topic":"t","partition":2,"tick":"2026-01-02T15:04:00Z"}`,
			want: invs("t", tick, 2)},

		{name: "empty list", payload: `{"topic":"t","partitions":[]}`, wantErr: []string{`"partitions"`, "empty"}},
		{name: "not a list", payload: `{"topic":"t","partitions":3}`, wantErr: []string{`"partitions"`, "list"}},
		{name: "a string in the list", payload: `{"topic":"t","partitions":[0,"1"]}`, wantErr: []string{`"partitions"`, `[0,"1"]`}},
		{name: "a fraction in the list", payload: `{"topic":"t","partitions":[0,1.5]}`, wantErr: []string{`"partitions"`}},
		{name: "negative", payload: `{"topic":"t","partitions":[0,-1]}`, wantErr: []string{`"partitions"`, "-1", "0 or more"}},
		{name: "listed twice", payload: `{"topic":"t","partitions":[0,1,0]}`, wantErr: []string{`"partitions"`, "partition 0", "twice"}},
		{name: "partition beside a group", payload: `{"topic":"t","partition":3,"partitions":[0,1,2,3]}`,
			wantErr: []string{`"partition" 3`, `"partitions" [0,1,2,3]`, "disagree"}},
		{name: "partition beside another one", payload: `{"topic":"t","partition":3,"partitions":[4]}`,
			wantErr: []string{`"partition" 3`, `"partitions" [4]`}},
		{name: "a group with a bad tick", payload: `{"topic":"t","partitions":[0,1],"tick":"soon"}`, wantErr: []string{`"tick"`, "soon"}},
		{name: "a group of a topic not allowed", payload: `{"topic":"other","partitions":[0,1]}`, wantErr: []string{`"topic"`, `"other"`}},
		{name: "a group without a topic", payload: `{"partitions":[0,1]}`, wantErr: []string{`"topic"`, "-topic"}},
		{name: "malformed JSON", payload: `{"topic":"t","partitions":[0,1]`, wantErr: []string{"JSON"}},

		{name: "a slot", payload: `{"topic":"t","slot":1,"slots":4,"sized":2,"tick":"2026-01-02T15:04:00Z"}`,
			want: invs("t", tick, 1), wantList: true, wantSlot: &slot{Slot: 1, Slots: 4, Sized: 2}},
		{name: "a slot without sized", payload: `{"topic":"t","slot":0,"slots":1}`,
			want: invs("t", now.UnixMilli(), 0), wantList: true, wantSlot: &slot{Slot: 0, Slots: 1}},
		{name: "a slot reads -topic and a rule's time", payload: `{"slot":2,"slots":3,"time":"2026-01-02T15:04:00Z"}`, topic: "src",
			want: invs("src", tick, 2), wantList: true, wantSlot: &slot{Slot: 2, Slots: 3}},
		{name: "null slot fields: one partition", payload: `{"topic":"t","partition":2,"slot":null,"slots":null,"sized":null}`,
			want: invs("t", now.UnixMilli(), 2)},
		{name: "slot past slots", payload: `{"topic":"t","slot":4,"slots":4}`, wantErr: []string{`"slot"`, "0..3", "got 4"}},
		{name: "negative slot", payload: `{"topic":"t","slot":-1,"slots":4}`, wantErr: []string{`"slot"`, "got -1"}},
		{name: "no slots", payload: `{"topic":"t","slot":0}`, wantErr: []string{`"slots"`, "missing"}},
		{name: "no slot", payload: `{"topic":"t","slots":4}`, wantErr: []string{`"slot"`, "missing"}},
		{name: "zero slots", payload: `{"topic":"t","slot":0,"slots":0}`, wantErr: []string{`"slots"`, "1 or more", "got 0"}},
		{name: "slots a string", payload: `{"topic":"t","slot":0,"slots":"4"}`, wantErr: []string{`"slots"`, "whole number", `"4"`}},
		{name: "slot a fraction", payload: `{"topic":"t","slot":0.5,"slots":4}`, wantErr: []string{`"slot"`, "whole number", "0.5"}},
		{name: "zero sized", payload: `{"topic":"t","slot":0,"slots":4,"sized":0}`, wantErr: []string{`"sized"`, "1 or more"}},
		{name: "sized alone", payload: `{"topic":"t","partition":0,"sized":2}`, wantErr: []string{`"sized" goes with "slot" and "slots"`}},
		{name: "slot beside partition", payload: `{"topic":"t","partition":1,"slot":1,"slots":4}`, wantErr: []string{`"slot"`, `"partition"`}},
		{name: "slot beside partitions", payload: `{"topic":"t","partitions":[1,5],"slot":1,"slots":4}`, wantErr: []string{`"slot"`, `"partitions"`}},
		{name: "a slot of a topic not allowed", payload: `{"topic":"other","slot":0,"slots":2}`, wantErr: []string{`"topic"`, `"other"`}},
		{name: "a slot with a bad tick", payload: `{"topic":"t","slot":0,"slots":2,"tick":"soon"}`, wantErr: []string{`"tick"`, "soon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config{Topic: tt.topic, Topics: []string{"t", "src"}, Partitions: []int32{99}, SinkTopic: "out", DLQ: "dlq"}
			got, list, sl, err := parseEvents([]byte(tt.payload), cfg, now)
			if tt.wantErr != nil {
				wantNamed(t, err, tt.wantErr...)
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) || list != tt.wantList || !reflect.DeepEqual(sl, tt.wantSlot) {
				t.Errorf("got %+v (a list: %v, slot %+v), %v; want %+v (%v, slot %+v)", got, list, sl, err, tt.want, tt.wantList, tt.wantSlot)
			}
			if !reflect.DeepEqual(cfg.Partitions, []int32{99}) {
				t.Errorf("parseEvents changed the config's -partitions to %v", cfg.Partitions)
			}
		})
	}
}

// countPrefix is how many records owners whose id starts with prefix wrote
// to partition p's sink.
func (r *recorder) countPrefix(p int32, prefix string) int {
	return len(slices.DeleteFunc(r.on(p), func(w write) bool { return !strings.HasPrefix(w.Owner, prefix) }))
}

// wrote says whether owners whose id starts with prefix wrote more than n
// records to each of partitions ps.
func (r *recorder) wrote(prefix string, n int, ps ...int32) bool {
	return !slices.ContainsFunc(ps, func(p int32) bool { return r.countPrefix(p, prefix) <= n })
}

// groupCall is one handler call as Lambda makes it: the request id in the
// context, a deadline life away; wait gives its answer.
func groupCall(ctx context.Context, h func(context.Context, json.RawMessage) (outcome, error), id, payload string, life time.Duration) (wait func() (outcome, error)) {
	return background(func() (outcome, error) {
		cctx, cancel := context.WithTimeout(lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: id}), life)
		defer cancel()
		return h(cctx, json.RawMessage(payload))
	})
}

// groupPayload is a scheduler's event for partitions at tick.
func groupPayload(tick time.Time, ps ...int32) string {
	b, _ := json.Marshal(ps)
	return fmt.Sprintf(`{"topic":"src","partitions":%s,"tick":%q}`, b, tick.UTC().Format(time.RFC3339Nano))
}

// wantEnds checks a group's answer: one outcome a partition, in the event's
// order, each ending as wanted and owned by id's invocation.
func wantEnds(t *testing.T, who string, out outcome, err error, id string, ps []int32, ends ...string) {
	t.Helper()
	if err != nil || len(out.Partitions) != len(ps) {
		t.Fatalf("%s: %+v, %v; want an outcome for each of %v", who, out, err, ps)
	}
	for i, o := range out.Partitions {
		if o.End != ends[i] || !strings.HasSuffix(o.Key, fmt.Sprintf("/src/%d", ps[i])) || !strings.HasPrefix(o.Owner, id+"-") ||
			!strings.HasSuffix(o.Owner, fmt.Sprintf("/%d", ps[i])) {
			t.Errorf("%s partition %d: %+v; want %s, owner %s-…/%d", who, ps[i], o, ends[i], id, ps[i])
		}
	}
}

// TestHandler_partitions_group: one handler call owns 4 partitions while
// records flow; the next tick's call takes all four over; a duplicate
// delivery of that tick exits before any Kafka connection; a call for two
// of them at a newer tick (a regrouping) takes those two, and a late group
// call between the two ticks runs only the other two. Every record reaches
// the sink once, in order per partition, and every call leaves nothing
// running when it returns.
func TestHandler_partitions_group(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 4)
		s, rec, cfg, ctx := r.s, r.rec, r.cfg, r.ctx
		ignore := leakIgnores()
		produced, stopProducing := flowing(t, ctx, cfg, 4, 0)
		all := []int32{0, 1, 2, 3}
		d, kafka := testDeps(t, s, rec)
		h := handler(cfg, d)
		base := time.Now().Add(-time.Minute).Truncate(time.Second)
		t1, t2, tLate, t3 := base, base.Add(10*time.Second), base.Add(15*time.Second), base.Add(20*time.Second)

		waitA := groupCall(ctx, h, "A", groupPayload(t1, all...), time.Minute)
		waitFor(t, "A to write to every partition", 5*time.Second, func() bool { return rec.wrote("A-", 100, all...) })
		bctx, stopB := context.WithCancel(ctx)
		defer stopB()
		waitB := groupCall(bctx, h, "B", groupPayload(t2, all...), time.Minute)
		a, err := waitA()
		wantEnds(t, "A", a, err, "A", all, endHanded, endHanded, endHanded, endHanded)
		waitFor(t, "B to write to every partition", 5*time.Second, func() bool { return rec.wrote("B-", 200, all...) })
		if n := kafka.n.Load(); n != 8 {
			t.Errorf("%d Kafka clients once B owns every partition, want 8 (one a partition of A and of B)", n)
		}
		wantStatusOwners(t, ctx, cfg, s, all, "B-")

		// A second delivery of B's tick: every partition is a
		// duplicate, judged before any Kafka connection, at once.
		dd, dk := testDeps(t, s, rec)
		start := time.Now()
		raw, err := lambdaHandler(handler(cfg, dd)).Invoke(lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: "B-again"}),
			[]byte(groupPayload(t2, all...)))
		took := time.Since(start)
		var dup map[string][]outcome
		if err != nil || json.Unmarshal(raw, &dup) != nil || len(dup) != 1 || len(dup["partitions"]) != 4 {
			t.Fatalf("duplicate of B's tick: %s, %v; want {\"partitions\":[4 outcomes]}", raw, err)
		}
		wantEnds(t, "B's duplicate", outcome{Partitions: dup["partitions"]}, nil, "B-again", all, endDuplicate, endDuplicate, endDuplicate, endDuplicate)
		if n := dk.n.Load(); n != 0 || took > time.Second {
			t.Errorf("duplicate of B's tick: %d Kafka clients, answered in %v; want none, at once", n, took)
		}

		// A regrouping: partitions 2 and 3 get a schedule of their own,
		// whose tick t3 comes first; then a late group call at tLate,
		// between B's tick and t3, may own only 0 and 1.
		cctx, stopC := context.WithCancel(ctx)
		defer stopC()
		waitC := groupCall(cctx, h, "C", groupPayload(t3, 2, 3), time.Minute)
		waitFor(t, "C to write to 2 and 3", 5*time.Second, func() bool { return rec.wrote("C-", 200, 2, 3) })
		dl, lk := testDeps(t, s, rec)
		lctx, stopLate := context.WithCancel(ctx)
		defer stopLate()
		waitLate := groupCall(lctx, handler(cfg, dl), "L", groupPayload(tLate, all...), time.Minute)
		bo, err := waitB()
		wantEnds(t, "B", bo, err, "B", all, endHanded, endHanded, endHanded, endHanded)
		waitFor(t, "L to write to 0 and 1", 5*time.Second, func() bool { return rec.wrote("L-", 200, 0, 1) })
		if n := lk.n.Load(); n != 2 {
			t.Errorf("the late group call made %d Kafka clients, want 2 (partitions 0 and 1 only)", n)
		}

		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopC()
		stopLate()
		co, err := waitC()
		wantEnds(t, "C", co, err, "C", []int32{2, 3}, endReleased, endReleased)
		lo, err := waitLate()
		wantEnds(t, "L", lo, err, "L", all, endReleased, endReleased, endStale, endStale)
		if rec.countPrefix(2, "L-")+rec.countPrefix(3, "L-") != 0 {
			t.Errorf("L wrote to partitions it may not own")
		}
		if err := goleak.Find(ignore...); err != nil {
			t.Fatalf("goroutines left after every call returned: %v", err)
		}

		// Each partition's owners follow on, each from where the one
		// before handed over; the last released at the end.
		chains := map[int32][]outcome{
			0: {a.Partitions[0], bo.Partitions[0], lo.Partitions[0]},
			1: {a.Partitions[1], bo.Partitions[1], lo.Partitions[1]},
			2: {a.Partitions[2], bo.Partitions[2], co.Partitions[0]},
			3: {a.Partitions[3], bo.Partitions[3], co.Partitions[1]},
		}
		for p, chain := range chains {
			for i := 1; i < len(chain); i++ {
				if chain[i].From != chain[i-1].To || chain[i].Epoch <= chain[i-1].Epoch {
					t.Errorf("partition %d: %s started at %d (epoch %d), %s handed over at %d (epoch %d)",
						p, chain[i].Owner, chain[i].From, chain[i].Epoch, chain[i-1].Owner, chain[i-1].To, chain[i-1].Epoch)
				}
			}
			if last := chain[len(chain)-1]; last.To != total[p] {
				t.Errorf("partition %d: the last owner released at %d, want %d", p, last.To, total[p])
			}
		}
		tl := rec.tally(total)
		wantTally(t, tl, 0, 8)
		t.Logf("%s: %d records over 4 partitions, 8 handoffs, largest gap %v", b.name, tl.Produced, tl.MaxGap)
	})
}

// A partition of a group that fails (here: past the topic's end) fails the
// call, naming it, so Lambda retries the event; the others run all the same.
func TestHandler_partitions_one_fails(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 2, "src")
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	s := newMemStore()
	d, _ := testDeps(t, s, nil)
	out, err := groupCall(ctxT(t), handler(cfg, d), "R", groupPayload(time.Now(), 0, 5), time.Second)()
	if err == nil || !strings.Contains(err.Error(), "partition 5: ") || !strings.Contains(err.Error(), "0..1") || strings.Contains(err.Error(), "partition 0") {
		t.Fatalf("error %v; want one naming partition 5 alone", err)
	}
	if len(out.Partitions) != 2 || out.Partitions[0].End != endReleased || out.Partitions[1].End != endError {
		t.Fatalf("outcomes %+v; want partition 0 released at the deadline and 5 an error", out.Partitions)
	}
	if _, err := s.load(ctxT(t), leaseKey(cfg.Group, "src", 5)); err == nil {
		t.Errorf("a lease was written for partition 5, past the topic's end")
	}
}

// wantStatusOwners checks that ctl status shows partitions ps owned by one
// invocation, whose owner ids start with prefix: INVOCATION/PARTITION.
func wantStatusOwners(t *testing.T, ctx context.Context, cfg *config, s store, ps []int32, prefix string) {
	t.Helper()
	d, _ := testDeps(t, s, nil)
	out := runCtlT(t, ctx, cfg, d, "status")
	invocation := ""
	table, _, _ := strings.Cut(out, "\n\n") // the partitions; the owners' counts follow
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		inv, p, _ := strings.Cut(f[1], "/")
		if invocation == "" {
			invocation = inv
		}
		if !strings.HasPrefix(inv, prefix) || inv != invocation || p != f[0] {
			t.Errorf("ctl status: partition %s owned by %q; want %s…/%s, one invocation for all:\n%s", f[0], f[1], prefix, f[0], out)
		}
	}
	if n := strings.Count(out, invocation+"/"); n != len(ps) {
		t.Errorf("ctl status shows %d partitions owned by %s, want %d:\n%s", n, invocation, len(ps), out)
	}
}

// TestHandler_partitions_transient_error_before_owning_retries: in a group
// call, partition 1's first lease reads fail (a throttled store, a Redis
// blip). Partition 1 is tried again within the call, as process mode would,
// instead of staying unread until the call ends (13 minutes under Lambda);
// every record reaches the sink once, and the call leaves nothing running.
func TestHandler_partitions_transient_error_before_owning_retries(t *testing.T) {
	eachBackend(t, false, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 2)
		ignore := leakIgnores()
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 2, 0)
		d, _ := testDeps(t, failingLoads(r.s, leaseKey(r.cfg.Group, "src", 1), 2), r.rec)
		d.pause = 10 * time.Millisecond
		ctx, stop := context.WithCancel(r.ctx)
		defer stop()
		wait := groupCall(ctx, handler(r.cfg, d), "G", groupPayload(time.Now(), 0, 1), time.Minute)
		waitFor(t, "G to write to both partitions", 10*time.Second, func() bool { return r.rec.wrote("G-", 100, 0, 1) })
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stop()
		out, err := wait()
		if err != nil || len(out.Partitions) != 2 {
			t.Fatalf("G: %+v, %v; want an outcome for each of 2 partitions", out, err)
		}
		for p, want := range []string{"/0", "/1#2"} { // the third try of partition 1
			if o := out.Partitions[p]; o.End != endReleased || !strings.HasPrefix(o.Owner, "G-") || !strings.HasSuffix(o.Owner, want) || o.To != total[p] {
				t.Errorf("partition %d: %+v; want released at %d by G-…%s", p, o, total[p], want)
			}
		}
		wantTally(t, r.rec.tally(total), 0, 0)
		if err := goleak.Find(ignore...); err != nil {
			t.Fatalf("goroutines left after the call returned: %v", err)
		}
	})
}

// TestHandler_transient_errors_end_with_the_deadline: a partition whose
// lease reads keep failing is tried again only while a new try would have
// time to read before the invocation's deadline; then the call answers with
// the error, so Lambda retries the event.
func TestHandler_transient_errors_end_with_the_deadline(t *testing.T) {
	t.Parallel()
	r := newRig(t, newMemStore(), 1)
	var loads atomic.Int32
	s := &hookStore{store: r.s, before: func(_ context.Context, call storeCall) error {
		loads.Add(1)
		return errLost
	}}
	d, _ := testDeps(t, s, nil)
	d.pause = 10 * time.Millisecond
	life := time.Second
	start := time.Now()
	out, err := groupCall(r.ctx, handler(r.cfg, d), "G", groupPayload(start, 0), life)()
	took := time.Since(start)
	if !errors.Is(err, errLost) || out.Partitions[0].End != endError {
		t.Fatalf("%+v, %v; want the store's error", out, err)
	}
	// Pauses of 10, 20, 40, 80 and 160 ms; one of 320 would leave the
	// next try less than two margin floors.
	if n := loads.Load(); n != 6 || took > life-2*r.cfg.MarginFloor {
		t.Errorf("%d tries, answered after %v; want 6, and no try with less than %v left", n, took, 2*r.cfg.MarginFloor)
	}
}

// slotPayload is a generated schedule's event: slot of slots, sized for
// sized partitions an invocation, at tick.
func slotPayload(tick time.Time, slot, slots, sized int) string {
	return fmt.Sprintf(`{"topic":"src","slot":%d,"slots":%d,"sized":%d,"tick":%q}`, slot, slots, sized, tick.UTC().Format(time.RFC3339Nano))
}

// slotDeps are deps whose log and EMF lines the test reads.
func slotDeps(t *testing.T, s store, rec *recorder) (*deps, *countingKafka, *logBuffer, *logBuffer) {
	d, k := testDeps(t, s, rec)
	logs, emf := captureLog(t, d), &logBuffer{}
	d.emf = emf
	return d, k, logs, emf
}

// wantUnscheduled checks the EMF lines of the slot calls made with one
// deps: one UnscheduledPartitions line a call, each saying over.
func wantUnscheduled(t *testing.T, who string, emf *logBuffer, calls, over int) {
	t.Helper()
	emf.mu.Lock()
	lines := parseEMF(t, emf.b.Bytes())
	emf.mu.Unlock()
	var got []int
	for _, l := range lines {
		if _, ok := l.values["UnscheduledPartitions"]; ok {
			got = append(got, l.num("UnscheduledPartitions"))
			if l.values["Topic"] != "src" || l.values["Group"] == nil {
				t.Errorf("%s: UnscheduledPartitions line %v; want dimensions Group and Topic src", who, l.values)
			}
		}
	}
	if len(got) != calls || slices.ContainsFunc(got, func(n int) bool { return n != over }) {
		t.Errorf("%s: UnscheduledPartitions %v; want %d a call, %d calls", who, got, over, calls)
	}
}

// TestHandler_partition_added_is_read: a stack deployed for 4 partitions,
// 2 an invocation, schedules slots 0 and 1 of 2. The topic grows to 6
// while records flow. The next tick's slot calls list the topic as they
// start: slot 0 owns 0, 2 and the new 4, slot 1 owns 1, 3 and the new 5,
// each taking its old partitions over by handoff; each warns once that it
// reads more than it was sized for, naming its partitions and the
// PartitionCount to redeploy with, and says so in UnscheduledPartitions. A
// duplicate delivery exits per partition. Old-style events still work: a
// "partition" event and a "partitions" event take the new partitions over.
// Every record reaches the sink once, in order.
func TestHandler_partition_added_is_read(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 4)
		ctx := r.ctx
		producedOld, stopOld := flowing(t, ctx, r.cfg, 4, 0)
		base := time.Now().Add(-time.Minute).Truncate(time.Second)
		t1, t2, t3 := base, base.Add(10*time.Second), base.Add(20*time.Second)

		dA, _, logsA, emfA := slotDeps(t, r.s, r.rec)
		hA := handler(r.cfg, dA)
		waitA0 := groupCall(ctx, hA, "A", slotPayload(t1, 0, 2, 2), time.Minute)
		waitA1 := groupCall(ctx, hA, "A", slotPayload(t1, 1, 2, 2), time.Minute)
		waitFor(t, "A to write to every partition", 5*time.Second, func() bool { return r.rec.wrote("A-", 100, 0, 1, 2, 3) })

		growTopic(t, r.cfg.Brokers, "src", 6)
		producedNew, stopNew := flowing(t, ctx, r.cfg, 6, 0)

		dB, _, logsB, emfB := slotDeps(t, r.s, r.rec)
		hB := handler(r.cfg, dB)
		bctx, stopB := context.WithCancel(ctx)
		defer stopB()
		waitB0 := groupCall(bctx, hB, "B", slotPayload(t2, 0, 2, 2), time.Minute)
		waitB1 := groupCall(bctx, hB, "B", slotPayload(t2, 1, 2, 2), time.Minute)
		a0, err := waitA0()
		wantEnds(t, "A slot 0", a0, err, "A", []int32{0, 2}, endHanded, endHanded)
		a1, err := waitA1()
		wantEnds(t, "A slot 1", a1, err, "A", []int32{1, 3}, endHanded, endHanded)
		waitFor(t, "B to write to every partition, the new ones too", 5*time.Second, func() bool { return r.rec.wrote("B-", 100, 0, 1, 2, 3, 4, 5) })

		if n := logsA.count("level=WARN"); n != 0 {
			t.Errorf("A warned %d times; want none: each slot held the 2 it was sized for", n)
		}
		wantUnscheduled(t, "A", emfA, 2, 0)
		for _, want := range []string{`partitions="[0 2 4]"`, `partitions="[1 3 5]"`} {
			if n := logsB.count("level=WARN", "sized for", want, `over=[`, `redeploy="--param PartitionCount=6"`); n != 1 {
				t.Errorf("B: %d WARN lines naming %s and PartitionCount=6, want 1:\n%s", n, want, strings.Join(logsB.lines("level=WARN"), ""))
			}
		}
		if n := logsB.count("level=WARN"); n != 2 {
			t.Errorf("B: %d WARN lines, want 2 (one a call):\n%s", n, strings.Join(logsB.lines("level=WARN"), ""))
		}
		wantUnscheduled(t, "B", emfB, 2, 1)

		// A second delivery of B's slot 0: each of its partitions is a
		// duplicate; listing the topic is its one Kafka connection.
		dd, dk := testDeps(t, r.s, r.rec)
		dup, err := groupCall(ctx, handler(r.cfg, dd), "B-again", slotPayload(t2, 0, 2, 2), time.Minute)()
		wantEnds(t, "B slot 0's duplicate", dup, err, "B-again", []int32{0, 2, 4}, endDuplicate, endDuplicate, endDuplicate)
		if n := dk.n.Load(); n != 1 {
			t.Errorf("duplicate of B's slot 0: %d Kafka clients, want 1 (the listing)", n)
		}

		// Old-style events, as a stack deployed before slots sends them:
		// one partition, and a group, each taking a new partition over.
		dC, _ := testDeps(t, r.s, r.rec)
		cctx, stopC := context.WithCancel(ctx)
		defer stopC()
		waitC := groupCall(cctx, handler(r.cfg, dC), "C", fmt.Sprintf(`{"topic":"src","partition":4,"tick":%q}`, t3.UTC().Format(time.RFC3339Nano)), time.Minute)
		waitG := groupCall(cctx, handler(r.cfg, dC), "G", groupPayload(t3, 5), time.Minute)
		waitFor(t, "C and G to write to 4 and 5", 5*time.Second, func() bool { return r.rec.wrote("C-", 100, 4) && r.rec.wrote("G-", 100, 5) })

		total := r.drainGrown(t, producedOld, stopOld, producedNew, stopNew)
		stopB()
		stopC()
		b0, err := waitB0()
		wantEnds(t, "B slot 0", b0, err, "B", []int32{0, 2, 4}, endReleased, endReleased, endHanded)
		b1, err := waitB1()
		wantEnds(t, "B slot 1", b1, err, "B", []int32{1, 3, 5}, endReleased, endReleased, endHanded)
		if c, err := waitC(); err != nil || c.End != endReleased || c.Partitions != nil || !strings.HasSuffix(c.Key, "/src/4") || c.To != total[4] {
			t.Errorf("C: %+v, %v; want partition 4 alone, released at %d", c, err, total[4])
		}
		g, err := waitG()
		wantEnds(t, "G", g, err, "G", []int32{5}, endReleased)
		// A→B on 0..3, B→C on 4, B→G on 5.
		wantTally(t, r.rec.tally(total), 0, 6)
	})
}
