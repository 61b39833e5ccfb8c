// config.go holds the configuration: its defaults, the config type, the
// flags with their BATON_* environment fallbacks, and their validation.

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults. The lease is renewed at every commit; an owner that could not
// renew stops writing RenewMargin before its lease ends; others take a lease
// that ended more than Skew ago. A crashed owner's partition is taken over
// within TTL + Skew (11 s): a quarter of the Kafka group consumer's default
// 45 s session. The commit interval, unless given, is a quarter of the TTL
// (two commits may fail before the owner stops writing), so a shorter
// lease costs more store writes (24 a minute by default). The skew
// allowance is 1 s: Lambda's clocks are kept by Amazon Time Sync, and two
// skews must leave the last produces of an owner that stopped writing
// RenewMargin (a third of the TTL) before its lease ended time to settle.
//
// Under Lambda the lease is 30 s unless given: a crashed invocation's
// partition waits for Lambda's retry, a minute later at the earliest, so a
// shorter lease would rarely be taken sooner and costs three times the
// store writes (8 a minute instead of 24).
const (
	defaultGroup        = "baton"
	defaultLeaseTable   = "baton-leases"
	defaultTTL          = 10 * time.Second
	lambdaTTL           = 30 * time.Second
	defaultSkew         = time.Second
	commitsPerTTL       = 4
	defaultCommitEvery  = defaultTTL / commitsPerTTL
	defaultReadEvery    = 500 * time.Millisecond
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
// skew must leave some of the lease to its owner. A sink may bound them
// further (sinkTimings).
const (
	minTTL         = time.Second
	minCommitEvery = 100 * time.Millisecond
)

// maxConcurrency bounds -concurrency: each record in flight is a
// goroutine's worth of work and windowPerWorker records of memory.
const maxConcurrency = 1024

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
	Group      string   // lease key namespace, and the Kafka group baton commits the offset to (group.go)
	Start      string   // where a partition with no offset in the lease or the group starts: earliest or latest
	Sink       string
	SinkScheme string // the -sink URL's scheme (parseSink)
	SinkTopic  string
	DLQ        string
	Match      *regexp.Regexp

	Balance       bool          // process mode: share the partitions with the rest of the fleet (fleet.go)
	Concurrency   int           // records of one partition in the action at once (inflight.go)
	ActionTimeout time.Duration // an action call longer than this fails its record; 0: no limit

	LeaseTable   string       // DynamoDB table
	CreateTable  bool         // create the DynamoDB table when missing (local runs)
	storeLog     *slog.Logger // where the store says what it created; nil: nowhere
	Redis        string       // Redis address host:port or redis:// URL
	StoreTimeout time.Duration

	TTL          time.Duration // lease length from each renewal
	Skew         time.Duration // clock skew allowance
	CommitEvery  time.Duration // commit, renew and see a successor
	ReadEvery    time.Duration // lease reads near the expected handoff
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
	EMF         string    // BATON_EMF: "1" on, "0" off, "" on unless on a terminal (emfWriter)
}

// option is one flag and its environment fallback.
type option struct{ name, env, def, usage string }

