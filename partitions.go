// partitions.go holds the Lambda events that name several partitions: a
// list, {"topic":"t","partitions":[0,1,2,3],"tick":"..."}, or a slot of the
// topic, {"topic":"t","slot":1,"slots":4,"sized":2,"tick":"..."}, which is
// every partition p of the topic with p mod 4 = 1, listed from the brokers
// when the invocation starts, so a partition added to the topic is read by
// the next invocation without a redeploy. One invocation owns each of them
// with its own lease, handoff and deadline-timed commit, running
// runInvocation for each beside the others as process mode does, so a
// duplicate or stale tick is judged per partition.

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// parseEvents checks a payload and makes the invocations it asks for: one
// for "partition" (parseEvent), one a partition for "partitions". list
// reports whether the event named "partitions" or a slot: the answer then
// lists an outcome a partition. For a slot, sl is set and invs holds one
// invocation, the topic and tick of all: slotInvocations lists the
// partitions. Topic and tick are read by parseEvent for all.
func parseEvents(payload []byte, cfg *config, now time.Time) (invs []invocation, list bool, sl *slot, err error) {
	var e struct {
		Partition  *int32          `json:"partition"`
		Partitions json.RawMessage `json:"partitions"`
		Slot       json.RawMessage `json:"slot"`
		Slots      json.RawMessage `json:"slots"`
		Sized      json.RawMessage `json:"sized"`
	}
	if json.Unmarshal(payload, &e) != nil {
		// Not an object, or a bad "partition": parseEvent judges and
		// names what is wrong.
		inv, err := parseEvent(payload, cfg, now)
		return []invocation{inv}, false, nil, err
	}
	hasPartitions := len(e.Partitions) > 0 && string(e.Partitions) != "null"
	if sl, err = parseSlot(e.Slot, e.Slots, e.Sized); err != nil {
		return nil, true, nil, err
	}
	if sl != nil {
		if e.Partition != nil || hasPartitions {
			return nil, true, nil, errors.New(`event: "slot" and "slots" name the partitions themselves: give them without "partition" or "partitions"`)
		}
		// The first partition of the slot stands in for a missing
		// "partition" while parseEvent reads the topic and tick.
		one := *cfg
		one.Partitions = []int32{sl.Slot}
		inv, err := parseEvent(payload, &one, now)
		if err != nil {
			return nil, true, nil, err
		}
		return []invocation{inv}, true, sl, nil
	}
	if !hasPartitions {
		inv, err := parseEvent(payload, cfg, now)
		return []invocation{inv}, false, nil, err
	}
	ps, err := parsePartitionList(e.Partitions)
	if err != nil {
		return nil, true, nil, err
	}
	if e.Partition != nil && (len(ps) != 1 || ps[0] != *e.Partition) {
		return nil, true, nil, fmt.Errorf(`event: "partition" %d and "partitions" %s disagree: give "partitions" alone for several, or "partition" alone for one`,
			*e.Partition, e.Partitions)
	}
	// parseEvent reads the rest (topic, tick) as for one partition: the
	// first listed one stands in for a missing "partition".
	one := *cfg
	one.Partitions = ps[:1]
	inv, err := parseEvent(payload, &one, now)
	if err != nil {
		return nil, true, nil, err
	}
	for _, p := range ps {
		inv.Partition = p
		invs = append(invs, inv)
	}
	return invs, true, nil, nil
}

// A slot is one schedule's share of a topic: the partitions p with
// p mod Slots = Slot, whatever their count when the invocation starts.
// Sized is how many partitions an invocation was sized for (the template's
// PartitionsPerInvocation; 0: not said): owning more is warned of.
type slot struct {
	Slot, Slots, Sized int32
}

