// consume.go holds the owned run, whole: fetch, action, sink, commit, the
// offset kept in the Kafka group, the deadline, hand-over and release, and
// the run's own metrics.

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// action is baton's conditional step: the function a fork edits. It sees
// every record of the partition and appends to out what goes to the sink:
// nothing (drop), r itself (keep, changed or not), or records of its own
// (change into new ones, or fan out). It returns out. An error sends the
// record to the dead-letter topic (-dlq), or stops the run with the record
// uncommitted.
//
// With -concurrency 1 (the default) it is called for one record at a time,
// in offset order. With N above 1 it is called for up to N records of the
// partition at once, on N goroutines, never for two records of one key at
// once, and the records of a key in offset order: it must be safe to call
// concurrently. What it returns is written in offset order either way.
// ctx ends with -action-timeout, or when the run ends; an action that
// waits on I/O should pass it on. A shutdown signal does not end it.
//
// The run passes the same out, emptied, for every record, so an action that
// keeps or drops allocates nothing. The sink is done with the records
// returned when the next record comes, so an action may reuse its own
// records, but not the bytes they point to (Key, Value, Headers: a Kafka
// sink sends those later). r's fields may be changed, but not its Offset or
// Partition: the owner gives each record returned the partition and offset
// of the record it came from.
func action(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	return append(out, r), nil
}

// actionFunc is an action's type: action, or a test's.
type actionFunc func(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error)

// matching puts a -match filter in front of an action.
func matching(re *regexp.Regexp, next actionFunc) actionFunc {
	if re == nil {
		return next
	}
	return func(ctx context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		if !re.Match(r.Value) {
			return out, nil
		}
		return next(ctx, r, out)
	}
}

// progressEvery spaces the owner's progress lines, so a person sees it
// work; on a terminal they come more often.
const (
	progressEvery    = time.Minute
	terminalProgress = 10 * time.Second
)

// run is one owned stretch of a partition, from taking the baton to
// passing it on.
type run struct {
	cfg  *config
	d    *deps
	log  *slog.Logger
	inv  invocation
	k    *kafka
	act  actionFunc
	actx context.Context // the action's context with one record at a time (inflight.go has its own)
	out  []*kgo.Record   // what the action returned for the last record: its memory is reused
	fly  *inflight       // -concurrency above 1: the records in the action at once
	wake chan struct{}   // a timer fired, or an action returned (inflight)

	l               lease     // the record as the owner last wrote or read it
	next            int64     // next offset to read: all before it went to the sink
	committed       int64     // the offset the store holds
	validUntil      time.Time // no sink write after this without a renewal
	nextCommit      time.Time
	nextRead        time.Time
	slowest         time.Duration // longest flush+commit seen: sets the deadline margin
	deadline        time.Time     // the runtime's deadline; zero in process mode
	reported        time.Time     // the last progress line
	started         time.Time     // when the run began owning
	reportedRecords int           // records as of the last progress line

	from                           int64
	records, written, deadLettered int
	expired                        int64     // offsets retention deleted before they were read (expire)
	moved                          bool      // the start moved off the lease's offset (inLog): commit before reading
	seekUnsure                     bool      // the last seek commit's answer was lost: read the record before the next commit
	quiet                          int       // fetches in a row that gave no record (topicThere)
	nextTopicCheck                 time.Time // when topicThere may ask again

	// metrics (metrics.go)
	calls         *atomic.Int64 // lease store calls of this invocation
	sent          figures       // counts as of the last metrics line
	published     figures       // counts as of the last publish to /metrics
	highWater     int64         // the partition's high watermark, last seen
	slowestCommit time.Duration // since the last metrics line
	gap           time.Duration // from the hand-over write to the owner's first sink write
	handedAt      time.Time     // when the baton was handed over; zero if taken
	handedFrom    string        // who handed it over
	paused        bool          // an operator paused reading (baton ctl pause)
	pending       []*kgo.Record // fetched, not yet handled
	stalled       bool          // sink writes paused: the lease was not renewed in time
	rewinds       int           // sink failures since the last commit that moved the offset
	rewound       int           // times read again from a commit, in all
	alone         [2]int64      // offsets [from, to) read again one record at a time, after a sink refused one for good
	backoff       time.Duration // the wait before retrying a commit the lease store failed; zero if none failed
	storeFails    int           // commits the lease store failed in a row
	groupAt       int64         // the offset last committed to the Kafka group (group.go); noOffset: none yet
	groupFailing  bool          // the last commit to the Kafka group failed

	// Set by timers, so the per-record path reads no clock (arm): due when
	// the next step is (a commit, a lease read, the stop time, the lease's
	// end), lapsed once validUntil passed.
	due, lapsed          atomic.Bool
	dueTimer, lapseTimer *time.Timer
	dueAt, lapseAt       time.Time // what the timers are set for
}

func newRun(cfg *config, d *deps, log *slog.Logger, inv invocation, l lease, k *kafka) *run {
	now := d.now()
	p := &run{cfg: cfg, d: d, log: log, inv: inv, k: k, act: d.action, l: l, wake: make(chan struct{}, 1),
		next: l.Offset, committed: l.Offset, from: l.Offset, started: now, groupAt: noOffset,
		alone:      [2]int64{noOffset, noOffset},
		validUntil: time.UnixMilli(l.ExpiresAt).Add(-cfg.RenewMargin),
		nextCommit: now.Add(cfg.CommitEvery), nextRead: now.Add(cfg.ReadEvery)}
	if p.act == nil {
		p.act = matching(cfg.Match, action)
	}
	return p
}

func (p *run) outcome(end string) outcome {
	return outcome{Key: p.l.Key, Owner: p.inv.Owner, Epoch: p.l.Epoch, From: p.from, To: p.committed,
		Records: p.records, Written: p.written, DeadLettered: p.deadLettered, Rewinds: p.rewound, End: end}
}

