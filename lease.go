// lease.go holds the lease record, the store contract every backend meets,
// its errors, and the wrapper that settles writes whose answer was lost.

package main

import (
	"context"
	"errors"
	"time"
)

// A lease is the record kept per group/topic/partition. It says who reads
// the partition (owner, fenced by epoch) and where reading resumes (offset).
//
// Times are unix milliseconds taken from the writer's clock. Clocks only
// decide when a lease looks dead enough to take; no write depends on them.
type lease struct {
	Key            string
	Owner          string // the invocation that owns the partition
	Tick           int64  // the schedule tick that started Owner
	Epoch          int64  // +1 on every change of owner, never reused; 0 means no record
	Offset         int64  // next offset to read; -1 until the first commit
	State          string // stateRunning or stateReleased
	Successor      string // an invocation asking for the baton, or ""
	SuccessorTick  int64
	SuccessorUntil int64 // the ask's end: a waiting successor extends it, a dead one lets it lapse
	ExpiresAt      int64 // the owner's lease end
	Seek           int64 // an operator's request to read from here next; noOffset: none
	Paused         bool  // an operator's request to stop reading (the lease is kept)
}

const (
	stateRunning  = "running"
	stateReleased = "released"
	noOffset      = -1
)

// A claim is one invocation's identity as it writes to the store.
type claim struct {
	Owner string
	Tick  int64
	// Cutoff is the writer's clock (unix ms) less the skew allowance: a
	// lease or an ask that ended before it is dead, and its tick no longer
	// makes an equal tick a duplicate.
	Cutoff int64
}

// claimAt is c as seen at now: dead leases and asks are those that ended
// more than skew ago.
func claimAt(owner string, tick int64, now time.Time, skew time.Duration) claim {
	return claim{Owner: owner, Tick: tick, Cutoff: now.Add(-skew).UnixMilli()}
}

// expired reports whether the lease's owner is gone, allowing for skew
// between the owner's clock and ours.
func (l lease) expired(now time.Time, skew time.Duration) bool {
	return now.UnixMilli() > l.ExpiresAt+skew.Milliseconds()
}

// free reports whether the lease can be taken without asking.
func (l lease) free(now time.Time, skew time.Duration) bool {
	return l.Epoch == 0 || l.State == stateReleased || l.expired(now, skew)
}

// asked reports whether a successor's ask is live: a successor that died
// while waiting stops extending it, and the owner then keeps reading.
func (l lease) asked(now time.Time, skew time.Duration) bool {
	return l.Successor != "" && l.SuccessorUntil >= now.Add(-skew).UnixMilli()
}

// tickVerdict tells whether an invocation with this tick may go on against the
// record. One older than the owner's tick, or than a live ask's, has been
// overtaken (stale). One that shares its tick with a live owner or a live ask
// is a second delivery of that tick (duplicate). One that shares its tick
// with a dead owner is Lambda retrying the invocation that died, and may go
// on; a dead ask counts for nothing.
func (l lease) tickVerdict(c claim) error {
	if l.Owner == c.Owner || (l.Successor == c.Owner && c.Owner != "") {
		return nil
	}
	ownerLive := l.State == stateRunning && l.ExpiresAt >= c.Cutoff
	if err := tickRule(l.Tick, c.Tick, ownerLive); err != nil {
		return err
	}
	if l.Successor != "" && l.SuccessorUntil >= c.Cutoff {
		return tickRule(l.SuccessorTick, c.Tick, true)
	}
	return nil
}

// tickRule compares one tick on the record with the invocation's. A zero tick is no
// tick, so two zeros are not duplicates.
func tickRule(theirs, mine int64, live bool) error {
	switch {
	case theirs > mine:
		return errStale
	case theirs == mine && theirs != 0 && live:
		return errDuplicate
	}
	return nil
}

