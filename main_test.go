// main_test.go checks what baton reads before it runs: flags and their
// environment fallbacks, Lambda payloads, and that a bad payload leaves the
// lease alone; the deadline margin; and which ends of a run are run again.

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// configView is the part of a config that flags set, for comparison.
type configView struct {
	Mode            string
	Brokers         []string
	Topic           string
	Partitions      []int32
	Sink, SinkTopic string
	TTL, Commit     time.Duration
}

func viewOf(c *config) configView {
	return configView{Mode: c.Mode, Brokers: c.Brokers, Topic: c.Topic, Partitions: c.Partitions,
		Sink: c.SinkScheme, SinkTopic: c.SinkTopic, TTL: c.TTL, Commit: c.CommitEvery}
}

// with is v changed by f.
func (v configView) with(f func(*configView)) configView {
	f(&v)
	return v
}

// fakeEnv is an environment of its own for parseConfig. Under the Redis
// build it names a Redis unless env says otherwise, as that build needs one.
func fakeEnv(env map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := env[k]; ok || k != "BATON_REDIS" || storeBuild != "redis" {
			return v
		}
		return "127.0.0.1:6379"
	}
}

// optionEnv is the environment variable of a flag.
func optionEnv(t *testing.T, name string) string {
	t.Helper()
	for _, o := range options {
		if o.name == name {
			return o.env
		}
	}
	t.Fatalf("no option -%s", name)
	return ""
}

// wantOptionErrs checks that err holds one error per named flag, each naming
// the flag and its environment variable.
func wantOptionErrs(t *testing.T, err error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one naming %v", names)
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	if got, want := len(errs), len(names); got != want {
		t.Errorf("%d errors, want %d (one each for %v):\n%v", got, want, names, err)
	}
	for _, name := range names {
		flag, env := "-"+name, optionEnv(t, name)
		found := false
		for _, e := range errs {
			found = found || strings.Contains(e.Error(), flag) && strings.Contains(e.Error(), env)
		}
		if !found {
			t.Errorf("no error names both %s and %s:\n%v", flag, env, err)
		}
	}
}