// own reads the partition until the run ends: a successor shows up, the
// deadline nears, the context ends (process shutdown), or it is fenced.
func (p *run) own(ctx context.Context) (out outcome, err error) {
	defer p.disarm()
	p.actx = context.WithoutCancel(ctx) // an action cut short by a shutdown would dead-letter its record
	if n := p.cfg.Concurrency; n > 1 {
		p.fly = newInflight(ctx, p.act, n, p.cfg.ActionTimeout, p.wake)
		defer p.fly.close() // every worker ends with the run
	}
	defer func() {
		if r := recover(); r != nil {
			// The sink may hold part of a batch: release at the last commit,
			// so what follows is read again.
			out, err = p.release(ctx, p.committed, fmt.Errorf("panic: %v", r))
		}
	}()
	// An operator's seek waiting for the new owner is applied by the first
	// step, before anything is read.
	var start kgo.Offset
	err = p.begin(ctx)
	if err == nil {
		start, err = p.startOffset(ctx)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// Shut down before anything was read: a clean release, no error.
		return p.release(ctx, p.committed, nil)
	case err != nil:
		return p.release(ctx, p.committed, err)
	}
	p.k.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{p.inv.Topic: {p.inv.Partition: start}})
	if p.unsaved() {
		p.nextCommit = p.d.now() // the first step commits it
	}
	for {
		if done, out, err := p.step(ctx); done {
			return out, err
		}
		if p.paused || p.unsaved() {
			p.idle(ctx) // an unsaved start waits for a commit that lands
			continue
		}
		if p.d.now().After(p.validUntil) {
			// Not renewed in time: others may think the owner dead. Write
			// nothing until a renewal succeeds (or the commit says it is fenced).
			if !p.stalled {
				p.log.Warn("lease not renewed in time; sink writes paused", "valid_until", p.validUntil)
			}
			p.stalled = true
			if p.backoff > 0 {
				// The lease store is failing: wait for the next try.
				p.idle(ctx)
				continue
			}
			p.nextCommit = p.d.now()
			if err := waitPoll(ctx, p.cfg, p.d); err != nil && ctx.Err() == nil {
				return p.leave(ctx, "deadline")
			}
			continue
		}
		if p.stalled {
			p.log.Info("lease renewed; sink writes resume")
			p.stalled = false
		}
		if err := p.poll(ctx); err != nil {
			// A failed sink write fails the flush too (an action's error
			// does not): the owner then reads again from its last commit.
			if ferr := p.flush(ctx); ferr != nil {
				if p.rewind(ctx, ferr) {
					continue
				}
				return p.giveUp(ctx, ferr)
			}
			if errors.Is(err, errTopicGone) {
				// Said once, by whoever logs how the run ended.
				return p.release(ctx, p.next, err)
			}
			return p.fail(ctx, err)
		}
	}
}

// step does what is due before the next poll: commit, lease read, hand
// over, or leave at the deadline.
func (p *run) step(ctx context.Context) (done bool, out outcome, err error) {
	now := p.d.now()
	switch {
	case ctx.Err() != nil:
		out, err = p.leave(ctx, "shutdown")
		return true, out, err
	case now.After(p.stopAt()):
		out, err = p.leave(ctx, "deadline")
		return true, out, err
	case !now.Before(p.nextCommit):
		switch err := p.commit(ctx); {
		case errors.Is(err, errFenced):
			return true, p.fenced(ctx), nil
		case errors.As(err, new(flushError)):
			if !p.rewind(ctx, err) {
				out, err = p.giveUp(ctx, err)
				return true, out, err
			}
		case errors.Is(err, errTaken):
			p.reread(ctx) // a newer seek came: read it
		}
		// A lease store error is retried after a backoff (commit).
	case p.nearHandoff(now) && !now.Before(p.nextRead):
		p.reread(ctx)
	}
	if p.l.asked(now, p.cfg.Skew) && !p.backingOff(now) {
		p.settle(ctx)
		out, ok, err := p.handOver(ctx)
		if !ok {
			p.reread(ctx) // the successor changed: read it again and go on
		}
		return ok, out, err
	}
	switch err := p.obey(ctx); {
	case errors.Is(err, errFenced):
		return true, p.fenced(ctx), nil
	case errors.As(err, new(flushError)):
		if !p.rewind(ctx, err) {
			out, err = p.giveUp(ctx, err)
			return true, out, err
		}
	case err != nil && p.backoff == 0: // a failed commit logs for itself
		p.log.Warn("operator control not applied yet; will retry", "err", err)
	}
	return false, out, nil
}

// obey applies what an operator wrote in the record (baton ctl): a seek
// (seek); a pause flushes, commits, and stops reading until a resume.
func (p *run) obey(ctx context.Context) error {
	if p.backingOff(p.d.now()) {
		return nil
	}
	if p.l.Seek != noOffset {
		if err := p.seek(ctx); err != nil {
			return err
		}
	}
	if p.l.Paused != p.paused {
		p.paused = p.l.Paused
		p.log.Info("operator control", "paused", p.paused, "offset", p.next)
		if p.paused {
			return p.commit(ctx)
		}
	}
	return nil
}

// seek applies the operator's seek once: it flushes what was read, tells
// the sink, and then one commit records offset = the seek and clears it;
// only then does reading move there. Until that commit lands nothing is
// applied: the seek stays in the record, for the next step or the next
// owner, and nothing was read from it. The sink hears first because
// kafka+txn sets its group's offset there, and the next owner starts at the
// greater of that and the lease's: told after the commit, a crash between
// the two would lose a seek backwards.
func (p *run) seek(ctx context.Context) error {
	to := p.l.Seek
	if err := p.flush(ctx); err != nil {
		return flushError{err}
	}
	if err := p.k.sink.seek(ctx, to); err != nil {
		return err
	}
	err := p.commitAt(ctx, to, to) // and adopt moves the reading
	p.seekUnsure = err != nil && !isVerdict(err) && !errors.As(err, new(flushError))
	if errors.Is(err, errTaken) {
		p.reread(ctx) // a newer seek: the next step applies it
		return nil
	}
	return err
}

