// group.go holds the source partition's offset in the Kafka group -group.
// Baton does not join the group (the lease assigns the partition): it
// commits the lease's offset there after each lease commit, with no
// membership (generation -1), so that lag tools (kafka-consumer-groups,
// Burrow, kafka-lag-exporter, MSK's consumer-lag metrics) see it, and it
// starts from there when a lease record has no offset: a new partition, or
// a record that was lost (a Redis restarted without persistence, a
// deleted DynamoDB item). A sink that keeps the offset (txn.go) commits it
// in its transactions instead, and nothing is committed twice.

package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupOffset names the source partition in the Kafka group.
type groupOffset struct {
	cl        *kgo.Client
	group     string // the Kafka group that holds the committed offset
	topic     string
	topicID   [16]byte
	partition int32
}

// committed reads the group's offset (noOffset if none), waiting out a
// transaction still completing (RequireStable; UNSTABLE_OFFSET_COMMIT until
// it has).
func (g groupOffset) committed(ctx context.Context) (int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group, req.RequireStable = g.group, true
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = g.topic, []int32{g.partition}
	req.Topics = append(req.Topics, rt)
	at := int64(noOffset)
	err := g.send(ctx, req, func(r kmsg.Response) []int16 {
		resp := r.(*kmsg.OffsetFetchResponse)
		if resp.ErrorCode == kerr.GroupIDNotFound.Code {
			return nil // nothing committed to the group yet
		}
		codes := []int16{resp.ErrorCode}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				codes, at = append(codes, rp.ErrorCode), max(rp.Offset, noOffset)
			}
		}
		return codes
	})
	return at, err
}

// commit sets the group's offset outside any transaction and any group
// membership. It may go backwards (an operator's seek).
func (g groupOffset) commit(ctx context.Context, to int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = g.group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = g.topic, g.topicID
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = g.partition, to
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	err := g.send(ctx, req, func(r kmsg.Response) (codes []int16) {
		for _, rt := range r.(*kmsg.OffsetCommitResponse).Topics {
			for _, rp := range rt.Partitions {
				codes = append(codes, rp.ErrorCode)
			}
		}
		return codes
	})
	if err != nil {
		return fmt.Errorf("kafka: commit offset %d to group %q: %w", to, g.group, err)
	}
	return nil
}

// send sends req, again while the broker asks to (retry), and returns the
// first error among the answer's codes.
func (g groupOffset) send(ctx context.Context, req kmsg.Request, codes func(kmsg.Response) []int16) error {
	return retry(ctx, func() error {
		resp, err := g.cl.Request(ctx, req)
		if err != nil {
			return err
		}
		for _, c := range codes(resp) {
			if err := kerr.ErrorForCode(c); err != nil {
				return err
			}
		}
		return nil
	})
}

// commitGroup copies the offset the lease store now holds to the Kafka
// group. It never fails the run: the lease is what fences and resumes, so a
// failure is logged once, and once more when commits work again. It is sent
// only when the offset moved, and never for a sink that keeps the offset
// itself (a commit outside its transactions could move the group back
// behind a newer owner's transaction).
func (p *run) commitGroup(ctx context.Context, offset int64) {
	if p.k.sink.keepsOffset() || offset < 0 || offset == p.groupAt {
		return
	}
	// Bounded by the commit interval: a slow coordinator never holds up
	// the next lease commit.
	gctx, cancel := context.WithTimeout(ctx, min(p.cfg.KafkaTimeout, p.cfg.CommitEvery))
	defer cancel()
	err := p.k.group.commit(gctx, offset)
	switch {
	case err != nil && !p.groupFailing:
		p.log.Warn("offset not committed to the Kafka group; lag tools see it behind, the lease is unaffected", "group", p.cfg.Group, "offset", offset, "err", err)
	case err == nil && p.groupFailing:
		p.log.Info("offsets committed to the Kafka group again", "group", p.cfg.Group, "offset", offset)
	}
	p.groupFailing = err != nil
	if err == nil {
		p.groupAt = offset
	}
}

// leaveGroup commits to the group where the run left the partition (handed
// over or released), unless it was fenced: a newer owner's commits are
// then the group's to keep.
func (p *run) leaveGroup(ctx context.Context, end string) {
	if end == endFenced || end == endLost {
		return
	}
	ctx, cancel := p.endCtx(ctx)
	defer cancel()
	p.commitGroup(ctx, p.committed)
}

// startOffset is where the run starts reading: the lease's offset; when the
// record has none (a new partition, or a record that was lost), the Kafka
// group's; when the group has none either, -start: the log's start
// (earliest) or its end (latest, resolved to an offset now, so the next
// owner goes on from there even if nothing arrives meanwhile).
func (p *run) startOffset(ctx context.Context) (kgo.Offset, error) {
	// A sink that keeps the offset has already said where to resume.
	if p.next < 0 && !p.k.sink.keepsOffset() {
		gctx, cancel := context.WithTimeout(ctx, p.cfg.KafkaTimeout)
		defer cancel()
		at, err := p.k.group.committed(gctx)
		if err != nil {
			return kgo.Offset{}, fmt.Errorf("the lease record has no offset; read the offset committed to Kafka group %q: %w", p.cfg.Group, err)
		}
		if at >= 0 {
			p.log.Info("the lease record has no offset; starting from the Kafka group's", "group", p.cfg.Group, "offset", at)
			p.startFrom(at)
		}
	}
	if p.next < 0 && p.cfg.Start == startLatest {
		end, err := p.k.listOffsets(ctx, p.cfg, p.inv.Topic, []int32{p.inv.Partition}, -1)
		if err != nil {
			return kgo.Offset{}, fmt.Errorf("-start latest: %w", err)
		}
		p.log.Info("no offset in the lease record or the Kafka group; starting at the end of the log (-start latest)", "offset", end[p.inv.Partition])
		p.startFrom(end[p.inv.Partition])
	}
	if p.next < 0 {
		return kgo.NewOffset().AtStart(), nil
	}
	return kgo.NewOffset().At(p.next), nil
}

// startFrom makes at the run's first offset and the one it falls back to:
// a rewind or a failure before the first commit goes back to at, not to
// the start of the log.
func (p *run) startFrom(at int64) {
	p.next, p.from, p.committed = at, at, at
}