func TestConfig_flags(t *testing.T) {
	t.Parallel()
	proc := configView{Mode: "process", Brokers: []string{"b:9092"}, Topic: "t", Sink: "stdout",
		TTL: defaultTTL, Commit: defaultCommitEvery}
	valid := []string{"-brokers", "b:9092", "-topic", "t"}
	args := func(more ...string) []string { return append(append([]string{}, valid...), more...) }

	good := []struct {
		name string
		args []string
		env  map[string]string
		want configView
	}{
		{"process mode with -brokers and -topic", []string{"-brokers", "a:9092,b:9092", "-topic", "t"}, nil,
			proc.with(func(v *configView) { v.Brokers = []string{"a:9092", "b:9092"} })},
		{"environment when the flag is absent", nil, map[string]string{"BATON_BROKERS": "e:9092", "BATON_TOPIC": "t"},
			proc.with(func(v *configView) { v.Brokers = []string{"e:9092"} })},
		{"flag beats environment", args(), map[string]string{"BATON_BROKERS": "e:9092", "BATON_TOPIC": "other"},
			proc},
		{"AWS_LAMBDA_RUNTIME_API means lambda", nil, map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "BATON_BROKERS": "b:9092", "BATON_TOPIC": "t"},
			proc.with(func(v *configView) { v.Mode, v.TTL, v.Commit = "lambda", lambdaTTL, lambdaTTL/commitsPerTTL })},
		{"-ttl beats the lambda default", args("-mode", "lambda", "-ttl", "10s"), nil,
			proc.with(func(v *configView) { v.Mode = "lambda" })},
		{"-mode beats AWS_LAMBDA_RUNTIME_API", args("-mode", "process"), map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"},
			proc},
		{"no brokers is the demo", nil, map[string]string{"BATON_REDIS": ""}, // nothing set at all
			proc.with(func(v *configView) { v.Mode, v.Brokers, v.Topic = "demo", nil, "" })},
		{"-partitions list", args("-partitions", "0,3,5"), nil,
			proc.with(func(v *configView) { v.Partitions = []int32{0, 3, 5} })},
		{"-partitions with spaces from the environment", args(), map[string]string{"BATON_PARTITIONS": "1, 2"},
			proc.with(func(v *configView) { v.Partitions = []int32{1, 2} })},
		{"-partitions all", args("-partitions", "all"), nil, proc},
		{"-sink kafka://TOPIC", args("-sink", "kafka://out"), nil,
			proc.with(func(v *configView) { v.Sink, v.SinkTopic = "kafka", "out" })},
		{"-sink discard", args("-sink", "discard"), nil,
			proc.with(func(v *configView) { v.Sink = "discard" })},
		{"commit interval of exactly half the TTL", args("-ttl", "10s", "-skew", "1s", "-commit-interval", "5s"), nil,
			proc.with(func(v *configView) { v.TTL, v.Commit = 10*time.Second, 5*time.Second })},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, fakeEnv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := viewOf(c), tt.want; !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}

	bad := []struct {
		name string
		args []string
		env  map[string]string
		want []string // the flags the error must name
	}{
		{"unknown sink scheme", args("-sink", "s3://x"), nil, []string{"sink"}},
		{"unknown sink scheme from the environment", args(), map[string]string{"BATON_SINK": "s3://x"}, []string{"sink"}},
		{"kafka sink without a topic", args("-sink", "kafka://"), nil, []string{"sink"}},
		{"partition not a number", args("-partitions", "1,x"), nil, []string{"partitions"}},
		{"negative partition", args("-partitions", "-1"), nil, []string{"partitions"}},
		{"partition listed twice", args("-partitions", "0,0"), nil, []string{"partitions"}},
		{"bad -match regexp", args("-match", "("), nil, []string{"match"}},
		{"-ttl not a duration", args("-ttl", "x"), nil, []string{"ttl"}},
		{"-ttl zero", args("-ttl", "0s"), nil, []string{"ttl"}},
		{"-ttl given empty", args("-ttl="), nil, []string{"ttl"}},
		{"-commit-interval given empty", args("-commit-interval="), nil, []string{"commit-interval"}},
		{"-ttl from the environment", args(), map[string]string{"BATON_TTL": "soon"}, []string{"ttl"}},
		{"commit interval over half the TTL", args("-ttl", "10s", "-skew", "1s", "-commit-interval", "6s"), nil, []string{"commit-interval"}},
		{"skew leaving the last produces no time", args("-ttl", "10s", "-skew", "1200ms"), nil, []string{"skew"}},
		{"skew too large for the default TTL", args(), map[string]string{"BATON_SKEW": "5s"}, []string{"skew"}},
		{"unknown -start", args("-start", "middle"), nil, []string{"start"}},
		{"-start from the environment", args(), map[string]string{"BATON_START": "newest"}, []string{"start"}},
		{"process mode without a topic", []string{"-brokers", "b:9092"}, nil, []string{"topic"}},
		{"lambda mode without brokers", []string{"-mode", "lambda", "-topic", "t"}, nil, []string{"brokers"}},
		{"unknown mode", args("-mode", "batch"), nil, []string{"mode"}},
		{"sink is the source topic", args("-sink", "kafka://t"), nil, []string{"sink"}},
		{"several at once",
			args("-mode", "batch", "-sink", "s3://x", "-partitions", "1,x", "-match", "(", "-ttl", "x"), nil,
			[]string{"mode", "sink", "partitions", "match", "ttl"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, fakeEnv(tt.env))
			wantOptionErrs(t, err, tt.want...)
		})
	}
}

