// inflight.go runs the action on many records of a partition at once
// (-concurrency N above 1), never two records of one key together, and
// gives their results back in offset order: the sink, the commits and every
// rule of the run then see what they see with one record at a time.

package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// inFlight is one record in the window: its action's result once done.
type inFlight struct {
	r        *kgo.Record
	lane     int
	out      []*kgo.Record // what the action returned; its memory is reused
	err      error
	panicked any
	done     bool
	behind   *inFlight // the next record of its lane, started when this one is done
}

// inflight is the window of one run: the records read and not yet written,
// in offset order, and the workers that run their actions. Everything but
// the workers' action calls happens on the run's goroutine.
//
// Records are put in lanes by a hash of their key; a record starts only
// when the one before it in its lane is done, so the records of one key
// are in the action one at a time and in offset order. Two keys may share
// a lane, which only orders them. Records without a key share one lane:
// their order is kept, as the producer wrote it.
//
// The window holds at most limit records; when it is full, nothing more is
// fetched (a slow key holds back the records behind it, and then the
// fetching). Results leave it in offset order only, so a record is written
// only after every record before it, and the offset committed covers
// nothing whose action has not finished.
type inflight struct {
	act     actionFunc
	timeout time.Duration // -action-timeout: 0 for none
	ctx     context.Context
	cancel  context.CancelFunc
	work    chan *inFlight // to the workers
	done    chan *inFlight // from the workers
	wg      sync.WaitGroup
	wake    chan struct{} // a result came or a timer fired: the run's wait ends
	kick    atomic.Pointer[context.CancelFunc]

	ring    []*inFlight // the window, from head, n of them
	head, n int
	tails   []*inFlight // per lane: its newest record not done yet
	seed    maphash.Seed
	running int          // records with the workers
	holding bool         // start no record waiting in a lane (settle, drop)
	upto    int64        // the offset after the last record put in the window
	free    []*inFlight  // slots to reuse
	slowest atomic.Int64 // the longest action call, ns: counts towards the deadline margin
}

// windowPerWorker is the window's size per worker: room for the records
// that wait behind a slower one before fetching pauses.
const windowPerWorker = 4

// newInflight starts n workers for act. ctx is the actions' context: a
// shutdown signal does not cancel it (an action cut short would send its
// record to the dead letters); close does.
func newInflight(ctx context.Context, act actionFunc, n int, timeout time.Duration, wake chan struct{}) *inflight {
	limit := n * windowPerWorker
	f := &inflight{act: act, timeout: timeout, work: make(chan *inFlight, limit), done: make(chan *inFlight, limit),
		wake: wake, ring: make([]*inFlight, limit), tails: make([]*inFlight, 4*limit), seed: maphash.MakeSeed(), upto: noOffset}
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.wg.Add(n)
	for range n {
		go f.worker()
	}
	return f
}

// close ends the workers once their calls return; the run waits for them.
func (f *inflight) close() {
	f.cancel()
	close(f.work)
	f.wg.Wait()
}

func (f *inflight) worker() {
	defer f.wg.Done()
	for s := range f.work {
		f.call(s)
		f.done <- s // never blocks: done holds the whole window
		f.signal()
	}
}

// signal wakes the run: its wait, or the fetch it is in.
func (f *inflight) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
	if c := f.kick.Load(); c != nil {
		(*c)()
	}
}

// errActionTimeout: the action took longer than -action-timeout.
var errActionTimeout = errors.New("the action took longer than -action-timeout")

// call runs the action on s's record, catching a panic for the run to
// raise again on its own goroutine.
func (f *inflight) call(s *inFlight) {
	if err := f.ctx.Err(); err != nil {
		s.err = err // the run ended: what was queued is not called
		return
	}
	start := time.Now()
	defer func() {
		for took, was := time.Since(start).Nanoseconds(), f.slowest.Load(); took > was && !f.slowest.CompareAndSwap(was, took); {
			was = f.slowest.Load()
		}
		if r := recover(); r != nil {
			s.panicked = r
		}
	}()
	s.out, s.err = callAction(f.ctx, f.act, f.timeout, s.r, s.out[:0])
}

