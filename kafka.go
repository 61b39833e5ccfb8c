// kafka.go holds the Kafka connection an invocation and baton ctl use: the
// client and its options, the topic checks, and the offsets kept in the
// Kafka group -group.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafka is one invocation's connection: one client that consumes the
// partition and produces to the sink and the dead-letter topic.
type kafka struct {
	cl       *kgo.Client
	sink     sink     // the output and the dead letters (sink.go)
	sourceID [16]byte // the source topic's ID, for offset commits
	group    groupOffset
}

func (k *kafka) close() { k.cl.Close() }

// connect opens the client while the lease may still be someone else's, so
// a successor is warm when the baton arrives. It checks that the partition
// and the sink and dead-letter topics exist.
func connect(ctx context.Context, cfg *config, d *deps, inv invocation) (*kafka, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.FetchMaxWait(cfg.FetchWait),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(samePartition),
		// A fetch session saves nothing for one partition, and every short
		// run would leave one in the brokers' session cache. (Without one,
		// franz-go v1.22.3's Close also does not race an in-flight fetch.)
		kgo.DisableFetchSessions(),
	}, append(authOpts(cfg), cfg.KafkaOpts...)...)
	opts = append(sinkOpts(cfg, inv), opts...) // before KafkaOpts: a test may override them
	cl, err := d.kafka(opts...)
	if err != nil {
		return nil, configError{fmt.Errorf("kafka client: %w", err)}
	}
	k := &kafka{cl: cl}
	if err := k.checkTopics(ctx, cfg, inv); err != nil {
		cl.Close()
		return nil, err
	}
	k.group = groupOffset{cl: cl, group: cfg.Group, topic: inv.Topic, topicID: k.sourceID, partition: inv.Partition}
	k.sink = newSink(cfg, cl, d.stdout, inv, k.group)
	if d.wrapSink != nil {
		k.sink = d.wrapSink(inv, k.sink)
	}
	return k, nil
}

// checkTopics asks the brokers for the topics once: it names a missing topic or an
// out-of-range partition before the lease is touched.
func (k *kafka) checkTopics(ctx context.Context, cfg *config, inv invocation) error {
	topics := []string{inv.Topic}
	if cfg.SinkTopic != "" {
		topics = append(topics, cfg.SinkTopic)
	}
	if cfg.DLQ != "" {
		topics = append(topics, cfg.DLQ)
	}
	meta, err := k.metadata(ctx, cfg, topics)
	if err != nil {
		return err
	}
	if n := len(meta[inv.Topic].Partitions); int(inv.Partition) >= n {
		return configError{fmt.Errorf("partition %d out of range: topic %q has partitions 0..%d", inv.Partition, inv.Topic, n-1)}
	}
	k.sourceID = meta[inv.Topic].TopicID
	return nil
}

func (k *kafka) partitions(ctx context.Context, cfg *config, topic string) (int, error) {
	meta, err := k.metadata(ctx, cfg, []string{topic})
	return len(meta[topic].Partitions), err
}

// metadata returns what the brokers know of each topic, or an error naming
// the first topic they do not have.
func (k *kafka) metadata(ctx context.Context, cfg *config, topics []string) (map[string]kmsg.MetadataResponseTopic, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	mctx, cancel := context.WithTimeout(ctx, cfg.KafkaTimeout)
	defer cancel()
	resp, err := req.RequestWith(mctx, k.cl)
	if err != nil {
		return nil, fmt.Errorf("kafka %v: metadata: %w", cfg.Brokers, err)
	}
	meta := map[string]kmsg.MetadataResponseTopic{}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("kafka topic %q: %w", *t.Topic, err)
		}
		meta[*t.Topic] = t
	}
	return meta, nil
}

// offsetAt asks partition p's leader for an offset by timestamp, or by a
// special timestamp: -1 the end, -2 the start, -3 the newest record
// time (Kafka 3.0+; an older broker's error is reported as is). It
// returns the offset (-1: no record at or after ts) and its record's time.
func (k *kafka) offsetAt(ctx context.Context, cfg *config, p int32, ts int64) (int64, int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = 1 // read_committed, as baton reads
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = cfg.Topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = p, ts
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	lctx, cancel := context.WithTimeout(ctx, cfg.KafkaTimeout)
	defer cancel()
	for _, sh := range k.cl.RequestSharded(lctx, req) {
		if sh.Err != nil {
			return 0, 0, fmt.Errorf("kafka %v: list offsets: %w", cfg.Brokers, sh.Err)
		}
		for _, t := range sh.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, rp := range t.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return 0, 0, fmt.Errorf("kafka topic %q partition %d: list offsets: %w", cfg.Topic, p, err)
				}
				if rp.Partition == p {
					return rp.Offset, rp.Timestamp, nil
				}
			}
		}
	}
	return 0, 0, fmt.Errorf("kafka topic %q partition %d: list offsets: no answer", cfg.Topic, p)
}

// listOffsets asks the partitions' leaders for an offset by timestamp
// (-1: the end of the log, -2: its start).
func (k *kafka) listOffsets(ctx context.Context, cfg *config, topic string, parts []int32, ts int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	lctx, cancel := context.WithTimeout(ctx, cfg.KafkaTimeout)
	defer cancel()
	offsets := map[int32]int64{}
	for _, sh := range k.cl.RequestSharded(lctx, req) {
		if sh.Err != nil {
			return nil, fmt.Errorf("kafka %v: list offsets: %w", cfg.Brokers, sh.Err)
		}
		for _, t := range sh.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("kafka topic %q partition %d: list offsets: %w", topic, p.Partition, err)
				}
				offsets[p.Partition] = p.Offset
			}
		}
	}
	return offsets, nil
}

// logBounds is partition p's log start (the first offset retention kept)
// and end (the high watermark), each from its own ListOffsets: one
// request cannot name a partition twice.
func (k *kafka) logBounds(ctx context.Context, cfg *config, topic string, p int32) (start, end int64, err error) {
	lo, err := k.listOffsets(ctx, cfg, topic, []int32{p}, -2)
	if err != nil {
		return 0, 0, err
	}
	hi, err := k.listOffsets(ctx, cfg, topic, []int32{p}, -1)
	if err != nil {
		return 0, 0, err
	}
	return lo[p], hi[p], nil
}

// groupOffset is the source partition's offset in the Kafka group -group.
// Baton does not join the group (the lease assigns the partition): it
// commits the lease's offset there after each lease commit, with no
// membership (generation -1), so that lag tools (kafka-consumer-groups,
// Burrow, kafka-lag-exporter, MSK's consumer-lag metrics) see it, and it
// starts from there when a lease record has no offset: a new partition, or
// a record that was lost (a Redis restarted without persistence, a
// deleted DynamoDB item). A sink that keeps the offset (txn.go) commits it
// in its transactions instead, and nothing is committed twice.
//
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

// retry repeats a request the broker asks to repeat: CONCURRENT_TRANSACTIONS
// while the last transaction completes, UNSTABLE_OFFSET_COMMIT, or a moving
// coordinator; and one the client cut off unanswered: the produce limits
// bound every request of the run's client (sinkOpts), a tenth of a second
// at short leases, which a loaded broker can miss.
func retry(ctx context.Context, do func() error) error {
	for {
		err := do()
		if err == nil || !(errors.Is(err, kerr.ConcurrentTransactions) || kerr.IsRetriable(err) || errors.Is(err, os.ErrDeadlineExceeded)) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