func TestConfig_payloads(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 15, 4, 59, 0, time.UTC)
	tick := time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC).UnixMilli()
	tests := []struct {
		name       string
		payload    string
		topic      string  // cfg.Topic
		partitions []int32 // cfg.Partitions
		want       invocation
		wantErr    []string // what the error must name; nil: no error
	}{
		{name: "scheduler tick", payload: `{"topic":"t","partition":2,"tick":"2026-01-02T15:04:00Z"}`,
			want: invocation{Topic: "t", Partition: 2, Tick: tick}},
		{name: "rule event time", payload: `{"topic":"t","partition":2,"source":"aws.events","time":"2026-01-02T15:04:00Z"}`,
			want: invocation{Topic: "t", Partition: 2, Tick: tick}},
		{name: "tick beats time", payload: `{"topic":"t","partition":2,"tick":"2026-01-02T15:04:00Z","time":"2026-01-02T16:00:00Z"}`,
			want: invocation{Topic: "t", Partition: 2, Tick: tick}},
		{name: "tick as unix ms", payload: fmt.Sprintf(`{"topic":"t","partition":2,"tick":%d}`, tick),
			want: invocation{Topic: "t", Partition: 2, Tick: tick}},
		{name: "no tick: invoke time", payload: `{"topic":"t","partition":2}`,
			want: invocation{Topic: "t", Partition: 2, Tick: now.UnixMilli()}},
		{name: "null tick: invoke time", payload: `{"topic":"t","partition":2,"tick":null}`,
			want: invocation{Topic: "t", Partition: 2, Tick: now.UnixMilli()}},
		{name: "topic from -topic", payload: `{"partition":0}`, topic: "src",
			want: invocation{Topic: "src", Partition: 0, Tick: now.UnixMilli()}},
		{name: "partition from -partitions", payload: `{"topic":"t"}`, partitions: []int32{4},
			want: invocation{Topic: "t", Partition: 4, Tick: now.UnixMilli()}},
		{name: "partition 0 beats -partitions", payload: `{"topic":"t","partition":0}`, partitions: []int32{4},
			want: invocation{Topic: "t", Partition: 0, Tick: now.UnixMilli()}},

		{name: "malformed JSON", payload: `{"topic":"t",`, wantErr: []string{"JSON"}},
		{name: "not an object", payload: `[1]`, wantErr: []string{"JSON"}},
		{name: "no topic", payload: `{"partition":0}`, wantErr: []string{`"topic"`, "-topic"}},
		{name: "no partition", payload: `{"topic":"t"}`, wantErr: []string{`"partition"`}},
		{name: "no partition and several in -partitions", payload: `{"topic":"t"}`, partitions: []int32{1, 2},
			wantErr: []string{`"partition"`, "-partitions"}},
		{name: "partition not a number", payload: `{"topic":"t","partition":"2"}`, wantErr: []string{"partition"}},
		{name: "negative partition", payload: `{"topic":"t","partition":-1}`, wantErr: []string{`"partition"`, "-1"}},
		{name: "bad tick", payload: `{"topic":"t","partition":0,"tick":"tomorrow"}`, wantErr: []string{`"tick"`, "tomorrow"}},
		{name: "tick of the wrong type", payload: `{"topic":"t","partition":0,"tick":true}`, wantErr: []string{`"tick"`}},
		{name: "topic not allowed", payload: `{"topic":"other","partition":0}`, wantErr: []string{`"topic"`, `"other"`, "-topics"}},
		{name: "topic is the sink", payload: `{"topic":"out","partition":0}`, wantErr: []string{`"topic"`, `"out"`, "-sink"}},
		{name: "topic is the DLQ", payload: `{"topic":"dlq","partition":0}`, wantErr: []string{`"topic"`, `"dlq"`, "-dlq"}},
		{name: "bad rule time", payload: `{"topic":"t","partition":0,"time":"noon"}`, wantErr: []string{`"time"`, "noon"}},
		{name: "tick in seconds", payload: `{"topic":"t","partition":0,"tick":1767366240}`, wantErr: []string{`"tick"`, "milliseconds", "1767366240"}},
		{name: "tick a small number", payload: `{"topic":"t","partition":0,"tick":7}`, wantErr: []string{`"tick"`, "milliseconds"}},
		{name: "tick in microseconds", payload: `{"topic":"t","partition":0,"tick":1767366240000000}`, wantErr: []string{`"tick"`, "milliseconds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config{Topic: tt.topic, Topics: []string{"t", "src"}, Partitions: tt.partitions, SinkTopic: "out", DLQ: "dlq"}
			got, err := parseEvent([]byte(tt.payload), cfg, now)
			if tt.wantErr != nil {
				wantNamed(t, err, tt.wantErr...)
			} else if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestConfig_bad_payload_leaves_lease_untouched(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 2, "src")
	// start puts a lease held by a running owner with an older tick in a
	// store of its own, and returns a handler over it. An invocation that got
	// past its checks would ask for this lease.
	start := func(t *testing.T, topic string, partition int32) (*memStore, lease, func(context.Context, json.RawMessage) (outcome, error)) {
		t.Helper()
		cfg := testConfig(t, cluster.ListenAddrs(), "")
		cfg.Topics = []string{"src", "nope"}
		l := lease{Key: leaseKey(cfg.Group, topic, partition), Owner: "owner", Tick: 1000, Epoch: 3,
			Offset: 42, State: stateRunning, ExpiresAt: in(time.Minute)}
		s := newMemStore()
		s.set(l)
		d, _ := testDeps(t, s, nil)
		return s, l, handler(cfg, d)
	}

	tests := []struct {
		name      string
		payload   string
		topic     string // the lease held
		partition int32
		wantErr   []string
	}{
		{"malformed JSON", `{"topic":"src","partition":0`, "src", 0, []string{"JSON"}},
		{"no topic", `{"partition":0}`, "src", 0, []string{`"topic"`}},
		{"negative partition", `{"topic":"src","partition":-1}`, "src", 0, []string{`"partition"`}},
		{"bad tick", `{"topic":"src","partition":0,"tick":"soon"}`, "src", 0, []string{`"tick"`}},
		{"tick in the future", `{"topic":"src","partition":0,"tick":"2099-01-01T00:00:00Z"}`, "src", 0, []string{"future", "2099-01-01"}},
		{"tick in seconds", `{"topic":"src","partition":0,"tick":1767366240}`, "src", 0, []string{`"tick"`, "milliseconds"}},
		{"unknown topic", `{"topic":"nope","partition":0}`, "nope", 0, []string{`"nope"`}},
		{"partition out of range", `{"topic":"src","partition":5}`, "src", 5, []string{"partition 5", "0..1"}},
		{"partitions listed twice", `{"topic":"src","partitions":[0,1,0]}`, "src", 0, []string{`"partitions"`, "twice"}},
		{"partition and partitions disagree", `{"topic":"src","partition":1,"partitions":[0,1]}`, "src", 0, []string{`"partition" 1`, `"partitions" [0,1]`}},
		{"partitions out of range", `{"topic":"src","partitions":[5,6]}`, "src", 5, []string{"partition 5:", "partition 6:", "0..1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, before, h := start(t, tt.topic, tt.partition)
			_, err := h(ctxT(t), []byte(tt.payload))
			wantNamed(t, err, tt.wantErr...)
			if got, want := mustLoad(t, s, before.Key), before; got != want {
				t.Errorf("lease changed:\ngot  %+v\nwant %+v", got, want)
			}
		})
	}

	// The control: a good event for the same lease does ask for it, so the
	// cases above would have seen a change; and giving up, it takes its ask
	// back, so no dead successor is left for the owner to hand over to.
	t.Run("good event asks, then withdraws", func(t *testing.T) {
		t.Parallel()
		s, before, h := start(t, "src", 1)
		ctx, cancel := context.WithTimeout(ctxT(t), 2500*time.Millisecond)
		defer cancel()
		wait := background(func() (outcome, error) { return h(ctx, []byte(`{"topic":"src","partition":1}`)) })
		waitFor(t, "the ask", 2*time.Second, func() bool { return mustLoad(t, s, before.Key).Successor != "" })
		out, err := wait()
		wantEnd(t, "giving up waiting for the running owner", out, err, endGaveUp)
		if got := mustLoad(t, s, before.Key); got != before {
			t.Errorf("lease after giving up:\ngot  %+v\nwant %+v (the ask withdrawn)", got, before)
		}
	})

	t.Run("outcome of a connect error says error", func(t *testing.T) {
		_, _, h := start(t, "nope", 0)
		out, err := h(ctxT(t), []byte(`{"topic":"nope","partition":0}`))
		if err == nil {
			t.Fatal("no error for an unknown topic")
		}
		if got, want := out.End, endError; got != want {
			t.Errorf("outcome end %q, want %q", got, want)
		}
	})
}

func TestMargin(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name           string
		floor, slowest time.Duration
		want           time.Duration
	}{
		{"nothing seen yet: the floor", 500 * ms, 0, 500 * ms},
		{"fast commits: the floor", 500 * ms, 100 * ms, 500 * ms},
		{"three times the slowest equals the floor", 600 * ms, 200 * ms, 600 * ms},
		{"slow commits: three times the slowest", 500 * ms, time.Second, 3 * time.Second},
		{"just over a third of the floor", 600 * ms, 201 * ms, 603 * ms},
		{"no floor", 0, 10 * ms, 30 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := margin(tt.floor, tt.slowest), tt.want; got != want {
				t.Errorf("margin(%v, %v) = %v, want %v", tt.floor, tt.slowest, got, want)
			}
		})
	}
}

