// txn.go holds the exactly-once Kafka sink, -sink kafka+txn://TOPIC: what
// the action keeps, the dead letters, and the consumed offset become
// durable together, in one Kafka transaction per commit.
//
// Why it is sound (DESIGN.md, "Exactly once"): the transactional.id is the
// lease key, and only an owner of the lease ever uses it. A new owner's
// InitProducerID bumps the producer epoch, so the broker aborts the old
// owner's open transaction and refuses its writes and commits from then on:
// a second fence behind the lease's epoch. The offset is committed inside
// the transaction (AddOffsetsToTxn and TxnOffsetCommit, sent by hand:
// franz-go's GroupTransactSession needs a consumer group), so once the new
// owner's InitProducerID returns, the group's offset is where the committed
// output ends. The lease's offset is written after the transaction commits
// and may trail it; the owner starts at the greater of the two.

package main

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txn is the kafka+txn sink: an owner's open transaction, which the sink
// and the dead-letter topic write in, and which each flush ends with the
// offset in it.
type txn struct {
	groupOffset               // the Kafka group that holds the committed offset (group.go)
	id          string        // transactional.id
	out, dlq    *kafkaSink    // the sink topic, and the dead-letter topic (nil without -dlq)
	dlqLimit    int           // the largest dead letter the producer takes
	timeout     time.Duration // for a commit, and again for an abort
	writes      int           // records produced in the open transaction
	err         error         // the open transaction failed: nothing more is written in it
	aborted     bool          // and its abort completed
	seen, sure  producer      // the producer before the last lease write began, and before the last that succeeded
}

// producer is a producer id and epoch: each InitProducerID gives a new one.
type producer struct {
	id    int64
	epoch int16
}

// noProducer is what a client without a producer id has.
var noProducer = producer{-1, -1}

var _ sink = (*txn)(nil)

// newTxnSink is the kafka+txn sink of one partition; the client is
// transactional (txnOpts).
func newTxnSink(cfg *config, cl *kgo.Client, inv invocation, group groupOffset) *txn {
	t := &txn{groupOffset: group, id: txnID(cfg, inv), timeout: cfg.KafkaTimeout,
		out: newKafkaSink(cl, cfg.SinkTopic, cfg.KafkaTimeout), seen: noProducer, sure: noProducer}
	if cfg.DLQ != "" {
		t.dlq, t.dlqLimit = newKafkaSink(cl, cfg.DLQ, cfg.KafkaTimeout), maxRecord(cl, cfg.DLQ)
	}
	return t
}

func (t *txn) write(ctx context.Context, r *kgo.Record) error {
	if t.err != nil {
		return t.err
	}
	t.writes++
	return t.out.write(ctx, r)
}

func (t *txn) deadLetter(ctx context.Context, r *kgo.Record, cause error) error {
	switch {
	case t.dlq == nil:
		return errNoDLQ
	case t.err != nil:
		return t.err
	}
	t.writes++
	return t.dlq.write(ctx, deadLetter(r, cause, t.dlqLimit))
}

// flush ends the open transaction: the dead letters and the output are
// flushed (one client: one flush), then committed with the offset next, or
// aborted when the flush failed.
func (t *txn) flush(ctx context.Context, next int64) error {
	err := t.out.flush(ctx, next)
	if t.dlq != nil {
		err = cmp.Or(err, t.dlq.failed())
	}
	return t.end(ctx, next, err) // with time of its own to commit or abort
}

// keepsOffset: the offset is committed inside each transaction.
func (t *txn) keepsOffset() bool { return true }

// maxTxnTimeout: Kafka brokers refuse a transaction timeout over
// transaction.max.timeout.ms (15 minutes by default), and a transaction
// may last the TTL plus the commit interval (txnOpts).
const maxTxnTimeout = 15 * time.Minute