// Errors shared by every store. Callers test them with errors.Is; backends
// wrap them with the key and the step.
var (
	errNotFound  = errors.New("lease not found")
	errDuplicate = errors.New("duplicate tick: this tick already owns or asked for the lease")
	errStale     = errors.New("stale tick: a newer tick owns or asked for the lease")
	errTaken     = errors.New("lease changed since it was read")      // could not get it
	errFenced    = errors.New("fenced: a newer epoch owns the lease") // no longer hold it
)

// store is the lease store contract: one method a protocol step, each a
// single conditional write on one key (never a scan). A write that fails its
// condition changes nothing. Backends: lease_dynamo.go, lease_redis.go and
// memStore here; all pass the same conformance suite (lease_test.go).
type store interface {
	// load returns the record, or errNotFound.
	load(ctx context.Context, key string) (lease, error)
	// take makes c the owner with epoch seen.Epoch+1, state running and the
	// record's offset kept (noOffset for a new record), if the record is
	// still at seen.Epoch (absent when seen.Epoch is 0) with seen.ExpiresAt,
	// and no other invocation with a tick >= c.Tick asked meanwhile. It
	// fails with errDuplicate, errStale or errTaken. The expiry is what the
	// taker judged: an owner whose renewal landed after the taker's read is
	// alive, and the take must not land over it.
	take(ctx context.Context, key string, seen lease, c claim, expiresAt int64) (lease, error)
	// ask records c as the successor, its ask live until the given time,
	// without changing the epoch, if the record is still at epoch and c
	// passes tickVerdict (a dead ask is replaced; c's own is extended). It
	// fails with errDuplicate, errStale or errTaken (epoch moved on).
	ask(ctx context.Context, key string, epoch int64, c claim, until int64) error
	// handOver moves the lease from l.Owner to l.Successor in one write:
	// epoch+1, the given offset, state running, successor cleared. It fails
	// with errFenced when l.Owner no longer holds l.Epoch, and errTaken when
	// the successor changed.
	handOver(ctx context.Context, l lease, offset, expiresAt int64) (lease, error)
	// commit records offset and extends the lease (a renewal when the offset
	// did not move) if l.Owner still holds l.Epoch; otherwise errFenced.
	// It returns the record as written, so the owner sees a successor.
	commit(ctx context.Context, l lease, offset, expiresAt int64) (lease, error)
	// release records offset and state released if l.Owner still holds
	// l.Epoch; otherwise errFenced. A waiting successor then takes it.
	release(ctx context.Context, l lease, offset int64) error
	// withdraw takes back c's ask: it clears the successor if it is still
	// c (any epoch), and otherwise changes nothing. It returns the record,
	// so a caller to whom the baton arrived meanwhile sees it and releases.
	withdraw(ctx context.Context, key string, c claim) (lease, error)
	// control is an operator's write (baton ctl): it sets seek and paused,
	// if the record is still at l.Epoch with l.Owner (any state) and its
	// seek and paused are still l.Seek and l.Paused; otherwise errFenced,
	// errTaken (read again: the owner applied a seek, or another operator
	// wrote), or errNotFound when there is no record yet. Records written
	// before these fields existed read as no seek, not paused.
	control(ctx context.Context, l lease, seek int64, paused bool) (lease, error)
	// reset is an operator's repair of a record that holds a tick from the
	// future (written before such ticks were refused), which would make
	// every real tick look stale: tick 0 and successor cleared, all else
	// kept, if the record is still at l.Epoch with l.Owner; otherwise
	// errFenced, or errNotFound. It never releases: an operator's clock
	// cannot tell a live owner from a dead one, and a live one goes on and
	// hands over to the next real tick, while a dead one's lease expires.
	reset(ctx context.Context, l lease) (lease, error)
}

// The owner obeys a seek with its next commit: commit with l.Seek set (the
// seek it saw) requires the record's seek to be the same (errTaken when a
// newer seek came meanwhile) and clears it in the same write. take and
// handOver keep seek and paused as they are.

// settleTimeout bounds the read that settles a write whose answer was lost.
const settleTimeout = 3 * time.Second

