// lease_memory.go holds the in-memory store: for unit tests and the demo.

package main

import (
	"context"
	"fmt"
	"sync"
)

// memStore is the in-memory store: for unit tests and the demo. A mutex
// makes each step's check and write one step.
type memStore struct {
	mu      sync.Mutex
	leases  map[string]lease
	epochs  map[string]int64 // the highest epoch handed out per key: a record deleted by hand keeps it, as Redis's counter does
	changes notifier         // hand-overs and releases, for waiting successors (watch.go)
}

var _ store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{leases: map[string]lease{}, epochs: map[string]int64{}}
}

func (m *memStore) load(ctx context.Context, key string) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[key]
	if !ok {
		return lease{}, fmt.Errorf("memory lease %s: %w", key, errNotFound)
	}
	return l, nil
}

// set replaces a record by hand: for tests that need a given state.
func (m *memStore) set(l lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leases[l.Key] = l
	m.epochs[l.Key] = max(m.epochs[l.Key], l.Epoch)
}

func (m *memStore) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[key]
	if err := takeVerdict(cur, ok, seen, c); err != nil {
		return lease{}, fmt.Errorf("memory lease %s: take: %w", key, err)
	}
	if !ok {
		cur = lease{Key: key, Epoch: m.epochs[key], Offset: noOffset, Seek: noOffset}
	}
	cur.Epoch++
	m.epochs[key] = cur.Epoch
	cur.Owner, cur.Tick, cur.State, cur.ExpiresAt = c.Owner, c.Tick, stateRunning, exp
	cur.Successor, cur.SuccessorTick, cur.SuccessorUntil = "", 0, 0
	m.leases[key] = cur
	return cur, nil
}

// takeVerdict is take's condition, spelled out once in Go for the memory
// store; the other backends say the same in their own languages. Besides
// ask's condition, the record must be as the taker judged it: a renewal
// that landed after its read moved the expiry, and the owner it judged
// dead is alive.
func takeVerdict(cur lease, exists bool, seen lease, c claim) error {
	if !exists {
		if seen.Epoch != 0 {
			return errTaken
		}
		return nil
	}
	if err := askVerdict(cur, exists, seen.Epoch, c); err != nil {
		return err
	}
	if cur.ExpiresAt != seen.ExpiresAt {
		return fmt.Errorf("renewed since it was read: %w", errTaken)
	}
	return nil
}

// askVerdict is ask's condition: the record is still at epoch and c passes
// tickVerdict. An ask grants nothing by itself (the baton moves only by the
// owner's hand-over, or by a take), so a renewal since the read may stand.
func askVerdict(cur lease, exists bool, epoch int64, c claim) error {
	if !exists {
		return errTaken
	}
	if err := cur.tickVerdict(c); err != nil {
		return err
	}
	if cur.Epoch != epoch {
		return errTaken
	}
	return nil
}

// controlVerdict is control's condition: the record still has the owner
// and epoch the operator read (errFenced), and the seek and pause it read
// (errTaken), so a write for one of them never puts back the other as it
// was, such as a seek the owner applied and cleared meanwhile.
func controlVerdict(cur lease, exists bool, l lease) error {
	if err := heldVerdict(cur, exists, l); err != nil {
		return err
	}
	if cur.Seek != l.Seek || cur.Paused != l.Paused {
		return fmt.Errorf("seek or pause changed since it was read: %w", errTaken)
	}
	return nil
}

// heldVerdict: the record exists and l.Owner still holds l.Epoch.
func heldVerdict(cur lease, exists bool, l lease) error {
	switch {
	case !exists:
		return errNotFound
	case cur.Epoch != l.Epoch || cur.Owner != l.Owner:
		return errFenced
	}
	return nil
}

func (m *memStore) ask(ctx context.Context, key string, epoch int64, c claim, until int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[key]
	if err := askVerdict(cur, ok, epoch, c); err != nil {
		return fmt.Errorf("memory lease %s: ask: %w", key, err)
	}
	cur.Successor, cur.SuccessorTick, cur.SuccessorUntil = c.Owner, c.Tick, until
	m.leases[key] = cur
	return nil
}

func (m *memStore) handOver(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[l.Key]
	if !ok || cur.Epoch != l.Epoch || cur.Owner != l.Owner {
		return lease{}, fmt.Errorf("memory lease %s: hand over: %w", l.Key, errFenced)
	}
	if cur.Successor != l.Successor || l.Successor == "" {
		return lease{}, fmt.Errorf("memory lease %s: hand over: %w", l.Key, errTaken)
	}
	cur.Epoch++
	m.epochs[l.Key] = cur.Epoch
	cur.Owner, cur.Tick = cur.Successor, cur.SuccessorTick
	cur.Successor, cur.SuccessorTick, cur.SuccessorUntil = "", 0, 0
	cur.Offset, cur.State, cur.ExpiresAt = offset, stateRunning, exp
	m.leases[l.Key] = cur
	m.changes.notify(l.Key)
	return cur, nil
}

func (m *memStore) commit(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[l.Key]
	if !ok || cur.Epoch != l.Epoch || cur.Owner != l.Owner || cur.State != stateRunning {
		return lease{}, fmt.Errorf("memory lease %s: commit: %w", l.Key, errFenced)
	}
	if l.Seek != noOffset {
		if cur.Seek != l.Seek {
			return lease{}, fmt.Errorf("memory lease %s: commit: seek changed: %w", l.Key, errTaken)
		}
		cur.Seek = noOffset
	}
	cur.Offset, cur.ExpiresAt = offset, exp
	m.leases[l.Key] = cur
	return cur, nil
}

func (m *memStore) release(ctx context.Context, l lease, offset int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[l.Key]
	if !ok || cur.Epoch != l.Epoch || cur.Owner != l.Owner {
		return fmt.Errorf("memory lease %s: release: %w", l.Key, errFenced)
	}
	cur.Offset, cur.State = offset, stateReleased
	m.leases[l.Key] = cur
	m.changes.notify(l.Key)
	return nil
}

func (m *memStore) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[l.Key]
	if err := controlVerdict(cur, ok, l); err != nil {
		return lease{}, fmt.Errorf("memory lease %s: control: %w", l.Key, err)
	}
	cur.Seek, cur.Paused = seek, paused
	m.leases[l.Key] = cur
	return cur, nil
}

func (m *memStore) reset(ctx context.Context, l lease) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[l.Key]
	if err := heldVerdict(cur, ok, l); err != nil {
		return lease{}, fmt.Errorf("memory lease %s: reset: %w", l.Key, err)
	}
	cur.Tick = 0
	cur.Successor, cur.SuccessorTick, cur.SuccessorUntil = "", 0, 0
	m.leases[l.Key] = cur
	return cur, nil
}

func (m *memStore) withdraw(ctx context.Context, key string, c claim) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[key]
	if !ok {
		return lease{}, fmt.Errorf("memory lease %s: withdraw: %w", key, errNotFound)
	}
	if cur.Successor == c.Owner {
		cur.Successor, cur.SuccessorTick, cur.SuccessorUntil = "", 0, 0
		m.leases[key] = cur
	}
	return cur, nil
}