// moveTo makes the reading go on at offset, dropping what was fetched. It
// removes the partition and adds it again: SetOffsets skips a partition the
// client does not consume yet, as when the first step, right after the run
// added it, applies a seek that waited for a new owner.
func (p *run) moveTo(offset int64) {
	p.dropWindow()
	p.k.cl.RemoveConsumePartitions(map[string][]int32{p.inv.Topic: {p.inv.Partition}})
	p.k.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{p.inv.Topic: {p.inv.Partition: kgo.NewOffset().At(offset)}})
	p.next, p.pending, p.alone = offset, nil, [2]int64{noOffset, noOffset}
}

// idle waits, reading nothing, until the next commit or lease read is due.
func (p *run) idle(ctx context.Context) {
	until := earliest(p.nextCommit, p.stopAt())
	if p.nearHandoff(p.d.now()) {
		until = earliest(until, p.nextRead)
	}
	t := time.NewTimer(until.Sub(p.d.now()))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stopAt is when the owner stops to flush, commit and release before the
// runtime's deadline.
func (p *run) stopAt() time.Time {
	if p.deadline.IsZero() {
		return time.Unix(1<<40, 0)
	}
	return p.deadline.Add(-margin(p.cfg.MarginFloor, p.slowest) - p.slowestAction())
}

// nearHandoff: under Lambda the successor arrives about a minute before the
// deadline; only then are lease reads frequent.
func (p *run) nearHandoff(now time.Time) bool {
	return !p.deadline.IsZero() && now.After(p.deadline.Add(-p.cfg.NearHandoff))
}

func (p *run) reread(ctx context.Context) {
	p.nextRead = p.d.now().Add(p.cfg.ReadEvery)
	l, err := loadOrNew(ctx, p.cfg, p.d.store, p.l.Key)
	if err != nil {
		if p.backoff == 0 { // else the failing commits said it
			p.log.Warn("lease read failed", "err", err)
		}
		return
	}
	p.adopt(l)
}

// flushError is a commit that failed at the flush: the sink failed, not
// the lease store, and the owner reads again from its last commit.
type flushError struct{ error }

func (e flushError) Unwrap() error { return e.error }

// commit flushes the sink and then records the offset and a new expiry in
// one conditional write, which also renews the lease and shows a successor.
func (p *run) commit(ctx context.Context) error {
	if p.seekUnsure {
		// The last seek commit may have landed unheard: the record is
		// read first, so that a seek it applied moves the reading (adopt)
		// instead of being written over with the old position.
		l, err := loadOrNew(ctx, p.cfg, p.d.store, p.l.Key)
		if err != nil {
			p.backOff("commit", err)
			return err
		}
		p.seekUnsure = false
		p.adopt(l)
	}
	return p.commitAt(ctx, p.next, noOffset)
}

// commitAt is commit recording offset; with seek set (the seek the owner
// saw in the record, applied at offset) it also clears the seek, and fails
// with errTaken if a newer one came.
func (p *run) commitAt(ctx context.Context, offset, seek int64) error {
	start := p.d.now()
	p.nextCommit = start.Add(p.cfg.CommitEvery)
	// A failed flush or commit counts towards the deadline margin too.
	defer func() { p.slowest = max(p.slowest, p.d.now().Sub(start)) }()
	if err := p.vouch(ctx); err != nil {
		return err
	}
	if err := p.flush(ctx); err != nil {
		return flushError{err}
	}
	return p.record(ctx, start, offset, seek)
}

// vouch writes the lease, at the offset committed, when the sink commits
// only what a lease write vouched for and none has since it changed
// (txn.go: its producer was initialized again).
func (p *run) vouch(ctx context.Context) error {
	if !p.k.sink.unvouched(ctx) {
		return nil
	}
	return p.record(ctx, p.d.now(), p.committed, noOffset)
}

// record writes offset and an expiry counted from start to the lease, which
// renews it, and takes what the store holds now.
func (p *run) record(ctx context.Context, start time.Time, offset, seek int64) error {
	ctx, cancel := p.endCtx(ctx) // a shutdown signal does not cut a commit in two
	defer cancel()
	sctx, cancel := context.WithTimeout(ctx, p.cfg.StoreTimeout)
	defer cancel()
	// The owner's own expiry counts from before the write, so it never
	// overstates. The record's moves forward at every write, so a taker
	// that read it before is refused (takeVerdict): two writes within a
	// millisecond (a vouching write and the commit's, txn.go) would look
	// alike.
	until := start.Add(p.cfg.TTL)
	exp := max(until.UnixMilli(), p.l.ExpiresAt+1)
	l := p.l
	l.Seek = seek
	p.k.sink.mark(ctx)
	l, err := p.d.store.commit(sctx, l, offset, exp)
	if err != nil {
		if !errors.Is(err, errFenced) && !errors.Is(err, errTaken) {
			p.backOff("commit", err)
		}
		return err
	}
	p.k.sink.vouched()
	if p.backoff > 0 {
		p.log.Info("commit succeeded again", "failed_tries", p.storeFails)
		p.backoff, p.storeFails = 0, 0
	}
	// Only a commit that moves the offset ends a run of sink failures: one
	// between a rewind and the failure it runs into again must not.
	if offset != p.committed {
		p.rewinds = 0
	}
	p.committed = offset
	if offset == p.next {
		p.moved = false // the start it moved to is saved (a vouching write saves none)
	}
	p.adopt(l)
	p.validUntil = until.Add(-p.cfg.RenewMargin)
	p.slowestCommit = max(p.slowestCommit, p.d.now().Sub(start))
	p.commitGroup(ctx, p.committed)
	p.publish()
	if every := cmp.Or(p.d.progress, progressEvery); start.Sub(p.reported) >= every {
		p.progress(start)
		p.emitMetrics()
	}
	return nil
}

// adopt takes l, the record as the store now holds it, when it is still
// this owner's. Only this owner's seek commit clears a seek, so a seek gone
// from the record is applied: reading moves there, once. That is the seek
// commit's own answer, or a later record's when that answer was lost.
func (p *run) adopt(l lease) {
	if l.Epoch != p.l.Epoch || l.Owner != p.l.Owner {
		return
	}
	if to := p.l.Seek; to != noOffset && l.Seek == noOffset {
		p.log.Info("operator seek applied", "from", p.next, "to", to)
		p.moveTo(to)
	}
	p.l = l
}

// Writes the lease store fails are retried after minBackoff, doubling up
// to the commit interval.
const minBackoff = 100 * time.Millisecond

// backOff spaces the retries of a commit or hand-over the lease store
// failed, and says so once, not at every try. Meanwhile sink writes go on
// until the lease would end unrenewed; each try also renews, and shows a
// successor or a fence.
func (p *run) backOff(op string, err error) {
	if p.backoff == 0 {
		p.log.Warn(op+" failed; will retry with backoff", "err", err, "offset", p.next)
	}
	p.storeFails++
	p.backoff = min(max(2*p.backoff, minBackoff), p.cfg.CommitEvery)
	p.nextCommit = p.d.now().Add(p.backoff)
}

// backingOff: the lease store is failing and the next try is not due; an
// operator's control and a hand-over wait for it too.
func (p *run) backingOff(now time.Time) bool {
	return p.backoff > 0 && now.Before(p.nextCommit)
}

// flush makes what the sink holds durable, up to the offset read.
func (p *run) flush(ctx context.Context) error {
	ctx, cancel := p.endCtx(ctx) // a shutdown signal does not cut a flush or a transaction in two
	defer cancel()
	return p.k.sink.flush(ctx, p.next)
}

// maxRewinds is how many times in a row the sink may fail before the run
// gives up and lets the next invocation try.
const maxRewinds = 3

// rewind, after the sink failed, drops what it holds and reads again from
// the last commit: the lease's offset, or where the sink's durable output
// ends, when it knows and that is greater (txn.go). It is
// false when that cannot be done; the run then ends. After a record the
// sink refused for good, the records from it to where the reading was are
// read again one at a time (alone): a batch may be refused whole, and only
// a record refused by itself is to blame.
func (p *run) rewind(ctx context.Context, cause error) bool {
	if p.rewinds++; p.rewinds > maxRewinds {
		return false
	}
	at, err := p.reset(ctx)
	if err != nil {
		p.log.Warn("sink failed and cannot start again", "err", cause, "restart", err)
		return false
	}
	to := max(at, p.committed)
	var refused *refusedError
	if errors.As(cause, &refused) && refused.Offset >= to {
		p.alone = [2]int64{refused.Offset, p.next}
	}
	p.rewound++
	p.log.Warn("sink failed; reading again from the last commit", "err", cause, "offset", p.next, "rewind_to", to)
	p.readFrom(to)
	if p.vouch(ctx) != nil {
		// Nothing is written until a lease write vouches for the sink.
		p.validUntil = p.d.now().Add(-time.Nanosecond)
	}
	return true
}

// readFrom makes the reading go on at to, dropping what was fetched and
// what the actions in flight hold.
func (p *run) readFrom(to int64) {
	p.dropWindow()
	tp := map[string][]int32{p.inv.Topic: {p.inv.Partition}}
	if to < 0 { // SetOffsets skips a negative offset: start over instead
		p.k.cl.RemoveConsumePartitions(tp)
		p.k.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{p.inv.Topic: {p.inv.Partition: kgo.NewOffset().AtStart()}})
	} else {
		p.k.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{p.inv.Topic: {p.inv.Partition: {Epoch: -1, Offset: to}}})
	}
	p.next, p.pending = to, nil
}