// parseSlot reads "slot", "slots" and "sized"; nil when none is given.
func parseSlot(rawSlot, rawSlots, rawSized json.RawMessage) (*slot, error) {
	given := func(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }
	if !given(rawSlot) && !given(rawSlots) && !given(rawSized) {
		return nil, nil
	}
	if !given(rawSlot) && !given(rawSlots) {
		return nil, errors.New(`event: "sized" goes with "slot" and "slots", like {"topic":"t","slot":0,"slots":4,"sized":2,"tick":"..."}`)
	}
	num := func(name string, raw json.RawMessage) (int32, error) {
		var n int32
		if !given(raw) {
			return 0, fmt.Errorf(`event: %q is missing: a slot event gives "slot" and "slots", like {"topic":"t","slot":0,"slots":4,"tick":"..."}`, name)
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			return 0, fmt.Errorf(`event: %q: want a whole number, got %s`, name, eventHead(raw))
		}
		return n, nil
	}
	var s slot
	var err error
	if s.Slots, err = num("slots", rawSlots); err != nil {
		return nil, err
	}
	if s.Slots < 1 {
		return nil, fmt.Errorf(`event: "slots" must be 1 or more, got %d`, s.Slots)
	}
	if s.Slot, err = num("slot", rawSlot); err != nil {
		return nil, err
	}
	if s.Slot < 0 || s.Slot >= s.Slots {
		return nil, fmt.Errorf(`event: "slot" must be 0 to "slots"-1 (0..%d), got %d`, s.Slots-1, s.Slot)
	}
	if given(rawSized) {
		if s.Sized, err = num("sized", rawSized); err != nil {
			return nil, err
		}
		if s.Sized < 1 {
			return nil, fmt.Errorf(`event: "sized" must be 1 or more, got %d`, s.Sized)
		}
	}
	return &s, nil
}

// slotInvocations lists the topic's partitions and makes one invocation,
// like inv, for each of the slot's. A listing that fails on an error that
// may heal is tried again with ownPartition's pauses while the invocation
// has time. When the slot holds more partitions than it was sized for, it
// logs one WARN naming them and the PartitionCount to redeploy with; the
// metric UnscheduledPartitions says how many over (0 when none, so an
// alarm sees the line).
func slotInvocations(ctx context.Context, cfg *config, d *deps, inv invocation, sl slot) ([]invocation, error) {
	all, err := listPartitionsRetrying(ctx, cfg, d, inv.Topic)
	if err != nil {
		return nil, err
	}
	var ps []int32
	for _, p := range all {
		if p%sl.Slots == sl.Slot {
			ps = append(ps, p)
		}
	}
	invs := make([]invocation, 0, len(ps))
	for _, p := range ps {
		inv.Partition = p
		invs = append(invs, inv)
	}
	if len(ps) == 0 {
		d.log.Info("slot holds no partition: the topic has fewer partitions than slots", "topic", inv.Topic,
			"slot", sl.Slot, "slots", sl.Slots, "topic_partitions", len(all))
	}
	if sl.Sized == 0 {
		return invs, nil
	}
	over := max(len(ps)-int(sl.Sized), 0)
	if over > 0 {
		d.log.Warn("this invocation reads more partitions than the stack was sized for: the topic grew; redeploy with the topic's partition count to spread them over more schedules",
			"topic", inv.Topic, "slot", sl.Slot, "slots", sl.Slots, "partitions", ps, "sized", sl.Sized,
			"over", ps[sl.Sized:], "redeploy", fmt.Sprintf("--param PartitionCount=%d", len(all)))
	}
	if d.emf != nil {
		writeEMF(d.emf, d.now(), map[string]string{"Group": cfg.Group, "Topic": inv.Topic},
			map[string]any{"UnscheduledPartitions": over})
	}
	return invs, nil
}

