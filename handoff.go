// handoff.go holds the protocol around one partition: the tick check before
// any Kafka connection, take, ask and wait, force-take, hand-over, release,
// and the deadline margin.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// An invocation is one run of baton over one partition.
type invocation struct {
	Topic     string
	Partition int32
	Tick      int64  // the schedule tick (unix ms); two deliveries of one tick share it
	Owner     string // unique to this run
}

func leaseKey(group, topic string, partition int32) string {
	return fmt.Sprintf("%s/%s/%d", group, topic, partition)
}

// Ends of an invocation, as reported in its outcome.
const (
	endDuplicate = "duplicate"   // a second delivery of a tick: exited before Kafka
	endStale     = "stale"       // a newer tick owns or asked: exited before Kafka
	endHanded    = "handed-over" // gave the baton to a successor
	endReleased  = "released"    // deadline or shutdown with nobody waiting
	endFenced    = "fenced"      // a newer epoch took the lease: wrote nothing more
	endGaveUp    = "gave-up"     // ran out of time waiting for the baton
	endError     = "error"
)

// An outcome is what an invocation did: the handler's answer and one log line.
type outcome struct {
	Key          string `json:"key"`
	Owner        string `json:"owner"`
	Epoch        int64  `json:"epoch"`
	From         int64  `json:"from_offset"`
	To           int64  `json:"to_offset"`
	Records      int    `json:"records"`
	Written      int    `json:"written"`
	DeadLettered int    `json:"dead_lettered"`
	Rewinds      int    `json:"rewinds"` // the sink failed and the owner read again from its last commit
	End          string `json:"end"`
	WaitedMs     int64  `json:"waited_ms"`
}

// runInvocation is one invocation from start to end: it leaves the lease
// handed over, released, or owned with a correct offset and an expiry that
// lets the next invocation take it.
func runInvocation(ctx context.Context, cfg *config, d *deps, inv invocation) (out outcome, err error) {
	defer func() {
		if err != nil && out.End == "" {
			out.End = endError
		}
	}()
	key := leaseKey(cfg.Group, inv.Topic, inv.Partition)
	log := d.log.With("topic", inv.Topic, "partition", inv.Partition, "owner", inv.Owner, "tick", inv.Tick)
	out = outcome{Key: key, Owner: inv.Owner, From: noOffset, To: noOffset}
	me := claim{Owner: inv.Owner, Tick: inv.Tick}
	calls := new(atomic.Int64)
	counting := *d
	counting.store = counted{d.store, calls}
	d = &counting

	if err := futureTick(inv.Tick, d.now(), cfg.Skew); err != nil {
		log.Error("tick refused; nothing written", "err", err)
		return out, err
	}
	l, err := loadOrNew(ctx, cfg, d.store, key)
	if err != nil {
		return out, err
	}
	seen := log.With("epoch", l.Epoch) // until it owns the lease: the epoch it saw
	me = claimAt(me.Owner, me.Tick, d.now(), cfg.Skew)
	if err := l.tickCheck(me); err != nil {
		return exitEarly(seen, out, err), nil
	}
	// An ask is written before any Kafka connection, so a second delivery
	// of my tick racing me to a running owner loses on it without opening
	// one; a take comes after connecting, so a bad topic, partition or
	// password never takes a free lease.
	var k *kafka
	defer func() {
		if k != nil {
			k.close()
		}
	}()
	connectOnce := func() (err error) {
		if k == nil {
			k, err = connect(ctx, cfg, d, inv)
		}
		return err
	}

	start := d.now()
	l, handed, err := acquire(ctx, cfg, d, seen, l, me, connectOnce)
	out.WaitedMs = d.now().Sub(start).Milliseconds()
	switch {
	case errors.Is(err, errDuplicate) || errors.Is(err, errStale):
		return exitEarly(seen, out, err), nil
	case errors.Is(err, errGaveUp):
		out.End = endGaveUp
		seen.Warn("gave up waiting for the baton", "waited_ms", out.WaitedMs)
		return out, nil
	case err != nil:
		return out, err
	}
	p := newRun(cfg, d, log.With("epoch", l.Epoch), inv, l, k)
	p.deadline, _ = ctx.Deadline()
	p.calls = calls
	if handed {
		// The old owner wrote my expiry as its clock's hand-over time + TTL.
		p.handedAt = time.UnixMilli(l.ExpiresAt).Add(-cfg.TTL)
	}
	defer p.publish()
	defer p.emitMetrics()
	return p.own(ctx)
}

// errFutureTick is bad input: a stored tick from the future would make
// every later tick look stale, so such a tick is refused before any write.
var errFutureTick = errors.New("tick is in the future")

func futureTick(tick int64, now time.Time, skew time.Duration) error {
	if limit := now.Add(skew); tick > limit.UnixMilli() {
		return fmt.Errorf("%w: %s is after this invocation's clock (%s) plus the skew allowance %s",
			errFutureTick, time.UnixMilli(tick).UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), skew)
	}
	return nil
}

func exitEarly(log *slog.Logger, out outcome, err error) outcome {
	out.End = endStale
	if errors.Is(err, errDuplicate) {
		out.End = endDuplicate
	}
	log.Info("exit before any Kafka connection", "why", err.Error())
	return out
}

func loadOrNew(ctx context.Context, cfg *config, s store, key string) (lease, error) {
	sctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	defer cancel()
	l, err := s.load(sctx, key)
	if errors.Is(err, errNotFound) {
		return lease{Key: key}, nil
	}
	return l, err
}