// reset drops what the sink holds after a failure, so that it takes
// writes again, and returns where its durable output ends, if it knows.
func (p *run) reset(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, p.cfg.KafkaTimeout)
	defer cancel()
	return p.k.sink.restart(rctx)
}

// giveUp ends a run whose sink failed maxRewinds times in a row: it
// releases the lease at the last commit, so a later run reads again from
// there, and says once what a person can do if that never succeeds.
func (p *run) giveUp(ctx context.Context, cause error) (outcome, error) {
	err := fmt.Errorf("sink failed %d times in a row at %s/%d; released at offset %d to be read again: %w",
		p.rewinds, p.inv.Topic, p.inv.Partition, p.committed, cause)
	p.log.Error("sink keeps failing; released at the last commit", "err", cause, "partition", p.inv.Partition, "offset", p.committed,
		"remedy", "if the sink can never take the record there, skip it with baton ctl seek, or set -dlq")
	return p.release(ctx, p.committed, err)
}

// begin starts the sink once the lease is owned, and the run where the
// sink's durable output ends, when it knows and that is past the lease's
// offset (txn.go: where the last committed transaction ended).
func (p *run) begin(ctx context.Context) error {
	bctx, cancel := context.WithTimeout(ctx, p.cfg.KafkaTimeout)
	defer cancel()
	at, err := p.k.sink.begin(bctx)
	if err != nil {
		return err
	}
	if at > p.next {
		p.log.Info("resuming where the sink's durable output ends", "lease_offset", p.next, "offset", at)
		p.next, p.from = at, at
	}
	// The producer begin made is vouched for at once, so that a hand-over
	// before the first commit commits too (txn.go). Should the store fail
	// now, the first commit writes the lease first.
	if err := p.vouch(ctx); errors.Is(err, errFenced) {
		return err
	}
	return nil
}