// txnOpts make the client transactional for one partition. A transaction
// normally lasts one commit interval; the timeout only matters when an owner
// dies and no successor comes, and until then read_committed readers of the
// sink wait, so it is kept short.
func txnOpts(cfg *config, inv invocation) []kgo.Opt {
	return []kgo.Opt{
		kgo.TransactionalID(txnID(cfg, inv)),
		kgo.TransactionTimeout(cfg.TTL + cfg.CommitEvery),
		// An upstream transactional producer's aborted records are not input.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}
}

// txnID is the lease key: one transactional producer per partition.
func txnID(cfg *config, inv invocation) string {
	return "baton/" + leaseKey(cfg.Group, inv.Topic, inv.Partition)
}

// Why a lease write must vouch for the producer: franz-go initializes the
// producer again on its own (to abort after a commit whose outcome it does
// not know, to recover from some produce errors), and an InitProducerID
// fences every other producer of the transactional.id, a newer owner's
// included, when the broker takes the old epoch back (kfake does; the
// chaos harness found it with a lost lease record). So a transaction
// commits only under a producer the lease was written after: a newer owner
// took the lease before its own InitProducerID, so either that fenced this
// producer or this owner's lease write fails.

// mark notes the producer before a lease write.
func (t *txn) mark(ctx context.Context) { t.seen = t.producer(ctx) }

// vouched: the lease write after the last mark succeeded.
func (t *txn) vouched() { t.sure = t.seen }

// unvouched reports that the producer is not the one the last lease
// write vouched for.
func (t *txn) unvouched(ctx context.Context) bool { return t.producer(ctx) != t.sure }

// carry keeps the vouching across a commit that landed: a broker with
// KIP-890 gives the producer the next epoch with its answer, and any
// InitProducerID since would have given this owner a later one, or fenced
// it. After an abort the producer is not carried: franz-go may have
// aborted by initializing it again.
func (t *txn) carry(ctx context.Context) {
	if p := t.producer(ctx); p.id == t.sure.id && (p.epoch == t.sure.epoch || p.epoch == t.sure.epoch+1) {
		t.sure = p
	}
}

// producer is the client's producer now. Asking may initialize it again,
// when franz-go marked it for that.
func (t *txn) producer(ctx context.Context) producer {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	id, epoch, err := t.cl.ProducerID(ctx)
	if err != nil {
		return noProducer
	}
	return producer{id, epoch}
}

// begin runs once the lease is owned and before any write: it fences every
// earlier producer of the partition at the broker, returns the offset the
// last committed transaction recorded (noOffset if none), and opens a
// transaction.
func (t *txn) begin(ctx context.Context) (int64, error) {
	if _, _, err := t.cl.ProducerID(ctx); err != nil {
		return 0, fmt.Errorf("kafka+txn %s: init producer id: %w", t.id, err)
	}
	at, err := t.committed(ctx)
	if err != nil {
		return 0, fmt.Errorf("kafka+txn: read the offset group %q committed: %w", t.group, err)
	}
	return at, t.cl.BeginTransaction()
}

// restart opens a new transaction after an aborted one and returns the
// group's offset, to read again from there. That offset is read back, not
// remembered: a commit whose answer was lost may have landed. It refuses
// when the abort did not complete (a fenced producer, a lost broker).
func (t *txn) restart(ctx context.Context) (int64, error) {
	if !t.aborted {
		return 0, t.err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	at, err := t.committed(ctx)
	if err != nil {
		return 0, err
	}
	t.out.clear()
	if t.dlq != nil {
		t.dlq.clear()
	}
	t.err, t.writes, t.aborted = nil, 0, false
	if err := t.cl.BeginTransaction(); err != nil {
		t.err = fmt.Errorf("kafka+txn: begin a transaction: %w", err)
		return 0, t.err
	}
	return at, nil
}

// end closes the open transaction after the sinks flushed: it commits the
// output with the offset next, or aborts it when the flush failed. After a
// failed one the owner reads again from where the last committed one ended
// (restart), or, if it cannot, the next owner does.
func (t *txn) end(ctx context.Context, next int64, flushed error) error {
	switch {
	case t.err != nil:
		return t.err
	case flushed != nil:
		return t.fail(ctx, flushed)
	case t.writes == 0:
		// Nothing produced, so no transaction to commit (franz-go sends no
		// EndTxn for one): the lease's offset carries this progress.
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.commitOffset(cctx, next); err != nil {
		return t.fail(ctx, fmt.Errorf("kafka+txn: commit offset %d in the transaction: %w", next, err))
	}
	if err := t.cl.EndTransaction(cctx, kgo.TryCommit); err != nil {
		return t.fail(ctx, fmt.Errorf("kafka+txn: commit the transaction: %w", err))
	}
	if err := t.landed(cctx, next); err != nil {
		return t.fail(ctx, err)
	}
	t.carry(cctx)
	t.writes = 0
	if err := t.cl.BeginTransaction(); err != nil {
		t.err = fmt.Errorf("kafka+txn: begin the next transaction: %w", err)
		return t.err
	}
	return nil
}

// landed reads the group's offset back after a commit. franz-go ends a
// transaction in which it saw no produce succeed with an abort, and returns
// nil as if it had committed: it does not know of the offset added by hand
// (commitOffset). Seen under the chaos harness's broker faults, with one
// dead letter in the transaction, it dropped that record while the lease
// moved past it. Only the offset committed with the output says the output
// is durable. An error here is a failed commit: the owner reads again from
// the group's offset, which is right whether or not the commit landed.
func (t *txn) landed(ctx context.Context, next int64) error {
	at, err := t.committed(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("kafka+txn: read back the offset committed to group %q: %w", t.group, err)
	case at < next:
		return fmt.Errorf("kafka+txn: the transaction did not commit: group %q holds offset %d, not %d", t.group, at, next)
	}
	return nil
}

// commitOffset adds the offset to the open transaction.
func (t *txn) commitOffset(ctx context.Context, next int64) error {
	id, epoch, err := t.cl.ProducerID(ctx)
	if err != nil {
		return err
	}
	if p := (producer{id, epoch}); p != t.sure {
		return fmt.Errorf("producer %d epoch %d was initialized after the last lease write (which vouched for %d epoch %d): only a lease write can say this owner still holds the partition", id, epoch, t.sure.id, t.sure.epoch)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = t.id, id, epoch, t.group
	err = t.send(ctx, add, func(r kmsg.Response) []int16 { return []int16{r.(*kmsg.AddOffsetsToTxnResponse).ErrorCode} })
	if err != nil {
		return err
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = t.id, t.group, id, epoch
	req.Generation = -1 // no group membership: the lease assigns the partition
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = t.topic, t.topicID
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = t.partition, next
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return t.send(ctx, req, func(r kmsg.Response) (codes []int16) {
		for _, rt := range r.(*kmsg.TxnOffsetCommitResponse).Topics {
			for _, rp := range rt.Partitions {
				codes = append(codes, rp.ErrorCode)
			}
		}
		return codes
	})
}

// seek sets the group's offset outside any transaction, for an operator's
// seek (baton ctl seek), which may go backwards: otherwise the next owner
// would resume at the greater, older offset.
func (t *txn) seek(ctx context.Context, to int64) error {
	if err := t.commit(ctx, to); err != nil {
		return fmt.Errorf("kafka+txn: %w", err)
	}
	return nil
}

// fail aborts the open transaction and keeps err: nothing more is written.
func (t *txn) fail(ctx context.Context, err error) error {
	t.err = err
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	t.abort(ctx)
	return err
}

// abort drops the open transaction. It may fail (a fenced producer, an
// ended context); the broker then aborts it when the next owner's
// InitProducerID fences this one, or at the transaction timeout.
func (t *txn) abort(ctx context.Context) {
	t.aborted = t.cl.AbortBufferedRecords(ctx) == nil && t.cl.EndTransaction(ctx, kgo.TryAbort) == nil
}
