// chaos_fleet_test.go is the chaos harness's fleet mode: process-mode
// processes of one group join, leave (SIGTERM) and die (SIGKILL) at random
// while records flow, and the sink must hold every record, in order per
// partition.

package main

import (
	"context"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var fleetSeeds = flag.Int("chaos.fleet.seeds", 1, "TestChaosFleet: seeds per backend")

// TestChaosFleet: for each seed, 12 partitions and records flowing for
// about 8 lease periods; every half lease period one random step: a process
// joins, one is stopped, or one is killed, keeping one to four running.
// Then one process is left to read to the end: nothing lost, nothing
// reordered per partition; records are written twice only after a kill.
func TestChaosFleet(t *testing.T) {
	for seed := range uint64(*fleetSeeds) {
		eachOf(t, chaosBackends(t), true, func(t *testing.T, b backend) {
			testChaosFleet(t, b, seed+1)
		})
	}
}

func testChaosFleet(t *testing.T, b backend, seed uint64) {
	const parts = 12
	rng := rand.New(rand.NewPCG(seed, 7))
	r := newRig(t, b.open(t), parts)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	r.ctx = ctx
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced, err := produce(pctx, r.cfg.Brokers, "src", parts, 5*time.Millisecond)
	must(t, err)
	running := []*fleetProc{startFleetProc(t, r, client(t, r, b), nil)}
	var steps []string
	killed := false
	for range 16 {
		time.Sleep(r.cfg.TTL / 2)
		switch i := rng.IntN(len(running)); {
		case len(running) < 4 && (len(running) == 1 || rng.IntN(2) == 0):
			running = append(running, startFleetProc(t, r, client(t, r, b), nil))
			steps = append(steps, "join")
		case rng.IntN(3) == 0:
			running[i].kill()
			running = append(running[:i], running[i+1:]...)
			steps, killed = append(steps, "kill"), true
		default:
			running[i].stop(t)
			running = append(running[:i], running[i+1:]...)
			steps = append(steps, "stop")
		}
	}
	for len(running) > 1 {
		running[0].stop(t)
		running = running[1:]
	}
	total := r.drain(t, produced, stopProducing, 30*time.Second)
	running[0].stop(t)
	tl := r.rec.tally(total)
	dups := 0
	if killed {
		dups = tl.Produced
	}
	t.Logf("%s seed %d: %s; %d records, %d moves, %d delivered twice", b.name, seed, strings.Join(steps, " "), tl.Produced, tl.Handoffs, tl.Duplicated)
	wantTally(t, tl, dups, -1)
}