var options = []option{
	{"mode", "BATON_MODE", "", "lambda, process or demo (default: lambda under AWS Lambda, demo when nothing else is set, else process)"},
	{"brokers", "BATON_BROKERS", "", "Kafka seed brokers, comma-separated; required unless nothing else is set, which runs the embedded demo"},
	{"topic", "BATON_TOPIC", "", "source topic; a Lambda event without \"topic\" reads this one"},
	{"topics", "BATON_TOPICS", "", "lambda mode: other topics an event may name, comma-separated (default: only -topic)"},
	{"partitions", "BATON_PARTITIONS", "all", "process mode: partitions to own, like 0,3,5, or all (follows the topic: a partition added is owned within a minute)"},
	{"group", "BATON_GROUP", defaultGroup, "lease key namespace: one per pipeline reading the topic; also the Kafka group the offsets are committed to"},
	{"start", "BATON_START", startEarliest, "where a partition starts when neither its lease record nor the Kafka group has an offset: earliest or latest"},
	{"sink", "BATON_SINK", "stdout", sinkUsage},
	{"dlq", "BATON_DLQ", "", "dead-letter topic for records the action fails on or the sink refuses for good; empty stops the run instead"},
	{"match", "BATON_MATCH", "", "keep only records whose value matches this regexp"},
	{"concurrency", "BATON_CONCURRENCY", "1", fmt.Sprintf("records of one partition in the action at once, never two of one key (1 to %d; 1: one at a time, in offset order)", maxConcurrency)},
	{"action-timeout", "BATON_ACTION_TIMEOUT", "0", "an action call longer than this fails its record: to -dlq, or the run stops (0: no limit)"},
	{"lease-table", "BATON_LEASE_TABLE", defaultLeaseTable, "DynamoDB lease table"},
	{"create-table", "BATON_CREATE_TABLE", "false", "create the DynamoDB lease table when missing (local runs; a switch: -create-table or -create-table=false)"},
	{"redis", "BATON_REDIS", "", "Redis address host:port or redis://URL (built with -tags redis)"},
	{"ttl", "BATON_TTL", "", fmt.Sprintf("lease length from each renewal (default: %v in lambda mode, else %v)", lambdaTTL, defaultTTL)},
	{"skew", "BATON_SKEW", defaultSkew.String(), "clock skew allowance before an expired lease is taken"},
	{"commit-interval", "BATON_COMMIT_INTERVAL", "", fmt.Sprintf("how often offsets are committed and the lease renewed (default: a quarter of -ttl, %v or %v)", defaultCommitEvery, lambdaTTL/commitsPerTTL)},
	{"balance", "BATON_BALANCE", "true", "process mode: share the partitions with the other processes of -group (a fleet, balanced by hand-overs); a switch: -balance=false makes the newest process take them all"},
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
var switches = map[string]bool{"create-table": true, "tls": true, "balance": true}

// envOnly are the variables baton reads that have no flag: a password must
// not show in process lists, and the log level is needed before flags are read.
var envOnly = []option{
	{"", passwordEnv, "", "password for -sasl plain and scram (or use -sasl-secret)"},
	{"", "BATON_LOG_LEVEL", "info", "process mode and ctl: debug, info, warn or error (under Lambda, AWS_LAMBDA_LOG_LEVEL)"},
	{"", "BATON_EMF", "", "process mode: the EMF metric lines on stderr; 1 on, 0 off (default: on, but off on a terminal); under Lambda always on"},
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

func (v *switchValue) String() string { return string(*v) }

func (v *switchValue) Set(s string) error { *v = switchValue(s); return nil }

func (v *switchValue) IsBoolFlag() bool { return true }

// optionErr names the flag and its environment variable in an error.
func optionErr(name, format string, a ...any) error {
	for _, o := range options {
		if o.name == name {
			return fmt.Errorf("-%s (%s): %s", name, o.env, fmt.Sprintf(format, a...))
		}
	}
	return fmt.Errorf("-%s: %s", name, fmt.Sprintf(format, a...))
}

// setOptions names the options set (by flag or variable), but for skip.
func setOptions(set func(string) bool, skip ...string) []string {
	var names []string
	for _, o := range options {
		if o.name != "" && set(o.name) && !slices.Contains(skip, o.name) {
			names = append(names, "-"+o.name+" ("+o.env+")")
		}
	}
	return names
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
		return nil, err // -h, or an unknown flag: batonMain adds the hint to baton -h
	}
	if fs.NArg() > 0 {
		return nil, unexpectedArg(args, fs.NArg())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	set := func(name string) bool { return given[name] || fromEnv[name] }

	c := &config{Group: *v["group"], Topic: *v["topic"], Sink: *v["sink"], DLQ: *v["dlq"],
		LeaseTable: *v["lease-table"], Redis: *v["redis"], Mode: *v["mode"], Start: *v["start"]}
	var errs []error
	bad := func(name, format string, a ...any) { errs = append(errs, optionErr(name, format, a...)) }
	c.Brokers = splitList(*v["brokers"])
	switch {
	case c.Mode == "" && getenv("AWS_LAMBDA_RUNTIME_API") != "":
		c.Mode = "lambda"
	case c.Mode == "" && len(c.Brokers) == 0:
		c.Mode = "demo"
		// A deployment whose broker variable went missing must not look
		// healthy running the demo: the demo takes no settings of its own.
		if others := setOptions(set, "mode"); len(others) > 0 {
			bad("brokers", "missing, and %s given, which the demo ignores: give the Kafka brokers, or -mode demo to run the demo anyway", strings.Join(others, ", "))
		}
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
	if c.Start != startEarliest && c.Start != startLatest {
		bad("start", "want %s or %s, got %q", startEarliest, startLatest, c.Start)
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
	if c.Concurrency, err = strconv.Atoi(*v["concurrency"]); err != nil || c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		bad("concurrency", "want a whole number from 1 to %d, got %q", maxConcurrency, *v["concurrency"])
	}
	if c.ActionTimeout, err = time.ParseDuration(*v["action-timeout"]); err != nil || c.ActionTimeout < 0 {
		bad("action-timeout", "want a duration like 2s, or 0 for no limit; got %q", *v["action-timeout"])
	}
	if c.MetricsAddr = *v["metrics-addr"]; c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil || c.Mode != "process" {
			bad("metrics-addr", "want host:port in process mode, got %q in %s mode", c.MetricsAddr, c.Mode)
		}
	}
	c.EMF = getenv("BATON_EMF")
	if err := c.checkEMF(); err != nil {
		errs = append(errs, err)
	}
	if c.Balance, err = strconv.ParseBool(*v["balance"]); err != nil {
		bad("balance", "want true or false, got %q", *v["balance"])
	}
	if set("balance") && c.Mode != "process" {
		bad("balance", "process mode only: under Lambda each schedule names its partitions")
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
	if !set("ttl") {
		*v["ttl"] = c.defaultTTL().String()
	}
	if set("commit-interval") && *v["commit-interval"] == "" {
		bad("commit-interval", "want a positive duration like 5s, or leave it out for a quarter of -ttl; got \"\"")
	}
	errs = append(errs, c.setTimings(v)...)
	errs = append(errs, parseAuth(c, v, getenv)...)
	c.setTiming()
	if c.TTL > 0 && c.Skew > 0 && !c.producesSettle() {
		ms := func(d time.Duration) time.Duration { return max(0, d).Truncate(time.Millisecond) }
		bad("skew", "too large for -ttl (BATON_TTL) %v: an owner stops writing %v before its lease ends (a third of -ttl, at most %v), "+
			"and twice the skew must leave %v of that for its last produces to be acknowledged or failed before the lease can pass on; "+
			"want -skew at most %v or a longer -ttl, got %v",
			c.TTL, ms(c.RenewMargin), defaultRenewMargin, ms(minProduceBudget), ms((c.RenewMargin-minProduceBudget)/2), c.Skew)
	}
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
	return fmt.Errorf("unexpected argument %q: flags come as -name value, and a -name=value after it", args[i])
}

// checkEMF checks BATON_EMF. Under Lambda the EMF lines are baton's
// CloudWatch metrics, so 0 is refused rather than ignored.
func (c *config) checkEMF() error {
	switch {
	case !slices.Contains([]string{"", "0", "1"}, c.EMF):
		return fmt.Errorf("BATON_EMF: want 1 (metric lines on) or 0 (off), or leave it unset; got %q", c.EMF)
	case c.EMF == "0" && c.Mode == "lambda":
		return errors.New("BATON_EMF: 0 is for process mode; under Lambda the metric (EMF) lines are baton's CloudWatch metrics and stay on: unset it")
	}
	return nil
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
	return append(errs, sinkTimings(c)...)
}

// defaultTTL is the lease length when -ttl is not given.
func (c *config) defaultTTL() time.Duration {
	if c.Mode == "lambda" {
		return lambdaTTL
	}
	return defaultTTL
}

// setTiming fills the timings that have no flag from their defaults, scaled
// to the lease length where they must fit inside it.
func (c *config) setTiming() {
	c.ReadEvery, c.NearHandoff, c.WaitPoll = defaultReadEvery, defaultNearHandoff, defaultWaitPoll
	c.MarginFloor, c.StoreTimeout = defaultMarginFloor, defaultStoreTimeout
	c.KafkaTimeout, c.FetchWait = defaultKafkaTimeout, defaultFetchWait
	c.RenewMargin = min(defaultRenewMargin, c.TTL/3)
	c.AskTTL = min(defaultAskTTL, c.TTL/3)
}

// Where a partition starts when neither its lease record nor the Kafka
// group has an offset (-start).
const (
	startEarliest = "earliest"
	startLatest   = "latest"
)

// minDelivery is franz-go's least record delivery timeout, and minRequest
// its least produce request timeout and request overhead; minProduceBudget
// is the least time produceLimits can split.
const (
	minDelivery      = time.Second
	minRequest       = 100 * time.Millisecond
	minProduceBudget = minDelivery + 3*minRequest
)

// produceLimits bounds how late an owner's produce can be acknowledged or
// failed. An owner writes nothing after validUntil = expiresAt −
// RenewMargin, and its lease may pass on at expiresAt + Skew on another
// clock, expiresAt − Skew on its own at worst; one Skew more is kept in
// hand. In franz-go (v1.22.3, sink.go) a record is never sent in a request
// after its delivery timeout (checked before every write, of a retry too,
// once AllowIdempotentProduceCancellation lets it fail records whose fate
// is unknown). A request written then waits at most request three times:
// for the write (the client's request timeout overhead), at the broker (the
// produce request timeout), and for the read past that (the overhead
// again). All of it fits in RenewMargin − 2·Skew.
func (c *config) produceLimits() (delivery, request time.Duration) {
	budget := c.RenewMargin - 2*c.Skew
	// A tenth of the budget, or less where that would leave the delivery
	// timeout under its least.
	request = max(minRequest, min(budget/10, (budget-minDelivery)/3))
	return max(minDelivery, budget-3*request), request
}

// producesSettle reports whether produceLimits keep their promise: a lease
// too short for the skew allowance leaves them no time.
func (c *config) producesSettle() bool {
	delivery, request := c.produceLimits()
	return delivery+3*request <= c.RenewMargin-2*c.Skew
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

// usage is baton -h: the flags, the variables without a flag, and ctl.
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: baton [flags]          run (the demo with no flags or variables; process; lambda under AWS Lambda)\n")
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