var errGaveUp = errors.New("no time left to wait for the baton")

// acquire takes the lease when it is free, and otherwise asks for it and
// waits until the owner hands it over or its lease runs out (then takes it
// by force, fencing the old owner): told at once where the store can tell,
// else polling. It connects to Kafka before a take and
// right after an ask, so a successor is warm when the baton arrives. While
// it waits it keeps its ask fresh. It returns the lease it owns, and whether
// it was handed over; on every other way out it leaves no ask of its own
// behind.
func acquire(ctx context.Context, cfg *config, d *deps, log *slog.Logger, l lease, me claim, connect func() error) (lease, bool, error) {
	w := &waiter{cfg: cfg, d: d, key: l.Key} // told of a hand-over where the store can (watch.go)
	defer w.close()
	for {
		me = claimAt(me.Owner, me.Tick, d.now(), cfg.Skew)
		if l.Owner == me.Owner && l.State == stateRunning {
			// Whoever receives the baton is connected: an ask whose
			// answer was lost may not have connected yet.
			if err := connect(); err != nil {
				giveBack(ctx, cfg, d, log, l.Key, me)
				return l, false, err
			}
			log.Info("baton received", "owned_epoch", l.Epoch, "offset", l.Offset)
			return l, true, nil
		}
		if err := l.tickCheck(me); err != nil {
			return l, false, err
		}
		var err error
		sctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
		switch {
		case l.free(d.now(), cfg.Skew):
			if err := connect(); err != nil { // before the take: a bad topic or password leaves the lease alone
				cancel()
				giveBack(ctx, cfg, d, log, l.Key, me)
				return l, false, err
			}
			var got lease
			if got, err = d.store.take(sctx, l.Key, l, me, d.now().Add(cfg.TTL).UnixMilli()); err == nil {
				cancel()
				log.Info("lease taken", "owned_epoch", got.Epoch, "offset", got.Offset, "previous_owner", l.Owner, "forced", l.Epoch > 0 && l.State == stateRunning)
				return got, false, nil
			}
		case l.Successor != me.Owner || time.UnixMilli(l.SuccessorUntil).Sub(d.now()) < cfg.AskTTL/2:
			// A first ask, or one kept fresh: an ask that is not renewed
			// lapses, so a successor that dies here never gets the baton.
			first := l.Successor != me.Owner
			err = d.store.ask(sctx, l.Key, l.Epoch, me, d.now().Add(cfg.AskTTL).UnixMilli())
			if err == nil && first {
				log.Info("asked for the baton", "owner_epoch", l.Epoch, "current_owner", l.Owner)
			}
			// Connected whenever the ask may stand, a lost answer included.
			if err == nil || !isVerdict(err) {
				if err := connect(); err != nil {
					cancel()
					giveBack(ctx, cfg, d, log, l.Key, me)
					return l, false, err
				}
			}
		}
		cancel()
		if errors.Is(err, errDuplicate) || errors.Is(err, errStale) {
			return l, false, err
		}
		if err != nil && !errors.Is(err, errTaken) {
			log.Warn("lease store", "err", err)
		}
		if err := w.wait(ctx, l); err != nil {
			giveBack(ctx, cfg, d, log, l.Key, me)
			return l, false, err
		}
		if next, err := loadOrNew(ctx, cfg, d.store, l.Key); err == nil {
			l = next
		} else {
			log.Warn("lease store", "err", err)
		}
	}
}

// giveBack leaves nothing of mine in the record when I go without owning:
// it withdraws my ask, and releases the lease if it reached me meanwhile
// (or I took it and cannot use it), at the offset it holds.
func giveBack(ctx context.Context, cfg *config, d *deps, log *slog.Logger, key string, me claim) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.StoreTimeout)
	defer cancel()
	l, err := d.store.withdraw(sctx, key, me)
	if err == nil && l.Owner == me.Owner && l.State == stateRunning {
		err = d.store.release(sctx, l, l.Offset)
	}
	if err != nil && !errors.Is(err, errNotFound) {
		log.Warn("could not take back my claim; it lapses with the lease", "err", err)
	}
}

// waitPoll sleeps one poll interval, or gives up when the invocation could
// not do useful work after it.
func waitPoll(ctx context.Context, cfg *config, d *deps) error {
	if dl, ok := ctx.Deadline(); ok && dl.Sub(d.now()) < 2*cfg.MarginFloor {
		return errGaveUp
	}
	t := time.NewTimer(cfg.WaitPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errGaveUp
	case <-t.C:
		return nil
	}
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
	if err := p.flush(ctx); err != nil {
		return p.release(ctx, p.committed, err)
	}
	// The record of my last commit or check is enough when it shows a live
	// ask: the hand-over is written with no read before it. Otherwise, or
	// when that successor was replaced meanwhile, the record is read first.
	if p.l.asked(p.d.now(), p.cfg.Skew) {
		if out, ok, err := p.handOver(ctx); ok {
			return out, err
		}
	}
	if l, err := loadOrNew(ctx, p.cfg, p.d.store, p.l.Key); err == nil && l.Epoch == p.l.Epoch && l.Owner == p.l.Owner {
		p.l = l
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
	// Unknown outcome (the store is slow or down): go on owning; a later
	// step tries again, and sink writes stop if the lease cannot be renewed.
	p.backOff("hand over", err)
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
// writes nothing more.
func (p *run) fenced(ctx context.Context) outcome {
	p.k.sink.abort(ctx)
	p.log.Warn("fenced: a newer owner holds the lease; stopping without writing")
	return p.outcome(endFenced)
}