// poll hands records to the action and the sink until the next thing is
// due, fetching when none are left from the last fetch. A long batch yields
// to the deadline, lease checks and commits: the rest waits in pending.
func (p *run) poll(ctx context.Context) error {
	until := earliest(p.nextCommit, p.stopAt(), p.validUntil)
	if p.nearHandoff(p.d.now()) {
		until = earliest(until, p.nextRead)
	}
	p.arm(until)
	if p.fly != nil && p.alone[0] != noOffset && p.next >= p.alone[1] {
		p.alone = [2]int64{noOffset, noOffset} // read alone, all of it: back to many at once
	}
	if p.fly != nil && p.alone[0] == noOffset {
		return p.pollMany(ctx, until)
	}
	if len(p.pending) == 0 {
		p.pending = p.fetch(ctx, until)
		if err := p.topicThere(ctx); err != nil {
			return err
		}
	}
	for i, r := range p.pending {
		if p.due.Load() { // a timer's, not the clock: none is read a record
			p.pending = p.pending[i:]
			return nil
		}
		handle := p.process // a record never seen, read at the usual pace
		if r.Offset < p.next || p.alone[0] != noOffset {
			handle = p.handle
		}
		if err := handle(ctx, r); err != nil {
			if errors.Is(err, errLapsed) {
				p.pending = p.pending[i:] // written once the lease is renewed
				return nil
			}
			p.pending = nil
			return err
		}
	}
	p.pending = nil
	return nil
}

// quietFetches is how many fetches in a row may give no record before the
// owner asks the brokers whether the topic is still there.
const quietFetches = 3

// errTopicGone ends a run whose topic was deleted (or deleted and created
// again) while it read.
var errTopicGone = errors.New("the topic was deleted")

// topicThere asks the brokers whether the topic still exists, with the ID
// it had when the run connected, once quietFetches fetches in a row gave
// nothing, and then at most once a lease TTL. franz-go retries a fetch of a
// deleted topic quietly (UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID), so
// the owner would otherwise wait, unknowing, at an offset that is gone; one
// failed fetch is no proof, and an idle partition costs one metadata request
// a TTL. Only the broker's answer that the topic is gone ends the run: an
// unanswered request does not.
func (p *run) topicThere(ctx context.Context) error {
	if len(p.pending) > 0 {
		p.quiet = 0
		return nil
	}
	if p.quiet++; p.quiet < quietFetches {
		return nil
	}
	now := p.d.now()
	if now.Before(p.nextTopicCheck) {
		return nil
	}
	p.nextTopicCheck = now.Add(p.cfg.TTL)
	meta, err := p.k.metadata(ctx, p.cfg, []string{p.inv.Topic})
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
	case err != nil:
		return nil
	case meta[p.inv.Topic].TopicID == p.k.sourceID && int(p.inv.Partition) < len(meta[p.inv.Topic].Partitions):
		return nil
	default:
		err = fmt.Errorf("topic %q was created again (a new topic ID)", p.inv.Topic)
	}
	return fmt.Errorf("%w: %s partition %d, released at offset %d: %w", errTopicGone, p.inv.Topic, p.inv.Partition, p.next, err)
}

// errLapsed: the lease reached validUntil while a record was in hand, which
// is left for after a renewal, unwritten (process).
var errLapsed = errors.New("lease not renewed in time: no sink write")

// arm sets due and lapsed as the clock has them now, and the timers that
// set them later: at until, and at validUntil. It runs once a poll, not a
// record, so a timer that fired for a time since moved on (a renewal) only
// costs the poll it cuts short.
func (p *run) arm(until time.Time) {
	now := p.d.now()
	p.lapsed.Store(!now.Before(p.validUntil))
	p.due.Store(!now.Before(until))
	p.dueTimer, p.dueAt = p.alarm(p.dueTimer, p.dueAt, until, &p.due)
	p.lapseTimer, p.lapseAt = p.alarm(p.lapseTimer, p.lapseAt, p.validUntil, &p.lapsed)
}

// alarm returns t set to raise flag at at: made at the first call, and
// moved when at is not was, the time it was set for.
func (p *run) alarm(t *time.Timer, was, at time.Time, flag *atomic.Bool) (*time.Timer, time.Time) {
	switch {
	case t == nil:
		t = time.AfterFunc(at.Sub(p.d.now()), func() { flag.Store(true); p.signal() })
	case !at.Equal(was):
		t.Reset(at.Sub(p.d.now()))
	}
	return t, at
}

// disarm stops the timers when the run ends: nothing of it outlives it.
func (p *run) disarm() {
	for _, t := range []*time.Timer{p.dueTimer, p.lapseTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

func (p *run) fetch(ctx context.Context, until time.Time) []*kgo.Record {
	pctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	if f := p.fly; f != nil {
		// A result of an action in flight ends the fetch: it is to be written.
		f.kick.Store(&cancel)
		defer f.kick.Store(nil)
		if len(f.done) > 0 {
			cancel()
		}
	}
	fs := p.k.cl.PollFetches(pctx)
	inLog := true
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		p.highWater = max(p.highWater, fp.HighWatermark)
		if len(fp.Records) > 0 && fp.Records[0].Offset != p.readTo() {
			inLog = p.stillInLog(fp)
		}
	})
	for _, e := range fs.Errors() {
		if !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled) {
			p.log.Warn("fetch", "topic", e.Topic, "partition", e.Partition, "err", e.Err)
		}
	}
	if !inLog {
		return nil
	}
	return fs.Records()
}

