// Package main is baton: a Kafka partition consumer for short-lived runtimes
// that behaves like one always-on consumer.
//
// Each invocation owns one partition. A lease in DynamoDB (or Redis, built
// with -tags redis) records the owner, a fencing epoch and the offset; the
// running invocation passes the baton to the next one with conditional
// writes before its deadline. See README.md and ../shared/DESIGN.md.
//
// Modes:
//   - lambda: the AWS Lambda handler; chosen when AWS_LAMBDA_RUNTIME_API is
//     set. Event: {"topic": "t", "partition": 3, "tick": "<scheduled time>"}.
//   - process: a long-running process owning -partitions, each with its own
//     lease; SIGINT/SIGTERM hands over to a waiting successor or releases.
//   - demo: with no -brokers, an in-process Kafka (kfake), the memory lease
//     store and overlapping short invocations, to watch baton work.
//
// Every flag has a BATON_* environment fallback; `baton -h` lists them.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults. The lease is renewed at every commit; an owner that could not
// renew stops writing RenewMargin before its lease ends; others take a lease
// that ended more than Skew ago. A crashed owner's partition is taken over
// within TTL + Skew (12 s): a third of the Kafka group consumer's default
// 45 s session. The commit interval, unless given, is a quarter of the TTL
// (two commits may fail before the owner stops writing), so a shorter
// lease costs more store writes (24 a minute by default).
const (
	defaultGroup        = "baton"
	defaultLeaseTable   = "baton-leases"
	defaultTTL          = 10 * time.Second
	defaultSkew         = 2 * time.Second
	commitsPerTTL       = 4
	defaultCommitEvery  = defaultTTL / commitsPerTTL
	defaultCheckEvery   = 500 * time.Millisecond
	defaultNearHandoff  = 90 * time.Second
	defaultWaitPoll     = 5 * time.Millisecond
	defaultAskTTL       = 5 * time.Second
	defaultMarginFloor  = 500 * time.Millisecond
	defaultRenewMargin  = 10 * time.Second
	defaultStoreTimeout = 3 * time.Second
	defaultKafkaTimeout = 10 * time.Second
	defaultFetchWait    = 500 * time.Millisecond
)

// Bounds on the timings, checked together in parseConfig. A lease shorter
// than a second cannot survive one slow store call; a commit more often than
// every 100 ms is a store call storm for no gain; a commit interval of at
// most half the TTL lets one renewal fail and the next still come in time;
// skew must leave some of the lease to its owner. Kafka brokers refuse a
// transaction timeout over transaction.max.timeout.ms (15 minutes by
// default), and kafka+txn asks for TTL plus the commit interval.
const (
	minTTL         = time.Second
	minCommitEvery = 100 * time.Millisecond
	maxTxnTimeout  = 15 * time.Minute
)

