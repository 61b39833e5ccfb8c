// watch.go holds how a waiting successor hears of a hand-over: a store that
// can tell it (memory, Redis pub/sub) wakes it at once, and it still reads
// the record now and then; a store that cannot (DynamoDB) is polled.

package main

import (
	"context"
	"errors"
	"sync"
	"time"
)

// A watcher is a store that can tell a waiting successor that a record may
// have changed hands.
type watcher interface {
	// watch subscribes to key: changed receives after every hand-over and
	// release of key written after watch returned (several at once may
	// arrive as one). stop ends the subscription and everything it runs.
	watch(ctx context.Context, key string) (changed <-chan struct{}, stop func(), err error)
}

// errNoWatch: the store cannot tell; the successor polls.
var errNoWatch = errors.New("the lease store cannot watch a record")

// watchPoll is how often a successor that is told of hand-overs still reads
// the record: for a notice lost with its connection, and for its ask to
// renew. It also wakes when the owner's lease can be taken.
const watchPoll = 100 * time.Millisecond

// watchOf subscribes to key in s, if s can watch.
func watchOf(ctx context.Context, s store, key string) (<-chan struct{}, func(), error) {
	if w, ok := s.(watcher); ok {
		return w.watch(ctx, key)
	}
	return nil, nil, errNoWatch
}

// The store wrappers pass watch through to what they wrap.
func (s settled) watch(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return watchOf(ctx, s.store, key)
}

func (c counted) watch(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	changed, stop, err := watchOf(ctx, c.store, key)
	if !errors.Is(err, errNoWatch) {
		c.n.Add(1) // a subscription is a call
	}
	return changed, stop, err
}

// A waiter is a successor's wait between reads of the record.
type waiter struct {
	cfg     *config
	d       *deps
	key     string
	tried   bool            // watch was tried
	changed <-chan struct{} // nil: poll every WaitPoll
	stop    func()
}

// wait returns when the record is worth reading again, or errGaveUp. The
// first wait subscribes and returns at once: the read after it then sees
// whatever came before the subscription, and a notice tells of the rest.
func (w *waiter) wait(ctx context.Context, l lease) error {
	if !w.tried {
		w.tried = true
		sctx, cancel := context.WithTimeout(ctx, w.cfg.StoreTimeout)
		changed, stop, err := watchOf(sctx, w.d.store, w.key)
		cancel()
		if err == nil {
			w.changed, w.stop = changed, stop
			return nil
		}
	}
	if w.changed == nil {
		return waitPoll(ctx, w.cfg, w.d)
	}
	now := w.d.now()
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) < 2*w.cfg.MarginFloor {
		return errGaveUp
	}
	d := watchPoll
	if l.Epoch > 0 && l.State == stateRunning {
		// Wake when the owner's lease can be taken: free is strict, so
		// one millisecond after.
		free := time.UnixMilli(l.ExpiresAt).Add(w.cfg.Skew + time.Millisecond)
		d = max(w.cfg.WaitPoll, min(d, free.Sub(now)))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return errGaveUp
	case <-w.changed:
	case <-t.C:
	}
	return nil
}

// close ends the subscription, if there is one.
func (w *waiter) close() {
	if w.stop != nil {
		w.stop()
	}
}

// notifier tells the memory store's watchers of a change.
type notifier struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]bool
}

func (n *notifier) notify(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs[key] {
		select {
		case ch <- struct{}{}:
		default: // one is pending already
		}
	}
}

func (m *memStore) watch(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n := &m.changes
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = map[string]map[chan struct{}]bool{}
	}
	if n.subs[key] == nil {
		n.subs[key] = map[chan struct{}]bool{}
	}
	n.subs[key][ch] = true
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.subs[key], ch)
		if len(n.subs[key]) == 0 {
			delete(n.subs, key)
		}
	}, nil
}