// stillInLog checks a fetch whose first record is not the next offset
// (once a batch, never a record) for a move franz-go made quietly on
// OFFSET_OUT_OF_RANGE (ConsumeResetOffset): up to the log start when
// retention passed the reader, or back to the start from past the log's
// end. A gap with the next offset still in the log is no loss: a
// transaction marker, an aborted or compacted record. Expired offsets are
// counted and the lease records the new position at the next step; from
// past the end the run starts again by -start, as inLog does, and the
// batch is dropped (false).
//
// With records in the window (inflight.go) the reading is past them, at
// readTo: offsets expired past it are counted, and the offset written moves
// past them as the window's records are written.
func (p *run) stillInLog(fp kgo.FetchTopicPartition) bool {
	first, want := fp.Records[0].Offset, p.readTo()
	switch {
	case want < 0:
		return true
	case first > want && want < fp.LogStartOffset:
		p.expire(want, min(first, fp.LogStartOffset))
		if want == p.next {
			p.next = min(first, fp.LogStartOffset)
		}
	case first < want && want > fp.HighWatermark:
		p.moveTo(p.pastEnd(fp.LogStartOffset, fp.HighWatermark))
		p.moved, p.nextCommit = true, p.d.now()
		return false
	default:
		return true
	}
	p.nextCommit = p.d.now()
	return true
}

// readTo is the next offset a fetch should start at: the next to write, or
// past the records in the window.
func (p *run) readTo() int64 {
	if f := p.fly; f != nil && f.n > 0 {
		return f.upto
	}
	return p.next
}

func (p *run) handle(ctx context.Context, r *kgo.Record) error {
	switch {
	case r.Offset < p.next:
		return nil // already handled; a fetch may overlap a reset
	case r.Offset >= p.alone[0] && r.Offset < p.alone[1]:
		return p.handleAlone(ctx, r)
	}
	return p.process(ctx, r)
}

// process sends a record through the action to the sink, or to the
// dead-letter topic.
func (p *run) process(ctx context.Context, r *kgo.Record) error {
	out, err := callAction(p.actx, p.act, p.cfg.ActionTimeout, r, p.out[:0])
	p.out = out[:0]
	return p.emit(ctx, r, out, err)
}

// emit sends what the action returned for r to the sink, or r to the
// dead-letter topic; r is then handled, unless the lease lapsed first.
func (p *run) emit(ctx context.Context, r *kgo.Record, out []*kgo.Record, err error) error {
	if p.lapsed.Load() {
		return errLapsed // the action outlasted the lease
	}
	p.records++
	if err != nil {
		switch derr := p.k.sink.deadLetter(ctx, r, err); {
		case errors.Is(derr, errNoDLQ):
			return fmt.Errorf("action failed at %s/%d offset %d (no -dlq set): %w", r.Topic, r.Partition, r.Offset, err)
		case derr != nil:
			return derr
		}
		p.deadLettered++
	}
	if len(out) > 0 && p.written == 0 && !p.handedAt.IsZero() {
		p.gap = p.d.now().Sub(p.handedAt)
		p.log.Info("first write after the hand-over", "from", p.handedFrom, "gap_ms", float64(p.gap.Microseconds())/1000)
	}
	for i, o := range out {
		if i > 0 && p.lapsed.Load() {
			// Lapsed while the sink took the record's first outputs: it is
			// handled again whole, and those are written twice.
			return errLapsed
		}
		// The partition keeps order per source partition at the sink; the
		// offset names the source of a record the sink refuses.
		o.Partition, o.Offset = r.Partition, r.Offset
		if err := p.k.sink.write(ctx, o); err != nil {
			return err
		}
		p.written++
	}
	p.next = r.Offset + 1
	return nil
}

// handleAlone handles a record read again after a sink refused one for
// good: with what came before it flushed first, and its own output flushed
// at once, so a refusal now is surely its own. The sink's refusal makes it
// a dead letter, like an action's error; with no -dlq, or if the
// dead-letter topic refuses it too, it is the run's error.
func (p *run) handleAlone(ctx context.Context, r *kgo.Record) error {
	if err := p.flush(ctx); err != nil {
		return err // an earlier record failed after all: read again
	}
	written, dead := p.written, p.deadLettered
	err := p.process(ctx, r)
	if err == nil {
		err = p.flush(ctx)
	}
	var refused *refusedError
	if errors.As(err, &refused) && refused.Topic != p.cfg.DLQ {
		p.next, p.written = r.Offset, written
		if _, err := p.reset(ctx); err != nil {
			return err
		}
		if err := p.vouch(ctx); err != nil {
			return err
		}
		if p.lapsed.Load() {
			return errLapsed
		}
		switch derr := p.k.sink.deadLetter(ctx, r, refused); {
		case derr == nil:
			p.next, p.deadLettered = r.Offset+1, p.deadLettered+1
			err = p.flush(ctx)
		case !errors.Is(derr, errNoDLQ):
			err = derr
		}
	}
	if !errors.As(err, &refused) {
		return err
	}
	// Nowhere to put it: the run ends before it, with nothing held.
	p.next, p.written, p.deadLettered = r.Offset, written, dead
	if _, rerr := p.reset(ctx); rerr != nil {
		return errors.Join(err, rerr)
	}
	where := fmt.Sprintf("%s/%d offset %d", r.Topic, r.Partition, r.Offset)
	if refused.Topic == p.cfg.DLQ {
		return fmt.Errorf("the dead-letter topic refuses the record at %s for good (skip it with baton ctl seek): %w", where, err)
	}
	return fmt.Errorf("the sink refuses the record at %s for good (no -dlq set; skip it with baton ctl seek, or set -dlq): %w", where, err)
}

// fail ends the run on an error: what reached the sink is committed and the
// lease released, so the next invocation starts at the record that failed.
func (p *run) fail(ctx context.Context, cause error) (outcome, error) {
	p.log.Error("run failed", "err", cause, "offset", p.next)
	fctx, cancel := p.endCtx(ctx)
	defer cancel()
	if err := p.flush(fctx); err != nil {
		return p.release(ctx, p.committed, errors.Join(cause, err))
	}
	return p.release(ctx, p.next, cause)
}