// tableName reports whether DynamoDB accepts s as a table name: 3 to 255
// of A-Z a-z 0-9 _ . -. (As a regexp, {3,255} compiles into 255 copies at
// every start: a millisecond of a cold start.)
func tableName(s string) bool {
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// config is everything baton reads from flags and the environment.
type config struct {
	Mode       string   // lambda, process or demo
	Brokers    []string // empty: the demo
	Topic      string
	Topics     []string // the topics a Lambda event may name: Topic and -topics
	Partitions []int32  // process mode; nil means all
	Group      string   // lease key namespace; with kafka+txn also the Kafka group holding the offset
	Sink       string
	SinkScheme string // kafka, kafka+txn, stdout or discard
	SinkTopic  string
	DLQ        string
	Match      *regexp.Regexp

	LeaseTable   string // DynamoDB table
	CreateTable  bool   // create the DynamoDB table when missing (local runs)
	Redis        string // Redis address host:port or redis:// URL
	StoreTimeout time.Duration

	TTL          time.Duration // lease length from each renewal
	Skew         time.Duration // clock skew allowance
	CommitEvery  time.Duration // commit, renew and see a successor
	CheckEvery   time.Duration // lease reads near the expected handoff
	NearHandoff  time.Duration // how long before the deadline reads become frequent
	WaitPoll     time.Duration // a successor's reads while it waits
	AskTTL       time.Duration // an ask lapses this long after its successor last renewed it
	MarginFloor  time.Duration // least time kept before the deadline
	RenewMargin  time.Duration // stop writing this long before an unrenewed lease ends
	KafkaTimeout time.Duration
	FetchWait    time.Duration

	// Kafka security (auth.go). The password never prints.
	TLS          bool   // TLS to the brokers; implied by the files below and by aws-msk-iam
	TLSCA        string // PEM CA file; empty: the system roots
	TLSCert      string // PEM client certificate (mutual TLS), with TLSKey
	TLSKey       string
	SASL         string // none, plain, scram-sha-256, scram-sha-512 or aws-msk-iam
	SASLUser     string
	SASLPassword secret     // from BATON_SASL_PASSWORD only: flags show in process lists
	SASLSecret   string     // Secrets Manager ARN of {"username", "password"}, read once
	auth         *kafkaAuth // what the above resolve to (setAuth); shared by copies

	KafkaOpts   []kgo.Opt // extra client options (tests)
	MetricsAddr string    // process mode: serve /metrics here
}

// option is one flag and its environment fallback.
type option struct{ name, env, def, usage string }

var options = []option{
	{"mode", "BATON_MODE", "", "lambda, process or demo (default: lambda under AWS Lambda, demo without -brokers, else process)"},
	{"brokers", "BATON_BROKERS", "", "Kafka seed brokers, comma-separated; empty runs the embedded demo"},
	{"topic", "BATON_TOPIC", "", "source topic; a Lambda event without \"topic\" reads this one"},
	{"topics", "BATON_TOPICS", "", "lambda mode: other topics an event may name, comma-separated (default: only -topic)"},
	{"partitions", "BATON_PARTITIONS", "all", "process mode: partitions to own, like 0,3,5, or all"},
	{"group", "BATON_GROUP", defaultGroup, "lease key namespace: one per pipeline reading the topic"},
	{"sink", "BATON_SINK", "stdout", "kafka://TOPIC, kafka+txn://TOPIC (exactly once; see README), stdout or discard"},
	{"dlq", "BATON_DLQ", "", "dead-letter topic for records the action fails on or the sink refuses for good; empty stops the run instead"},
	{"match", "BATON_MATCH", "", "keep only records whose value matches this regexp"},
	{"lease-table", "BATON_LEASE_TABLE", defaultLeaseTable, "DynamoDB lease table"},
	{"create-table", "BATON_CREATE_TABLE", "false", "create the DynamoDB lease table when missing (local runs; a switch: -create-table or -create-table=false)"},
	{"redis", "BATON_REDIS", "", "Redis address host:port or redis://URL (built with -tags redis)"},
	{"ttl", "BATON_TTL", defaultTTL.String(), "lease length from each renewal"},
	{"skew", "BATON_SKEW", defaultSkew.String(), "clock skew allowance before an expired lease is taken"},
	{"commit-interval", "BATON_COMMIT_INTERVAL", "", fmt.Sprintf("how often offsets are committed and the lease renewed (default: a quarter of -ttl, %v)", defaultCommitEvery)},
	{"metrics-addr", "BATON_METRICS_ADDR", "", "process mode: serve Prometheus metrics at http://ADDR/metrics (like 127.0.0.1:9464)"},
	{"tls", "BATON_TLS", "false", "connect to the brokers with TLS (a switch; implied by -tls-ca, -tls-cert and -sasl aws-msk-iam)"},
	{"tls-ca", "BATON_TLS_CA", "", "PEM file of the CA that signed the brokers' certificates (default: the system roots)"},
	{"tls-cert", "BATON_TLS_CERT", "", "PEM client certificate for mutual TLS, with -tls-key"},
	{"tls-key", "BATON_TLS_KEY", "", "PEM private key of -tls-cert"},
	{"sasl", "BATON_SASL", "none", "none, plain, scram-sha-256, scram-sha-512, or aws-msk-iam (AWS credentials from the SDK's default chain)"},
	{"sasl-user", "BATON_SASL_USER", "", "user for plain and scram; the password is read from BATON_SASL_PASSWORD only, never a flag"},
	{"sasl-secret", "BATON_SASL_SECRET", "", "Secrets Manager ARN of {\"username\", \"password\"} for plain and scram, instead of BATON_SASL_PASSWORD; read once"},
}

// switches are the options that are boolean flags: -name alone means true,
// -name=false turns one off, and a following word is not their value.
var switches = map[string]bool{"create-table": true, "tls": true}

// envOnly are the variables baton reads that have no flag: a password must
// not show in process lists, and the log level is needed before flags are read.
var envOnly = []option{
	{"", passwordEnv, "", "password for -sasl plain and scram (or use -sasl-secret)"},
	{"", "BATON_LOG_LEVEL", "info", "process mode and ctl: debug, info, warn or error (under Lambda, AWS_LAMBDA_LOG_LEVEL)"},
	{"", "BATON_EMF", "", "process mode on a terminal: 1 prints the EMF metric lines too (off a terminal they always go to stderr)"},
}

// backendOptions are the options of each lease store; only the store this
// binary was built with (storeBuild, build_*.go) takes its own.
var backendOptions = map[string][]string{
	"dynamodb": {"lease-table", "create-table"},
	"redis":    {"redis"},
}

var (
	backendName  = map[string]string{"dynamodb": "DynamoDB", "redis": "Redis"}
	buildCommand = map[string]string{"dynamodb": "go build, without -tags redis", "redis": "go build -tags redis"}
)

// switchValue is a switch's flag: its text is checked with the other values
// in parseConfig, so a bad one is named with its environment variable.
type switchValue string

func (v *switchValue) String() string     { return string(*v) }
func (v *switchValue) Set(s string) error { *v = switchValue(s); return nil }
func (v *switchValue) IsBoolFlag() bool   { return true }

// optionErr names the flag and its environment variable in an error.
func optionErr(name, format string, a ...any) error {
	for _, o := range options {
		if o.name == name {
			return fmt.Errorf("-%s (%s): %s", name, o.env, fmt.Sprintf(format, a...))
		}
	}
	return fmt.Errorf("-%s: %s", name, fmt.Sprintf(format, a...))
}

// parseConfig reads flags over environment over defaults, and checks every
// value once, naming each bad one.
func parseConfig(args []string, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("baton", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v, fromEnv := map[string]*string{}, map[string]bool{}
	for _, o := range options {
		val := o.def
		if e := getenv(o.env); e != "" {
			val, fromEnv[o.name] = e, true
		}
		v[o.name] = &val
		if switches[o.name] {
			fs.Var((*switchValue)(&val), o.name, o.usage)
		} else {
			fs.StringVar(&val, o.name, val, o.usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%v (baton -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, unexpectedArg(args, fs.NArg())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	set := func(name string) bool { return given[name] || fromEnv[name] }

	c := &config{Group: *v["group"], Topic: *v["topic"], Sink: *v["sink"], DLQ: *v["dlq"],
		LeaseTable: *v["lease-table"], Redis: *v["redis"], Mode: *v["mode"]}
	var errs []error
	bad := func(name, format string, a ...any) { errs = append(errs, optionErr(name, format, a...)) }
	c.Brokers = splitList(*v["brokers"])
	switch {
	case c.Mode == "" && getenv("AWS_LAMBDA_RUNTIME_API") != "":
		c.Mode = "lambda"
	case c.Mode == "" && len(c.Brokers) == 0:
		c.Mode = "demo"
	case c.Mode == "":
		c.Mode = "process"
	case !slices.Contains([]string{"lambda", "process", "demo"}, c.Mode):
		bad("mode", "want lambda, process or demo, got %q", c.Mode)
	}
	if c.Mode != "demo" && len(c.Brokers) == 0 {
		bad("brokers", "required in %s mode", c.Mode)
	}
	if c.Mode == "process" && c.Topic == "" {
		bad("topic", "required in process mode")
	}
	var err error
	if c.Partitions, err = parsePartitions(*v["partitions"]); err != nil {
		bad("partitions", "%v", err)
	}
	if c.Group == "" || strings.Contains(c.Group, "/") {
		bad("group", "want a name without '/', got %q", c.Group)
	}
	if c.SinkScheme, c.SinkTopic, err = parseSink(c.Sink); err != nil {
		bad("sink", "%v", err)
	}
	errs = append(errs, c.setTopics(splitList(*v["topics"]))...)
	if m := *v["match"]; m != "" {
		if c.Match, err = regexp.Compile(m); err != nil {
			bad("match", "%v", err)
		}
	}
	if c.MetricsAddr = *v["metrics-addr"]; c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil || c.Mode != "process" {
			bad("metrics-addr", "want host:port in process mode, got %q in %s mode", c.MetricsAddr, c.Mode)
		}
	}
	if c.CreateTable, err = strconv.ParseBool(*v["create-table"]); err != nil {
		bad("create-table", "want true or false, got %q", *v["create-table"])
	}
	// The other build's store options are refused, not ignored: a -redis
	// quietly ignored by the DynamoDB build once took over that pipeline's
	// leases in DynamoDB.
	for b, names := range backendOptions {
		for _, name := range names {
			if b != storeBuild && set(name) && *v[name] != "false" {
				bad(name, "this binary keeps leases in %s; -%s needs the %s build (%s)", backendName[storeBuild], name, backendName[b], buildCommand[b])
			}
		}
	}
	switch {
	case storeBuild == "redis" && c.Mode != "demo" && c.Redis == "":
		bad("redis", "required: this binary keeps leases in Redis (built with -tags redis)")
	case storeBuild == "dynamodb" && !tableName(c.LeaseTable):
		bad("lease-table", "want a DynamoDB table name of 3 to 255 characters from A-Z a-z 0-9 _ . -, got %q", c.LeaseTable)
	}
	errs = append(errs, c.setTimings(v)...)
	errs = append(errs, parseAuth(c, v, getenv)...)
	c.setTiming()
	return c, errors.Join(errs...)
}

// unexpectedArg explains the first argument the flags left over; most often
// a value after a switch (-create-table true), which would end the flags.
func unexpectedArg(args []string, left int) error {
	i := len(args) - left
	prev := strings.TrimLeft(args[max(i-1, 0)], "-")
	if _, err := strconv.ParseBool(args[i]); err == nil && i > 0 && switches[prev] {
		return optionErr(prev, "a switch takes no separate value: write -%s or -%s=%s, not -%s %s", prev, prev, args[i], prev, args[i])
	}
	return fmt.Errorf("unexpected argument %q: flags come as -name value, and a -name=value after it (baton -h lists the flags)", args[i])
}

// splitList reads a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// setTopics sets the topics an event may name, -topic first, and checks that
// none is where baton writes: an event naming the sink topic once made the
// sink copy itself into itself.
func (c *config) setTopics(extra []string) (errs []error) {
	if c.Topic != "" {
		c.Topics = []string{c.Topic}
	}
	for _, t := range extra {
		if !slices.Contains(c.Topics, t) {
			c.Topics = append(c.Topics, t)
		}
	}
	for _, t := range c.Topics {
		name := "topics"
		if t == c.Topic {
			name = "topic"
		}
		switch t {
		case c.SinkTopic:
			errs = append(errs, optionErr("sink", "must not be a source topic (-%s names %q): baton would read its own output", name, t))
		case c.DLQ:
			errs = append(errs, optionErr("dlq", "must not be a source topic (-%s names %q): baton would read its own dead letters", name, t))
		}
	}
	if c.Mode == "lambda" && len(c.Topics) == 0 {
		errs = append(errs, optionErr("topic", "required in lambda mode: an event may name only -topic or one of -topics (BATON_TOPICS)"))
	}
	return errs
}

// setTimings reads the lease timings and checks them together (the bounds
// above), so that one message lists every bad value.
func (c *config) setTimings(v map[string]*string) (errs []error) {
	bad := func(name, format string, a ...any) { errs = append(errs, optionErr(name, format, a...)) }
	ok := true
	for name, dst := range map[string]*time.Duration{"ttl": &c.TTL, "skew": &c.Skew, "commit-interval": &c.CommitEvery} {
		if name == "commit-interval" && *v[name] == "" {
			continue // derived from the TTL below
		}
		var err error
		if *dst, err = time.ParseDuration(*v[name]); err != nil || *dst <= 0 {
			bad(name, "want a positive duration like 5s, got %q", *v[name])
			ok = false
		}
	}
	if !ok {
		return errs
	}
	if *v["commit-interval"] == "" {
		c.CommitEvery = max(minCommitEvery, c.TTL/commitsPerTTL)
	}
	if c.TTL < minTTL {
		bad("ttl", "want at least %v, got %v", minTTL, c.TTL)
	}
	if c.Skew >= c.TTL {
		bad("skew", "must be less than -ttl (%v): a lease would be taken before its owner could renew it; got %v", c.TTL, c.Skew)
	}
	switch {
	case c.CommitEvery < minCommitEvery:
		bad("commit-interval", "want at least %v (each commit is a store call), got %v", minCommitEvery, c.CommitEvery)
	case c.CommitEvery*2 > c.TTL:
		bad("commit-interval", "must be at most half of -ttl (%v) so a renewal can fail once, got %v", c.TTL, c.CommitEvery)
	}
	if c.SinkScheme == "kafka+txn" && c.TTL+c.CommitEvery > maxTxnTimeout {
		bad("ttl", "with kafka+txn, -ttl plus -commit-interval is the transaction timeout, which brokers cap at %v by default; got %v", maxTxnTimeout, c.TTL+c.CommitEvery)
	}
	return errs
}

// setTiming fills the timings that have no flag from their defaults, scaled
// to the lease length where they must fit inside it.
func (c *config) setTiming() {
	c.CheckEvery, c.NearHandoff, c.WaitPoll = defaultCheckEvery, defaultNearHandoff, defaultWaitPoll
	c.MarginFloor, c.StoreTimeout = defaultMarginFloor, defaultStoreTimeout
	c.KafkaTimeout, c.FetchWait = defaultKafkaTimeout, defaultFetchWait
	c.RenewMargin = min(defaultRenewMargin, c.TTL/3)
	c.AskTTL = min(defaultAskTTL, c.TTL/3)
}

func parsePartitions(s string) ([]int32, error) {
	if s == "all" || s == "" {
		return nil, nil
	}
	var ps []int32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("want partition numbers like 0,3,5 or all, got %q", s)
		}
		if slices.Contains(ps, int32(n)) {
			return nil, fmt.Errorf("partition %d is listed twice in %q", n, s)
		}
		ps = append(ps, int32(n))
	}
	return ps, nil
}

// deps are what invocations share in one process: made once per container.
type deps struct {
	store  store
	kafka  func(...kgo.Opt) (*kgo.Client, error) // kgo.NewClient; tests count calls
	now    func() time.Time
	log    *slog.Logger
	stdout io.Writer
	emf    io.Writer     // EMF metric lines (metrics.go); nil: none
	prom   *promRegistry // /metrics in process mode; nil: none
	// progress spaces each partition's status line; 0: progressEvery.
	progress time.Duration
	// action replaces the action above when set (tests); wrapSink lets the
	// demo and tests watch what reaches the sink.
	action   func(*kgo.Record) ([]*kgo.Record, error)
	wrapSink func(invocation, sink) sink
}

// newOwnerID is unique per invocation: it is what the lease names.
func newOwnerID(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// event is the Lambda payload. tick is the schedule's time (EventBridge
// Scheduler's <aws.scheduler.scheduled-time>); a rule event's time is read
// when tick is missing, and the invoke time when both are.
type event struct {
	Topic     string          `json:"topic"`
	Partition *int32          `json:"partition"`
	Tick      json.RawMessage `json:"tick"`
	Time      json.RawMessage `json:"time"`
}

// parseEvent checks a payload and makes the invocation it asks for.
func parseEvent(payload []byte, cfg *config, now time.Time) (invocation, error) {
	var e event
	if err := json.Unmarshal(payload, &e); err != nil {
		return invocation{}, fmt.Errorf("event: want a JSON object like {\"topic\":\"t\",\"partition\":0,\"tick\":\"2026-01-02T15:04:00Z\"}: %w", err)
	}
	inv := invocation{Topic: e.Topic, Tick: now.UnixMilli()}
	if inv.Topic == "" {
		inv.Topic = cfg.Topic
	}
	if inv.Topic == "" {
		return inv, errors.New(`event: no "topic", and no -topic (BATON_TOPIC) to fall back on`)
	}
	if err := cfg.allowTopic(inv.Topic); err != nil {
		return inv, err
	}
	switch {
	case e.Partition != nil:
		inv.Partition = *e.Partition
	case len(cfg.Partitions) == 1:
		inv.Partition = cfg.Partitions[0]
	default:
		return inv, errors.New(`event: no "partition", and -partitions (BATON_PARTITIONS) does not name exactly one`)
	}
	if inv.Partition < 0 {
		return inv, fmt.Errorf(`event: "partition" must be 0 or more, got %d`, inv.Partition)
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tick", e.Tick}, {"time", e.Time}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		t, err := parseTick(f.raw)
		if err != nil {
			return inv, fmt.Errorf("event: %q: %w", f.name, err)
		}
		inv.Tick = t
		break
	}
	return inv, nil
}

// Bare-number ticks must be unix milliseconds of a plausible time: a number
// in seconds, or any small count, would read as a time in 1970.
var (
	tickFloor = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	tickCeil  = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// allowTopic lets an event read only a topic the function was given, and
// never one it writes to.
func (c *config) allowTopic(t string) error {
	allowed := c.Topics
	if len(allowed) == 0 && c.Topic != "" {
		allowed = []string{c.Topic}
	}
	switch {
	case t == c.SinkTopic || t == c.DLQ:
		return fmt.Errorf(`event: "topic" %q is where this function writes (-sink %s, -dlq %q): baton would read its own output`, t, c.Sink, c.DLQ)
	case !slices.Contains(allowed, t):
		return fmt.Errorf(`event: "topic" %q is not one this function may read: want one of %q (-topic BATON_TOPIC, -topics BATON_TOPICS)`, t, allowed)
	}
	return nil
}

// eventHead is the start of a payload, for a log line.
func eventHead(payload []byte) string {
	const most = 200
	if len(payload) > most {
		return string(payload[:most]) + "…"
	}
	return string(payload)
}

// parseTick reads an RFC 3339 time, or unix milliseconds.
func parseTick(raw json.RawMessage) (int64, error) {
	var ms int64
	if err := json.Unmarshal(raw, &ms); err == nil {
		if ms < tickFloor.UnixMilli() || ms >= tickCeil.UnixMilli() {
			return 0, fmt.Errorf("want unix milliseconds between %d (%s) and %d (%s), or an RFC 3339 time, got %d",
				tickFloor.UnixMilli(), tickFloor.Format(time.DateOnly), tickCeil.UnixMilli(), tickCeil.Format(time.DateOnly), ms)
		}
		return ms, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("want an RFC 3339 time or unix milliseconds, got %s", raw)
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("want an RFC 3339 time like 2026-01-02T15:04:00Z, got %q", s)
	}
	return t.UnixMilli(), nil
}

// handler is the Lambda handler: one invocation a call. Clients are made and
// closed inside each call; only the store outlives it.
func handler(cfg *config, d *deps) func(context.Context, json.RawMessage) (outcome, error) {
	return func(ctx context.Context, payload json.RawMessage) (outcome, error) {
		inv, err := parseEvent(payload, cfg, d.now())
		if err != nil {
			d.log.Error("bad event: want {\"topic\":\"t\",\"partition\":0,\"tick\":\"<aws.scheduler.scheduled-time>\"}",
				"err", err, "bytes", len(payload), "event", eventHead(payload))
			return outcome{End: endError}, err
		}
		// A retry keeps its request id, so the id alone would let a retry
		// pass for the owner it replaces.
		inv.Owner = newOwnerID("lambda")
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			inv.Owner = newOwnerID(lc.AwsRequestID)
		}
		out, err := runInvocation(ctx, cfg, d, inv)
		level := slog.LevelInfo
		if err != nil {
			level = slog.LevelError
		}
		d.log.Log(context.Background(), level, "invocation done", "topic", inv.Topic, "partition", inv.Partition, "owner", inv.Owner,
			"tick", inv.Tick, "epoch", out.Epoch, "outcome", out, "err", err)
		return out, err
	}
}

// runProcess owns each listed partition with its own lease until a signal
// ends the context or every partition is handed over.
func runProcess(ctx context.Context, cfg *config, d *deps) error {
	parts := cfg.Partitions
	if parts == nil {
		var err error
		if parts, err = listPartitions(ctx, cfg, d); err != nil {
			return err
		}
	}
	tick, owner := d.now().UnixMilli(), newOwnerID("process")
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	if cfg.MetricsAddr != "" {
		stop, err := serveMetrics(cfg.MetricsAddr, d)
		if err != nil {
			return err
		}
		defer stop()
	}
	logLeft := func() { logLeftRunning(cfg, d, parts, owner) }
	forcedExit.Store(&logLeft)
	defer forcedExit.CompareAndSwap(&logLeft, nil)
	for i, p := range parts {
		inv := invocation{Topic: cfg.Topic, Partition: p, Tick: tick, Owner: fmt.Sprintf("%s/%d", owner, p)}
		wg.Go(func() { errs[i] = ownPartition(ctx, cfg, d, inv) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// logLeftRunning is the one line a forced exit leaves: which of this
// process's leases still run, and until when, since nobody takes them before.
func logLeftRunning(cfg *config, d *deps, parts []int32, owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var left []string
	for _, p := range parts {
		l, err := d.store.load(ctx, leaseKey(cfg.Group, cfg.Topic, p))
		switch {
		case err != nil:
			left = append(left, fmt.Sprintf("%d (unread: %v; at most -ttl %v after its last commit)", p, err, cfg.TTL))
		case strings.HasPrefix(l.Owner, owner+"/") && l.State == stateRunning:
			left = append(left, fmt.Sprintf("%d until %s", p, time.UnixMilli(l.ExpiresAt).UTC().Format(time.RFC3339)))
		}
	}
	d.log.Error("forced exit by a second signal: leases left running; another owner takes each once it ends (plus -skew)",
		"topic", cfg.Topic, "partitions", strings.Join(left, ", "), "skew", cfg.Skew)
}

// ownPartition runs one partition until it is handed over, released at
// shutdown, or fails before this process ever owned it (a bad sink topic,
// say: that is for a person to fix). Once it has owned it, a failed run is
// started again after a pause, so the partition is not left unowned while
// the process lives. The next run's tick is the first's plus one a try:
// newer than this process's old runs, older than a process started later,
// which keeps its place.
func ownPartition(ctx context.Context, cfg *config, d *deps, inv invocation) error {
	pause, owned, tick, cause := time.Second, false, inv.Tick, ""
	for n := 1; ; n++ {
		out, err := runInvocation(ctx, cfg, d, inv)
		// A failure is an ERROR once per cause; its retries repeat it
		// only at DEBUG.
		level := slog.LevelInfo
		if err != nil {
			level = slog.LevelDebug
			if err.Error() != cause {
				level, cause = slog.LevelError, err.Error()
			}
		}
		d.log.Log(context.Background(), level, "partition done", "topic", inv.Topic, "partition", inv.Partition, "owner", inv.Owner,
			"tick", inv.Tick, "epoch", out.Epoch, "outcome", out, "err", err)
		owned = owned || out.Epoch > 0
		if err == nil || !owned || ctx.Err() != nil {
			return err
		}
		d.log.Info("starting the partition again", "topic", inv.Topic, "partition", inv.Partition, "in", pause)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
		base, _, _ := strings.Cut(inv.Owner, "#")
		inv.Tick, inv.Owner = tick+int64(n), fmt.Sprintf("%s#%d", base, n)
	}
}

// serveMetrics serves /metrics until stop, which waits for the server.
func serveMetrics(addr string, d *deps) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, optionErr("metrics-addr", "%v", err)
	}
	d.prom = newPromRegistry()
	mux := http.NewServeMux()
	mux.Handle("/metrics", d.prom)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	d.log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
	}, nil
}

// listPartitions asks the brokers how many partitions the topic has.
func listPartitions(ctx context.Context, cfg *config, d *deps) ([]int32, error) {
	k, err := connect(ctx, cfg, d, invocation{Topic: cfg.Topic})
	if err != nil {
		return nil, err
	}
	defer k.close()
	n, err := k.partitions(ctx, cfg, cfg.Topic)
	if err != nil {
		return nil, err
	}
	ps := make([]int32, n)
	for i := range ps {
		ps[i] = int32(i)
	}
	return ps, nil
}

// newLogger writes JSON under Lambda (text when AWS_LAMBDA_LOG_FORMAT says
// Text) at AWS_LAMBDA_LOG_LEVEL; in process mode, text on a terminal and
// JSON otherwise, at BATON_LOG_LEVEL. Credentials never reach a log line.
func newLogger(mode string, w io.Writer, getenv func(string) string) *slog.Logger {
	level, json := getenv("BATON_LOG_LEVEL"), !isTerminal(w)
	if mode == "lambda" {
		level, json = getenv("AWS_LAMBDA_LOG_LEVEL"), !strings.EqualFold(getenv("AWS_LAMBDA_LOG_FORMAT"), "text")
	}
	opts := &slog.HandlerOptions{Level: logLevel(level)}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logLevel reads Lambda's level names (TRACE and FATAL included).
func logLevel(s string) slog.Level {
	switch strings.ToUpper(s) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug
	case "WARN":
		return slog.LevelWarn
	case "ERROR", "FATAL":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// sysio is what one run of baton reads and writes outside itself: main
// passes the process's own, tests their own.
type sysio struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

func main() {
	// Signals are for process mode and ctl. Under Lambda the runtime's
	// deadline ends each event (the SIGTERM Lambda sends where extensions
	// run comes at shutdown, then SIGKILL), and the handler's goroutine
	// would cost the cold start a thread before the first event.
	ctx, stop := context.Background(), func() {}
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		ctx, stop = signalContext()
	}
	code := batonMain(ctx, os.Args[1:], sysio{os.Getenv, os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// batonMain is baton with its arguments: exit 0, 1 for a failure, 2 for bad
// usage (a flag, a variable, a command line).
func batonMain(ctx context.Context, args []string, io sysio) int {
	if len(args) > 0 && args[0] == "ctl" {
		return ctlMain(ctx, args[1:], io)
	}
	cfg, err := parseConfig(args, io.getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(io.stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(io.stderr, "baton: %v\n(baton -h lists the flags)\n", err)
		return 2
	}
	if err := start(ctx, cfg, io); err != nil {
		fmt.Fprintf(io.stderr, "baton: %v\n", err)
		return 1
	}
	return 0
}

// start runs the mode the config chose.
func start(ctx context.Context, cfg *config, io sysio) error {
	log := newLogger(cfg.Mode, io.stderr, io.getenv)
	if cfg.Mode == "demo" {
		return runDemo(ctx, io.stdout, log)
	}
	if cfg.Mode == "lambda" && io.getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		return errors.New("-mode lambda needs AWS_LAMBDA_RUNTIME_API: run it under Lambda or aws-lambda-rie")
	}
	st, err := newStore(ctx, *cfg)
	if err != nil {
		return err
	}
	// EMF lines go where CloudWatch reads them: stdout under Lambda; in
	// process mode stderr, beside the logs, so stdout holds only records.
	// On a terminal they would bury the log lines, so there only when
	// BATON_EMF=1 asks for them.
	d := &deps{store: st, kafka: kgo.NewClient, now: time.Now, log: log, stdout: io.stdout, emf: io.stderr}
	switch {
	case cfg.Mode == "lambda":
		d.emf = io.stdout
		lambda.StartWithOptions(lambdaHandler(handler(cfg, d)), lambda.WithContext(ctx))
		return nil
	case isTerminal(io.stderr):
		// A person is watching: a status line a partition every few
		// seconds, and the metric lines only when asked for.
		d.progress = terminalProgress
		if io.getenv("BATON_EMF") != "1" {
			d.emf = nil
		}
	}
	return runProcess(ctx, cfg, d)
}

// lambdaHandler takes the payload as it comes, so that one that is not JSON
// reaches parseEvent and its log line rather than failing in the runtime
// library with a bare "EOF".
type lambdaHandler func(context.Context, json.RawMessage) (outcome, error)

func (h lambdaHandler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	out, err := h(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// forcedExit, when set, logs what a forced exit leaves behind (runProcess).
var forcedExit atomic.Pointer[func()]

// signalWindow is how close together two deliveries of one signal count as
// one: GNU timeout and some supervisors send one stop twice.
const signalWindow = time.Second

// What a stop signal means.
const (
	signalStop   = iota // the first: stop, handing over
	signalRepeat        // the same signal again within signalWindow: nothing
	signalForce         // any other: exit at once
)

// signalGate tells a repeated delivery of the first signal from a second.
type signalGate struct {
	first os.Signal
	at    time.Time
}

func (g *signalGate) next(sig os.Signal, now time.Time) int {
	switch {
	case g.first == nil:
		g.first, g.at = sig, now
		return signalStop
	case sig == g.first && now.Sub(g.at) < signalWindow:
		return signalRepeat
	}
	return signalForce
}

// signalContext ends on the first SIGINT or SIGTERM. Another signal, or the
// same one again after signalWindow, exits at once with 130, after
// forcedExit has logged the leases left running. stop ends the watching
// goroutine and waits for it.
func signalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, done := make(chan os.Signal, 2), make(chan struct{})
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var wg sync.WaitGroup
	wg.Go(func() {
		var g signalGate
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				switch g.next(sig, time.Now()) {
				case signalStop:
					cancel()
				case signalForce:
					if f := forcedExit.Load(); f != nil {
						(*f)()
					}
					os.Exit(130)
				}
			}
		}
	})
	return ctx, func() { signal.Stop(ch); close(done); wg.Wait(); cancel() }
}

// usage is baton -h: the flags, the variables without a flag, and ctl.
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: baton [flags]          run (demo without -brokers; process; lambda under AWS Lambda)\n")
	fmt.Fprintf(w, "       baton ctl COMMAND ...  operator commands: %s (baton ctl -h)\n\n", strings.Join(ctlVerbs, ", "))
	fmt.Fprintf(w, "Each flag also reads the environment variable shown; a flag wins. This binary keeps leases in %s.\n", backendName[storeBuild])
	for _, o := range options {
		fmt.Fprintf(w, "  -%s  %s\n      %s%s\n", o.name, o.env, o.usage, defaultText(o.def))
	}
	fmt.Fprintln(w, "Environment only:")
	for _, o := range envOnly {
		fmt.Fprintf(w, "  %s\n      %s%s\n", o.env, o.usage, defaultText(o.def))
	}
	fmt.Fprintln(w, "Exit status: 0 done, 1 failed, 2 bad usage (the message names the flag), 130 forced by a second signal.")
}

func defaultText(def string) string {
	if def == "" {
		return ""
	}
	return " (default " + def + ")"
}
