// fleet.go is process mode as a fleet (-balance, the default): processes
// started with the same -group, -topic and lease store share the topic's
// partitions, each owning ⌊P/N⌋ or ⌈P/N⌉ of P, and every move is the
// lease's own hand-over, so no partition stops for a rebalance.
//
// Each process reads every partition's lease record once a balance period
// (the commit interval). The fleet is what those records show: the
// processes that own a live lease, and this one. A process under its share
// takes free leases first (released, expired, never owned), spread by a
// hash of its name so that two newcomers seldom race for one, and then asks
// the most loaded process for one of its partitions, only while that one
// owns at least two more: so a fleet within one of even moves nothing, and
// no two processes trade a partition back and forth. A process never gives
// a partition away by itself; an ask is answered at the owner's next
// commit. A process that dies stops renewing: its leases end, and the
// others take them as free. A process owning nothing is not in the others'
// counts until it owns a partition, which it asks for at once: it only
// makes their shares look larger for one period.

package main

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"
)

// fleet is one process's side of the fleet: the partitions it runs, owned
// or asked for.
type fleet struct {
	cfg   *config
	d     *deps
	owner string // this process; its runs are owner/PARTITION
	wg    sync.WaitGroup

	mu    sync.Mutex
	runs  map[int32]bool // partitions with a run going on: owned, or taken or asked for
	wake  chan struct{}  // look again now: a lease released, or a take lost to another process
	fatal error          // a run that failed for good: the process ends with it
	stop  context.CancelFunc

	readFails int // balance passes in a row that a lease read failed, said once
}

// runFleet runs process mode as a member of the fleet until ctx ends (each
// run hands over or releases) or a partition fails for good.
func runFleet(ctx context.Context, cfg *config, d *deps, parts []int32, owner string) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	f := &fleet{cfg: cfg, d: d, owner: owner, runs: map[int32]bool{}, stop: stop, wake: make(chan struct{}, 1)}
	logLeft := func() { logLeftRunning(cfg, d, f.partitions(), owner) }
	forcedExit.Store(&logLeft)
	defer forcedExit.CompareAndSwap(&logLeft, nil)
	f.watch(ctx, parts)
	refresh := time.Now()
	for ctx.Err() == nil {
		if cfg.Partitions == nil && time.Since(refresh) >= cmp.Or(d.refresh, partitionRefresh) {
			if all, err := listPartitions(ctx, cfg, d, cfg.Topic); err == nil {
				f.watch(ctx, all[len(parts):])
				parts = all
			}
			refresh = time.Now()
		}
		f.balance(ctx, parts)
		t := time.NewTimer(cfg.CommitEvery)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-f.wake: // a lease released or handed over, or a take lost: look at once
		}
		t.Stop()
	}
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

// processOf is the process an owner id names: process-xxxxxxxx/PARTITION,
// with #n after a run started again.
func processOf(owner string) string {
	if i := strings.LastIndexByte(owner, '/'); i > 0 {
		return owner[:i]
	}
	return owner
}

