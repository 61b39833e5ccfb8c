// partitions.go holds the Lambda event that names several partitions,
// {"topic":"t","partitions":[0,1,2,3],"tick":"..."}: one invocation owns
// each listed partition with its own lease, handoff and deadline-timed
// commit, running runInvocation for each beside the others as process mode
// does, so a duplicate or stale tick is judged per partition.

package main

import (
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
// reports whether the event named "partitions": the answer then lists an
// outcome a partition. Topic and tick are read by parseEvent for both.
func parseEvents(payload []byte, cfg *config, now time.Time) (invs []invocation, list bool, err error) {
	var e struct {
		Partition  *int32          `json:"partition"`
		Partitions json.RawMessage `json:"partitions"`
	}
	if json.Unmarshal(payload, &e) != nil || len(e.Partitions) == 0 || string(e.Partitions) == "null" {
		// Not an object, a bad "partition", or one partition: parseEvent
		// judges and names what is wrong.
		inv, err := parseEvent(payload, cfg, now)
		return []invocation{inv}, false, err
	}
	ps, err := parsePartitionList(e.Partitions)
	if err != nil {
		return nil, true, err
	}
	if e.Partition != nil && (len(ps) != 1 || ps[0] != *e.Partition) {
		return nil, true, fmt.Errorf(`event: "partition" %d and "partitions" %s disagree: give "partitions" alone for several, or "partition" alone for one`,
			*e.Partition, e.Partitions)
	}
	// parseEvent reads the rest (topic, tick) as for one partition: the
	// first listed one stands in for a missing "partition".
	one := *cfg
	one.Partitions = ps[:1]
	inv, err := parseEvent(payload, &one, now)
	if err != nil {
		return nil, true, err
	}
	for _, p := range ps {
		inv.Partition = p
		invs = append(invs, inv)
	}
	return invs, true, nil
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
}, " or ")