func earliest(t time.Time, more ...time.Time) time.Time {
	for _, m := range more {
		if m.Before(t) {
			t = m
		}
	}
	return t
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
// (earliest) or its end (latest, resolved to an offset now and committed
// before anything is read, so the next owner goes on from there even if
// nothing arrives meanwhile: unsaved). An offset outside the log is moved
// into it, and committed before anything is read too (inLog).
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
	if err := p.inLog(ctx); err != nil {
		return kgo.Offset{}, err
	}
	return kgo.NewOffset().At(p.next), nil
}

// inLog moves the run's start into the partition's log, said aloud: below
// the log start, retention deleted records nobody read (expire); past its
// end (a topic deleted and created again, a lease table restored from a
// backup), the log may not reach the offset for a long time, and records
// produced meanwhile would be skipped: the run starts again by -start.
// The broker's answer is not relied on: Kafka answers such a fetch with
// OFFSET_OUT_OF_RANGE, which franz-go resets quietly, and kfake has
// answered it as the end of the log. A moved start is committed before
// anything is read.
func (p *run) inLog(ctx context.Context) error {
	start, end, err := p.k.logBounds(ctx, p.cfg, p.inv.Topic, p.inv.Partition)
	if err != nil {
		return fmt.Errorf("the log's start and end: %w", err)
	}
	switch {
	case p.next < start:
		p.expire(p.next, start)
		p.startFrom(start)
	case p.next > end:
		p.startFrom(p.pastEnd(start, end))
	default:
		return nil
	}
	p.moved = true
	return nil
}

// expire says that retention deleted offsets [from, to) before they were
// read, and counts them (RecordsExpiredUnread).
func (p *run) expire(from, to int64) {
	p.log.Error("retention deleted records before they were read; going on from the log start",
		"from", from, "to", to, "count", to-from)
	p.expired += to - from
}

// pastEnd says that the next offset is past the log's end, and returns
// where -start begins again instead: the log's start, or its end (latest).
func (p *run) pastEnd(start, end int64) int64 {
	at := start
	if p.cfg.Start == startLatest {
		at = end
	}
	p.log.Error("the offset is past the end of the log (the topic was deleted and created again, or the lease record restored from a backup); starting again by -start",
		"offset", p.next, "end", end, "start", p.cfg.Start, "restart_at", at)
	return at
}

// unsaved reports whether the run starts at an offset it resolved itself
// (the Kafka group's, or -start latest's log end) that the lease record does
// not hold yet. Nothing is read until a commit records it: an owner that
// crashed before would leave the next one to resolve latest again, past
// what was produced meanwhile. (-start earliest needs no commit: the next
// owner finds the same start, unless retention removed those records.)
// A start inLog moved is unsaved too.
func (p *run) unsaved() bool {
	return p.moved || p.l.Offset == noOffset && p.from != noOffset
}

// startFrom makes at the run's first offset and the one it falls back to:
// a rewind or a failure before the first commit goes back to at, not to
// the start of the log.
func (p *run) startFrom(at int64) {
	p.next, p.from, p.committed = at, at, at
}

// margin is how long before the runtime's deadline the owner stops: enough
// for the slowest flush and commit seen so far, three times over, and never
// less than the floor.
func margin(floor, slowest time.Duration) time.Duration {
	return max(floor, 3*slowest)
}

// endCtx is the context of a run's last writes: a shutdown signal must not
// stop them, but the runtime's deadline still bounds them, with time left
// to close the clients and return before the runtime is killed.
func (p *run) endCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithoutCancel(ctx)
	if p.deadline.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, p.deadline.Add(-min(closeAllowance, p.cfg.MarginFloor/4)))
}

// closeAllowance is kept after the last write for closing clients; never
// more than a quarter of the margin, or the last writes get no time at all.
const closeAllowance = 150 * time.Millisecond

// leave ends an owned run that was not fenced: flush, then hand the baton to
// a waiting successor, or release it so the next invocation starts at once.
func (p *run) leave(ctx context.Context, why string) (outcome, error) {
	ctx, cancel := p.endCtx(ctx)
	defer cancel()
	p.settle(ctx)
	if p.seekUnsure {
		p.reread(ctx) // a seek that landed unheard moves the reading before it is handed over
	}
	if err := p.flush(ctx); err != nil {
		return p.release(ctx, p.committed, err)
	}
	// The record of the last commit or read is enough when it shows a live
	// ask: the hand-over is written with no read before it. Otherwise, or
	// when that successor was replaced meanwhile, the record is read first.
	if p.l.asked(p.d.now(), p.cfg.Skew) {
		if out, ok, err := p.handOver(ctx); ok {
			return out, err
		}
	}
	if l, err := loadOrNew(ctx, p.cfg, p.d.store, p.l.Key); err == nil {
		p.adopt(l)
	}
	if p.l.asked(p.d.now(), p.cfg.Skew) {
		if out, ok, err := p.handOver(ctx); ok {
			return out, err
		}
	}
	p.log.Info("releasing", "why", why)
	return p.release(ctx, p.next, nil)
}

// handOver gives the baton to the successor in the record, in one write.
// ok is false when it did not happen (the successor changed, or the store
// did not answer); the caller then goes on owning.
func (p *run) handOver(ctx context.Context) (out outcome, ok bool, err error) {
	if err := p.flush(ctx); err != nil {
		out, err := p.release(ctx, p.committed, err)
		return out, true, err
	}
	sctx, cancel := context.WithTimeout(ctx, p.cfg.StoreTimeout)
	defer cancel()
	n, err := p.d.store.handOver(sctx, p.l, p.next, p.d.now().Add(p.cfg.TTL).UnixMilli())
	switch {
	case err == nil:
		p.log.Info("baton handed over", "to", n.Owner, "new_epoch", n.Epoch, "offset", p.next)
		p.committed = p.next
		return p.outcome(endHanded), true, nil
	case errors.Is(err, errFenced):
		return p.fenced(ctx), true, nil
	case errors.Is(err, errTaken):
		return outcome{}, false, nil
	}
	// Unknown outcome (the store is slow or down): the successor may own
	// the partition now. Write nothing until a commit says the lease is
	// still ours (or fenced); a later step tries the hand-over again.
	p.backOff("hand over", err)
	p.validUntil = p.d.now()
	p.lapsed.Store(true)
	return outcome{}, false, nil
}

