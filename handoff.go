// handoff.go holds everything before an invocation owns its partition: the
// tick rules before any Kafka connection, take, ask and wait, and the take
// by force when the owner's lease ends first.

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
	endLost      = "lost"        // fenced because the lease record vanished: nobody owns the partition
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
	// Partitions is the answer to an event naming "partitions": an
	// outcome a partition, and nothing else (partitions.go).
	Partitions []outcome `json:"partitions,omitempty"`
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
	preLog := log.With("epoch", l.Epoch) // until it owns the lease: the epoch it saw
	me = claimAt(me.Owner, me.Tick, d.now(), cfg.Skew)
	if err := l.tickVerdict(me); err != nil {
		return exitEarly(preLog, out, err), nil
	}
	// An ask is written before any Kafka connection, so a second delivery
	// of the same tick racing it to a running owner loses on it without opening
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
	l, from, err := acquire(ctx, cfg, d, preLog, l, me, connectOnce)
	out.WaitedMs = d.now().Sub(start).Milliseconds()
	switch {
	case errors.Is(err, errDuplicate) || errors.Is(err, errStale):
		return exitEarly(preLog, out, err), nil
	case errors.Is(err, errGaveUp):
		out.End = endGaveUp
		preLog.Warn("gave up waiting for the baton", "waited_ms", out.WaitedMs)
		return out, nil
	case err != nil:
		return out, err
	}
	p := newRun(cfg, d, log.With("epoch", l.Epoch), inv, l, k)
	p.deadline, _ = ctx.Deadline()
	p.calls = calls
	if from != "" {
		// The old owner wrote the new expiry as its clock's hand-over time + TTL.
		p.handedAt, p.handedFrom = time.UnixMilli(l.ExpiresAt).Add(-cfg.TTL), from
	}
	defer p.publish()
	defer p.emitMetrics()
	waited := out.WaitedMs
	out, err = p.own(ctx)
	out.WaitedMs = waited // the run's outcome knows nothing of the wait before it
	p.leaveGroup(ctx, out.End)
	return out, err
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
// it waits it keeps its ask fresh. It returns the lease it owns, and who
// handed it over ("" when it was taken); on every other way out it leaves
// no ask of its own behind. With d.takeOnly it never asks: a lease somebody
// else holds ends it as stale.
func acquire(ctx context.Context, cfg *config, d *deps, log *slog.Logger, l lease, me claim, connect func() error) (lease, string, error) {
	w := &waiter{cfg: cfg, d: d, key: l.Key} // told of a hand-over where the store can (watch.go)
	defer w.close()
	prev := l.Owner // who held it before: the one who hands it over
	for {
		me = claimAt(me.Owner, me.Tick, d.now(), cfg.Skew)
		if l.Owner == me.Owner && l.State == stateRunning {
			// Whoever receives the baton is connected: an ask whose
			// answer was lost may not have connected yet.
			if err := connect(); err != nil {
				giveBack(ctx, cfg, d, log, l.Key, me)
				return l, "", err
			}
			log.Info("baton received", "owned_epoch", l.Epoch, "offset", l.Offset, "from", prev)
			return l, prev, nil
		}
		if err := l.tickVerdict(me); err != nil {
			return l, "", err
		}
		var err error
		sctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
		switch {
		case l.free(d.now(), cfg.Skew):
			if err := connect(); err != nil { // before the take: a bad topic or password leaves the lease alone
				cancel()
				giveBack(ctx, cfg, d, log, l.Key, me)
				return l, "", err
			}
			var got lease
			if got, err = d.store.take(sctx, l.Key, l, me, d.now().Add(cfg.TTL).UnixMilli()); err == nil {
				cancel()
				log.Info("lease taken", "owned_epoch", got.Epoch, "offset", got.Offset, "previous_owner", l.Owner, "forced", l.Epoch > 0 && l.State == stateRunning)
				return got, "", nil
			}
		case d.takeOnly:
			err = errStale // somebody took it first: a fleet asks only by choice
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
					return l, "", err
				}
			}
		}
		cancel()
		if errors.Is(err, errDuplicate) || errors.Is(err, errStale) {
			return l, "", err
		}
		if err != nil && !errors.Is(err, errTaken) {
			log.Warn("lease store", "err", err)
		}
		if err := w.wait(ctx, l); err != nil {
			giveBack(ctx, cfg, d, log, l.Key, me)
			return l, "", err
		}
		if next, err := loadOrNew(ctx, cfg, d.store, l.Key); err == nil {
			if next.Owner != me.Owner {
				prev = next.Owner
			}
			l = next
		} else {
			log.Warn("lease store", "err", err)
		}
	}
}

// giveBack leaves nothing of an invocation's in the record when it goes
// without owning: it withdraws its ask, and releases the lease if the baton
// reached it meanwhile (or it took the lease and cannot use it), at the
// offset the lease holds.
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