// listPartitionsRetrying is listPartitions, tried again after an error that
// may heal (as ownPartition retries a run that failed before owning) while
// ctx leaves time: within the call for a Lambda slot (slotInvocations);
// until the brokers answer or a signal comes at a process's start
// (startPartitions), which has no deadline.
func listPartitionsRetrying(ctx context.Context, cfg *config, d *deps, topic string) ([]int32, error) {
	pause := cmp.Or(d.pause, time.Second)
	for failed := 1; ; failed++ {
		ps, err := listPartitions(ctx, cfg, d, topic)
		if err == nil || lasting(err, failed) || ctx.Err() != nil || !timeLeft(ctx, cfg, d, pause) {
			return ps, err
		}
		d.log.Warn("listing the topic's partitions failed; trying again", "topic", topic, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// parsePartitionList reads "partitions": a non-empty list of distinct
// partition numbers, each 0 or more.
func parsePartitionList(raw json.RawMessage) ([]int32, error) {
	var ps []int32
	if err := json.Unmarshal(raw, &ps); err != nil {
		return nil, fmt.Errorf(`event: "partitions": want a list of partition numbers like [0,1,2,3], got %s`, eventHead(raw))
	}
	if len(ps) == 0 {
		return nil, errors.New(`event: "partitions" is empty: want at least one partition number, like [0,1,2,3]`)
	}
	for i, p := range ps {
		if p < 0 {
			return nil, fmt.Errorf(`event: "partitions": each must be 0 or more, got %d`, p)
		}
		if slices.Contains(ps[:i], p) {
			return nil, fmt.Errorf(`event: "partitions": partition %d is listed twice in %s`, p, eventHead(raw))
		}
	}
	return ps, nil
}

// lambdaOwner is the owner id of one invocation: unique per invocation,
// and led by the request id so an operator finds its logs. A retry keeps
// its request id, so the id alone would let a retry pass for the owner it
// replaces.
func lambdaOwner(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		return newOwnerID(lc.AwsRequestID)
	}
	return newOwnerID("lambda")
}

// runInvocations runs each invocation of one event beside the others, each
// with its own lease, handoff and deadline-timed commit (runInvocation,
// which reads the lease before any Kafka connection, so a partition this
// tick may not own is skipped without one), and waits for every one. Each
// runs again while the invocation has time, as in process mode
// (ownPartition), when its record was lost or it failed before owning on
// an error that may heal: its neighbours' long run does not leave it
// unread until the next invocation. With
// list, each owner is owner/partition: ctl status shows one invocation's
// partitions under one prefix. The error names each partition that failed.
//
// Each partition has its own Kafka client, as in process mode: it connects
// only once its tick check passed; a transactional sink's producer has one
// transactional id, and each partition needs its own to be fenced alone;
// and a run's flush, abort and fetches act on its whole client, so a
// fenced partition sharing one would drop its neighbours' unacknowledged
// records.
func runInvocations(ctx context.Context, cfg *config, d *deps, invs []invocation, owner string, list bool) ([]outcome, error) {
	outs, errs := make([]outcome, len(invs)), make([]error, len(invs))
	var wg sync.WaitGroup
	for i := range invs {
		inv := &invs[i]
		inv.Owner = owner
		if list {
			inv.Owner = owner + "/" + strconv.Itoa(int(inv.Partition))
		}
		wg.Go(func() {
			outs[i], errs[i] = ownPartition(ctx, cfg, d, *inv, false)
			if errs[i] != nil && list {
				errs[i] = fmt.Errorf("partition %d: %w", inv.Partition, errs[i])
			}
		})
	}
	wg.Wait()
	return outs, errors.Join(errs...)
}

// MarshalJSON is the handler's answer: an outcome as it is, or for an event
// naming "partitions", {"partitions":[outcome, ...]} in the event's order.
func (o outcome) MarshalJSON() ([]byte, error) {
	type plain outcome // without this method
	if o.Partitions != nil {
		return json.Marshal(struct {
			Partitions []outcome `json:"partitions"`
		}{o.Partitions})
	}
	return json.Marshal(plain(o))
}

// eventShape is what a bad event's log line says an event looks like.
var eventShape = strings.Join([]string{
	`{"topic":"t","partition":0,"tick":"<aws.scheduler.scheduled-time>"}`,
	`{"topic":"t","partitions":[0,1,2,3],"tick":"<aws.scheduler.scheduled-time>"}`,
	`{"topic":"t","slot":0,"slots":4,"tick":"<aws.scheduler.scheduled-time>"}`,
}, " or ")