// TestRerun_rule: which ends of a run have ownPartition run it again, and
// which errors before owning are the configuration's (lasting).
func TestRerun_rule(t *testing.T) {
	t.Parallel()
	topic := func(err error) error { return fmt.Errorf("kafka topic %q: %w", "src", err) }
	missing := topic(kerr.UnknownTopicOrPartition)
	tests := []struct {
		name          string
		out           outcome // Epoch > 0: this run owned
		err           error
		restartFailed bool
		failed        int
		again         bool
	}{
		{"handed over", outcome{Epoch: 3, End: endHanded}, nil, true, 0, false},
		{"stale before owning", outcome{End: endStale}, nil, true, 0, false},
		{"lost, process", outcome{Epoch: 3, End: endLost}, nil, true, 0, true},
		{"lost, Lambda", outcome{Epoch: 3, End: endLost}, nil, false, 0, true},
		{"failed after owning, process", outcome{Epoch: 3, End: endError}, errBadValue, true, 0, true},
		{"failed after owning, Lambda: Lambda retries the event", outcome{Epoch: 3, End: endError}, errBadValue, false, 0, false},
		{"a lease read lost", outcome{End: endError}, fmt.Errorf("redis lease k: load: %w", errLost), false, 1, true},
		{"no answer from the brokers in time", outcome{End: endError}, fmt.Errorf("kafka: metadata: %w", context.DeadlineExceeded), false, 1, true},
		{"a broker not reached", outcome{End: endError}, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false, 1, true},
		{"a leader moving", outcome{End: endError}, topic(kerr.LeaderNotAvailable), false, 1, true},
		{"a topic missing, not yet for long", outcome{End: endError}, missing, false, missingTopicTries - 1, true},
		{"a topic missing for long", outcome{End: endError}, missing, false, missingTopicTries, false},
		{"a topic missing for long, process that owned it", outcome{End: endError}, missing, true, missingTopicTries, true},
		{"a configError", outcome{End: endError}, configError{errors.New("partition 5 out of range")}, false, 1, false},
		{"a tick from the future", outcome{End: endError}, fmt.Errorf("%w: later", errFutureTick), false, 1, false},
		{"topic authorization", outcome{End: endError}, topic(kerr.TopicAuthorizationFailed), false, 1, false},
		{"SASL refused", outcome{End: endError}, fmt.Errorf("kafka: metadata: %w", kerr.SaslAuthenticationFailed), false, 1, false},
		{"a TLS alert from the broker", outcome{End: endError}, &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, false, 1, false},
		{"a broker certificate refused", outcome{End: endError}, &tls.CertificateVerificationError{Err: errors.New("unknown authority")}, false, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if why := rerun(tt.out, tt.err, tt.restartFailed, tt.failed); (why != "") != tt.again {
				t.Errorf("rerun(%+v, %v) = %q; want a run again: %v", tt.out, tt.err, why, tt.again)
			}
		})
	}
}

