// produce_test.go checks that an owner's produces settle before its lease
// can pass on: the client's limits, and the settings baton refuses.

package main

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduce_settles_before_the_lease_can_pass_on: the delivery timeout,
// and after it the client's wait for a request written (the write and the
// read past the broker's produce request timeout, each bounded by the
// request timeout overhead), of the client connect makes fit between the
// owner's stop point (RenewMargin before its lease ends) and the first
// moment another may take the lease (2 × Skew before it ends, counting both
// clocks), and records whose fate is unknown may fail, so the delivery
// timeout holds for retries too. kafka+txn keeps franz-go's defaults there:
// the next owner's InitProducerID fences it at the broker, and franz-go
// refuses the option with a transactional id.
func TestProduce_settles_before_the_lease_can_pass_on(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"-mode", "lambda"}, {"-ttl", "4s", "-skew", "10ms", "-commit-interval", "500ms"}, {"-ttl", "10m", "-skew", "1s"}} {
		cfg, err := parseConfig(append([]string{"-brokers", "b:9092", "-topic", "t"}, args...), fakeEnv(nil))
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		delivery, request := cfg.produceLimits()
		if budget := cfg.RenewMargin - 2*cfg.Skew; delivery < time.Second || request < 100*time.Millisecond || delivery+3*request > budget {
			t.Errorf("%v: delivery %v + 3 × request %v; want at least 1s + 3 × 100ms, within %v (stop margin %v - 2 × skew %v)",
				args, delivery, request, budget, cfg.RenewMargin, cfg.Skew)
		}
	}
	// A lease too short to leave them that is refused (the e2e tests' 4 s
	// lease with a skew of 100 ms, as it was).
	if _, err := parseConfig([]string{"-brokers", "b:9092", "-topic", "t", "-ttl", "4s", "-skew", "100ms"}, fakeEnv(nil)); err == nil {
		t.Errorf("-ttl 4s -skew 100ms leaves 1.13s for produces to settle, less than %v; want it refused", minProduceBudget)
	}
	cluster := newCluster(t, 1, "src", "out")
	for _, scheme := range []string{"kafka", "kafka+txn"} {
		cfg := testConfig(t, cluster.ListenAddrs(), "src")
		cfg.TTL, cfg.Skew = 30*time.Second, 2*time.Second
		cfg.setTiming()
		cfg.Sink, cfg.SinkScheme, cfg.SinkTopic = scheme+"://out", scheme, "out"
		var cl *kgo.Client
		d, _ := testDeps(t, newMemStore(), nil)
		d.kafka = func(opts ...kgo.Opt) (*kgo.Client, error) {
			var err error
			cl, err = kgo.NewClient(opts...)
			return cl, err
		}
		k, err := connect(context.Background(), cfg, d, invocation{Topic: "src", Owner: "A"})
		must(t, err)
		delivery, request := cfg.produceLimits()
		wantCancel, wantRequest := scheme == "kafka", request
		if !wantCancel {
			wantRequest = 10 * time.Second // franz-go's default, and its overhead's
		}
		if got := cl.OptValue(kgo.RecordDeliveryTimeout); got != delivery {
			t.Errorf("%s: delivery timeout %v, want %v", scheme, got, delivery)
		}
		if got := cl.OptValue(kgo.ProduceRequestTimeout); got != wantRequest {
			t.Errorf("%s: produce request timeout %v, want %v", scheme, got, wantRequest)
		}
		if got := cl.OptValue(kgo.RequestTimeoutOverhead); got != wantRequest {
			t.Errorf("%s: request timeout overhead %v, want %v", scheme, got, wantRequest)
		}
		if wantCancel {
			wait := cl.OptValue(kgo.RecordDeliveryTimeout).(time.Duration) + 2*cl.OptValue(kgo.RequestTimeoutOverhead).(time.Duration) + cl.OptValue(kgo.ProduceRequestTimeout).(time.Duration)
			if budget := cfg.RenewMargin - 2*cfg.Skew; wait > budget {
				t.Errorf("%s: a produce may wait %v in the client, past %v (stop margin %v - 2 × skew %v)", scheme, wait, budget, cfg.RenewMargin, cfg.Skew)
			}
		}
		if got := cl.OptValue(kgo.AllowIdempotentProduceCancellation); got != wantCancel {
			t.Errorf("%s: records of unknown fate may fail: %v, want %v", scheme, got, wantCancel)
		}
		k.close()
	}
}