// settled wraps a backend so that a write whose answer is lost (timeout,
// connection reset, 5xx) is settled by reading the record back: if it shows
// what the write meant to leave there, the write succeeded.
type settled struct{ store }

// settle returns the read-back record when it shows what the write meant,
// or the write's own error when it does not (or the read fails too).
func (s settled) settle(ctx context.Context, key string, err error, wrote func(lease) bool) (lease, error) {
	if err == nil || isVerdict(err) {
		return lease{}, err
	}
	// The caller's context may be what ran out; the read gets its own time.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	cur, rerr := s.store.load(rctx, key)
	if rerr == nil && wrote(cur) {
		return cur, nil
	}
	return lease{}, err
}

// close closes the backend's client, where it has one.
func (s settled) close() error {
	if c, ok := s.store.(interface{ close() error }); ok {
		return c.close()
	}
	return nil
}

// isVerdict reports whether err is the store's answer (a condition that
// failed), as opposed to a lost answer.
func isVerdict(err error) bool {
	for _, e := range []error{errNotFound, errDuplicate, errStale, errTaken, errFenced} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s settled) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	l, err := s.store.take(ctx, key, seen, c, exp)
	if err == nil {
		return l, nil
	}
	return s.settle(ctx, key, err, func(cur lease) bool {
		return cur.Owner == c.Owner && cur.Tick == c.Tick && cur.Epoch > seen.Epoch
	})
}

func (s settled) ask(ctx context.Context, key string, epoch int64, c claim, until int64) error {
	err := s.store.ask(ctx, key, epoch, c, until)
	_, err = s.settle(ctx, key, err, func(cur lease) bool {
		return cur.Epoch == epoch && cur.Successor == c.Owner && cur.SuccessorUntil == until
	})
	return err
}

func (s settled) handOver(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	n, err := s.store.handOver(ctx, l, offset, exp)
	if err == nil {
		return n, nil
	}
	return s.settle(ctx, l.Key, err, func(cur lease) bool {
		return cur.Epoch == l.Epoch+1 && cur.Owner == l.Successor && cur.Offset == offset
	})
}

func (s settled) commit(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	n, err := s.store.commit(ctx, l, offset, exp)
	if err == nil {
		return n, nil
	}
	return s.settle(ctx, l.Key, err, func(cur lease) bool {
		return cur.Epoch == l.Epoch && cur.Owner == l.Owner && cur.Offset == offset && cur.ExpiresAt == exp &&
			(l.Seek == noOffset || cur.Seek == noOffset)
	})
}

func (s settled) release(ctx context.Context, l lease, offset int64) error {
	err := s.store.release(ctx, l, offset)
	_, err = s.settle(ctx, l.Key, err, func(cur lease) bool {
		return cur.Epoch == l.Epoch && cur.Owner == l.Owner && cur.State == stateReleased && cur.Offset == offset
	})
	return err
}

func (s settled) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	n, err := s.store.control(ctx, l, seek, paused)
	if err == nil {
		return n, nil
	}
	return s.settle(ctx, l.Key, err, func(cur lease) bool {
		return cur.Epoch == l.Epoch && cur.Owner == l.Owner && cur.Seek == seek && cur.Paused == paused
	})
}

func (s settled) reset(ctx context.Context, l lease) (lease, error) {
	n, err := s.store.reset(ctx, l)
	if err == nil {
		return n, nil
	}
	return s.settle(ctx, l.Key, err, func(cur lease) bool {
		return cur.Epoch == l.Epoch && cur.Owner == l.Owner && cur.Tick == 0 && cur.Successor == ""
	})
}

func (s settled) withdraw(ctx context.Context, key string, c claim) (lease, error) {
	n, err := s.store.withdraw(ctx, key, c)
	if err == nil {
		return n, nil
	}
	return s.settle(ctx, key, err, func(cur lease) bool { return cur.Successor != c.Owner })
}