func TestLogger_formats_and_levels(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		env       map[string]string
		json      bool
		debugSeen bool
	}{
		{"lambda", nil, true, false},
		{"lambda", map[string]string{"AWS_LAMBDA_LOG_FORMAT": "Text"}, false, false},
		{"lambda", map[string]string{"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"}, true, true},
		{"lambda", map[string]string{"AWS_LAMBDA_LOG_LEVEL": "ERROR"}, true, false},
		{"process", nil, true, false}, // a file is not a terminal
		{"process", map[string]string{"BATON_LOG_LEVEL": "debug"}, true, true},
	} {
		f, err := os.CreateTemp(t.TempDir(), "log")
		if err != nil {
			t.Fatal(err)
		}
		log := newLogger(tc.mode, f, fakeEnv(tc.env))
		log.Debug("debug line", "partition", 1)
		log.Info("info line", "partition", 1)
		f.Close()
		b, _ := os.ReadFile(f.Name())
		out := string(b)
		if got := strings.HasPrefix(out, "{"); got != tc.json && out != "" {
			t.Errorf("%s %v: JSON=%v, want %v: %s", tc.mode, tc.env, got, tc.json, out)
		}
		if got := strings.Contains(out, "debug line"); got != tc.debugSeen {
			t.Errorf("%s %v: debug line shown=%v, want %v", tc.mode, tc.env, got, tc.debugSeen)
		}
		if wantInfo := tc.env["AWS_LAMBDA_LOG_LEVEL"] != "ERROR"; strings.Contains(out, "info line") != wantInfo {
			t.Errorf("%s %v: info line shown=%v, want %v", tc.mode, tc.env, !wantInfo, wantInfo)
		}
	}
}