// balance reads every partition's lease and starts the runs that bring
// this process to its share: free partitions first, then one at a time
// from the most loaded process.
func (f *fleet) balance(ctx context.Context, parts []int32) {
	now := f.d.now()
	counts := map[string]int{}   // partitions each other process owns
	held := map[string][]int32{} // and which
	var free []int32
	f.mu.Lock()
	mine := len(f.runs)
	f.mu.Unlock()
	for _, p := range parts {
		if f.running(p) {
			continue
		}
		l, err := loadOrNew(ctx, f.cfg, f.d.store, leaseKey(f.cfg.Group, f.cfg.Topic, p))
		switch {
		case err != nil:
			if f.readFails++; f.readFails == 1 {
				f.d.log.Warn("fleet: lease read failed; balancing waits until a read succeeds", "partition", p, "err", err)
			}
			return
		case l.free(now, f.cfg.Skew):
			free = append(free, p)
		default:
			who := processOf(l.Owner)
			counts[who]++
			held[who] = append(held[who], p)
		}
	}
	if f.readFails > 0 {
		f.d.log.Info("fleet: lease reads succeed again; balancing goes on", "failed_passes", f.readFails)
		f.readFails = 0
	}
	n := len(counts) + 1
	if _, ok := counts[f.owner]; ok {
		n-- // a run of this process's that this process no longer tracks
	}
	hi := (len(parts) + n - 1) / n
	for _, p := range spread(free, f.owner) {
		if mine >= hi {
			break
		}
		f.pursue(ctx, p, "", false)
		mine++
	}
	for mine < hi {
		from := mostLoaded(counts, f.owner)
		if from == "" || counts[from] < mine+2 {
			return
		}
		// Which of its partitions: spread by name too, so that two
		// processes asking the same one at once seldom ask for one partition.
		ps := spread(held[from], f.owner)
		p := ps[0]
		held[from], counts[from] = ps[1:], counts[from]-1
		f.pursue(ctx, p, from, true)
		mine++
	}
}

// spread orders free partitions from a place given by the process's name,
// so that processes taking free partitions at once start apart.
func spread(free []int32, owner string) []int32 {
	if len(free) == 0 {
		return nil
	}
	h := fnv.New32a()
	h.Write([]byte(owner))
	i := int(h.Sum32() % uint32(len(free)))
	return append(slices.Clone(free[i:]), free[:i]...)
}

// mostLoaded is the other process owning the most partitions (by name on
// a tie, so every process picks the same one).
func mostLoaded(counts map[string]int, self string) string {
	best := ""
	for who, c := range counts {
		if who != self && (best == "" || c > counts[best] || c == counts[best] && who < best) {
			best = who
		}
	}
	return best
}

func (f *fleet) running(p int32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[p]
}

// pursue starts a run for partition p: a take of a free lease (ask false),
// or an ask of from, the process that holds it. A run goes on until the
// partition is handed to another process, fails for good, or the process
// stops.
func (f *fleet) pursue(ctx context.Context, p int32, from string, ask bool) {
	f.mu.Lock()
	f.runs[p] = true
	f.mu.Unlock()
	d := *f.d
	d.takeOnly = !ask
	if ask {
		f.d.log.Info("fleet: asking for a partition to even the load", "topic", f.cfg.Topic, "partition", p, "from", from)
	}
	// A tick of now: an ask must not look stale beside the owner's, as the
	// process's start time would when the owner started later.
	inv := invocation{Topic: f.cfg.Topic, Partition: p, Tick: d.now().UnixMilli(), Owner: fmt.Sprintf("%s/%d", f.owner, p)}
	f.wg.Go(func() {
		out, err := ownPartition(ctx, f.cfg, &d, inv, true)
		if out.End == endStale && !ask {
			f.signal() // another process took it first: there may be other free ones
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.runs, p)
		if err != nil && ctx.Err() == nil && lasting(err, 0) && f.fatal == nil {
			f.fatal = err
			f.stop()
		}
	})
}

// partitions are those this process runs, for the forced exit's line.
func (f *fleet) partitions() []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ps []int32
	for p := range f.runs {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// watch wakes the balancer when a partition's lease is released or handed
// over, where the store can tell (Redis, memory): a process stopping
// releases what nobody asked for, and the others take it at once rather
// than at their next period. On DynamoDB the period's reads find it.
func (f *fleet) watch(ctx context.Context, parts []int32) {
	for _, p := range parts {
		changed, stop, err := watchOf(ctx, f.d.store, leaseKey(f.cfg.Group, f.cfg.Topic, p))
		if err != nil {
			return // errNoWatch, or a store that cannot now: the period's reads do
		}
		f.wg.Go(func() {
			defer stop()
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-changed:
					if !ok {
						return
					}
					f.signal()
				}
			}
		})
	}
}

// signal wakes the balancer.
func (f *fleet) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}