// release records offset and state released. cause, when set, is the error
// that ended the run and is returned.
func (p *run) release(ctx context.Context, offset int64, cause error) (outcome, error) {
	ctx, cancel := p.endCtx(ctx)
	defer cancel()
	sctx, cancel := context.WithTimeout(ctx, p.cfg.StoreTimeout)
	defer cancel()
	err := p.d.store.release(sctx, p.l, offset)
	switch {
	case errors.Is(err, errFenced):
		return p.fenced(ctx), cause
	case err != nil:
		// Still owned with the last commit's offset: the next invocation
		// takes it once the lease expires.
		p.log.Error("release failed; the lease expires on its own", "err", err, "expires_at", p.l.ExpiresAt)
		return p.outcome(endError), errors.Join(cause, err)
	}
	p.committed = offset
	if cause != nil {
		return p.outcome(endError), cause
	}
	return p.outcome(endReleased), nil
}

// fenced ends a run whose epoch is gone: it drops what the sink holds and
// writes nothing more. When the record itself is gone (a Redis restarted
// without persistence, a deleted item) or went back to an older epoch (a
// failover that lost writes), nobody newer owns the partition: the run ends
// lost, and the next one starts from the record's offset, or the Kafka
// group's if it has none.
func (p *run) fenced(ctx context.Context) outcome {
	p.k.sink.abort(ctx)
	if p.vanished(ctx) {
		p.log.Warn("fenced: the lease record is gone or went back to an older epoch; nobody newer owns the partition", "group", p.cfg.Group, "offset", p.committed)
		return p.outcome(endLost)
	}
	p.log.Warn("fenced: a newer owner holds the lease; stopping without writing")
	return p.outcome(endFenced)
}

// vanished reports whether the lease record no longer exists, or holds an
// epoch older than the owner's: epochs never go down unless the store lost writes.
func (p *run) vanished(ctx context.Context) bool {
	ctx, cancel := p.endCtx(ctx)
	defer cancel()
	sctx, cancel := context.WithTimeout(ctx, p.cfg.StoreTimeout)
	defer cancel()
	l, err := p.d.store.load(sctx, p.l.Key)
	return errors.Is(err, errNotFound) || err == nil && l.Epoch < p.l.Epoch
}

// countsSince returns the run's counts since *last, and moves *last on.
func (p *run) countsSince(last *figures) figures {
	now := figures{int64(p.records), int64(p.written), int64(p.deadLettered), p.calls.Load(), int64(p.rewound), p.expired}
	d := figures{now.in - last.in, now.out - last.out, now.dead - last.dead, now.calls - last.calls, now.rewinds - last.rewinds, now.expired - last.expired}
	*last = now
	return d
}

// lag is how far the owner is behind the partition's end: 0 on an empty
// partition, where the next offset is still unknown (-1).
func (p *run) lag() int64 { return max(0, p.highWater-max(p.next, 0)) }

// progress logs one status line: where the owner is, how far behind, and
// its rate since the last line.
func (p *run) progress(now time.Time) {
	since := now.Sub(p.reported)
	if p.reported.IsZero() {
		since = now.Sub(p.started)
	}
	rate := 0.0
	if since > 0 {
		rate = float64(p.records-p.reportedRecords) / since.Seconds()
	}
	p.reported, p.reportedRecords = now, p.records
	p.log.Info("progress", "offset", p.committed, "lag", p.lag(), "records_per_s", math.Round(rate),
		"records", p.records, "written", p.written, "dead_lettered", p.deadLettered)
}

// emitMetrics writes one EMF line: counts since the previous line, lag and
// the slowest commit now. It is called once a minute and when the run ends.
func (p *run) emitMetrics() {
	if p.d.emf == nil {
		return
	}
	d := p.countsSince(&p.sent)
	values := map[string]any{
		"RecordsIn": d.in, "RecordsOut": d.out, "DeadLettered": d.dead, "LeaseStoreCalls": d.calls, "SinkRewinds": d.rewinds,
		"Lag":           p.lag(),
		"CommitLatency": float64(p.slowestCommit.Microseconds()) / 1000,
	}
	if d.expired > 0 { // rare: a metric of its own only when it happens
		values["RecordsExpiredUnread"] = d.expired
	}
	if p.gap > 0 {
		values["HandoffGap"] = float64(p.gap.Microseconds()) / 1000
		p.gap = 0
	}
	p.slowestCommit = 0
	writeEMF(p.d.emf, p.d.now(), map[string]string{
		"Group": p.cfg.Group, "Topic": p.inv.Topic, "Partition": strconv.Itoa(int(p.inv.Partition)),
	}, values)
}

// publish adds what the run did since it last published.
func (p *run) publish() {
	if p.d.prom == nil {
		return
	}
	d := p.countsSince(&p.published)
	r := p.d.prom
	r.mu.Lock()
	defer r.mu.Unlock()
	k := promKey{p.cfg.Group, p.inv.Topic, p.inv.Partition}
	f := r.parts[k]
	if f == nil {
		f = &promFigures{}
		r.parts[k] = f
	}
	f.in, f.out, f.dead, f.calls, f.rewinds = f.in+d.in, f.out+d.out, f.dead+d.dead, f.calls+d.calls, f.rewinds+d.rewinds
	f.expired += d.expired
	f.lag = p.lag()
}