// callAction calls act, with ctx ending after timeout when one is set; a
// call that outlasts it fails with errActionTimeout, whatever it returned.
func callAction(ctx context.Context, act actionFunc, timeout time.Duration, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if timeout <= 0 {
		return act(ctx, r, out)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := act(ctx, r, out)
	if ctx.Err() != nil {
		return out[:0], fmt.Errorf("%w (%v)", errActionTimeout, timeout)
	}
	return out, err
}

// full: the window has no room for another record.
func (f *inflight) full() bool { return f.n == len(f.ring) }

// add puts r in the window and starts it unless its lane is busy.
func (f *inflight) add(r *kgo.Record) {
	s := f.spare()
	s.r, s.lane = r, int(maphash.Bytes(f.seed, r.Key)%uint64(len(f.tails)))
	f.ring[(f.head+f.n)%len(f.ring)] = s
	f.n++
	f.upto = r.Offset + 1
	if t := f.tails[s.lane]; t != nil {
		t.behind = s
	} else {
		f.start(s)
	}
	f.tails[s.lane] = s
}

func (f *inflight) start(s *inFlight) {
	f.running++
	f.work <- s // never blocks: work holds the whole window
}

// finish takes a result back from the workers, and starts the record
// waiting behind it in its lane.
func (f *inflight) finish(s *inFlight) {
	f.running--
	s.done = true
	if f.tails[s.lane] == s {
		f.tails[s.lane] = nil
	}
	if s.behind != nil && !f.holding {
		f.start(s.behind)
		s.behind = nil
	}
}

// collect takes every result the workers have given back; with wait, it
// first waits for one, unless none is running.
func (f *inflight) collect(wait bool) {
	if wait && f.running > 0 {
		f.finish(<-f.done)
	}
	for {
		select {
		case s := <-f.done:
			f.finish(s)
		default:
			return
		}
	}
}

// first is the oldest record in the window, if its action is done.
func (f *inflight) first() *inFlight {
	if f.n == 0 || !f.ring[f.head].done {
		return nil
	}
	return f.ring[f.head]
}

// pop removes the oldest record, done and written.
func (f *inflight) pop() {
	s := f.ring[f.head]
	f.ring[f.head] = nil
	f.head = (f.head + 1) % len(f.ring)
	f.n--
	*s = inFlight{out: s.out[:0]}
	f.free = append(f.free, s)
}

func (f *inflight) spare() *inFlight {
	if k := len(f.free); k > 0 {
		s := f.free[k-1]
		f.free = f.free[:k-1]
		return s
	}
	return &inFlight{}
}

// drop empties the window once every action running has returned: after
// a sink failure, a seek, or a record that ends the run, the records
// after the offset written are read again, and the same key must not be in
// the action twice.
func (f *inflight) drop() {
	f.holding = true
	for f.running > 0 {
		f.collect(true)
	}
	for f.n > 0 {
		f.pop()
	}
	clear(f.tails)
	f.upto, f.holding = noOffset, false
}

// pollMany is poll with the window: it writes the results at its head, in
// offset order, fills it from what was fetched, and fetches when there is
// room, until the next thing is due. A fetch or a wait ends when a result
// comes.
func (p *run) pollMany(ctx context.Context, until time.Time) error {
	f := p.fly
	for {
		f.collect(false)
		if err := p.writeDone(ctx); err != nil {
			if errors.Is(err, errLapsed) {
				return nil // written once the lease is renewed
			}
			return err
		}
		if p.due.Load() || ctx.Err() != nil {
			return nil
		}
		p.fill()
		switch {
		case len(p.pending) == 0 && !f.full():
			p.pending = p.fetch(ctx, until)
			if f.n == 0 {
				if err := p.topicThere(ctx); err != nil {
					return err
				}
			}
		case f.running > 0 || f.n == 0:
			select { // a result, a timer, or a shutdown
			case <-p.wake:
			case <-ctx.Done():
			}
		default:
			return nil // full of records waiting behind a lane that is not running: cannot be
		}
	}
}

// writeDone writes the results at the head of the window, in offset
// order, up to the first record whose action has not returned.
func (p *run) writeDone(ctx context.Context) error {
	for s := p.fly.first(); s != nil; s = p.fly.first() {
		if s.panicked != nil {
			panic(s.panicked) // own recovers it, as it does one of a lone record
		}
		if err := p.emit(ctx, s.r, s.out, s.err); err != nil {
			return err
		}
		p.fly.pop()
	}
	return nil
}

// fill puts fetched records in the window while it has room.
func (p *run) fill() {
	f := p.fly
	for len(p.pending) > 0 && !f.full() {
		r := p.pending[0]
		p.pending = p.pending[1:]
		if r.Offset >= max(p.next, f.upto) { // else already written or in the window: a fetch may overlap a reset
			f.add(r)
		}
	}
}

// settle writes what the actions in flight return before the baton moves
// or the run ends: it starts no more records, waits for those running
// (bounded by ctx), and writes the results in order. What it could not
// write is dropped and read again from the offset written, if the run goes
// on (a hand-over that did not happen).
func (p *run) settle(ctx context.Context) {
	f := p.fly
	if f == nil || f.n == 0 {
		return
	}
	f.holding = true
	for f.running > 0 && ctx.Err() == nil {
		select {
		case s := <-f.done:
			f.finish(s)
		case <-ctx.Done():
		}
	}
	f.collect(false)
	err := p.writeDone(ctx)
	f.holding = false
	if err != nil || f.n > 0 {
		p.readFrom(p.next)
	}
}

// dropWindow empties the window, once the actions running have returned.
func (p *run) dropWindow() {
	if p.fly != nil {
		p.fly.drop()
	}
}

// slowestAction is the longest action call seen with many in flight: the
// deadline's margin leaves room for one, as settle waits for it.
func (p *run) slowestAction() time.Duration {
	if p.fly == nil {
		return 0
	}
	return time.Duration(p.fly.slowest.Load())
}

// signal wakes the run from waiting on the window.
func (p *run) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}
