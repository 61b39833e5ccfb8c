// Package main is baton: a Kafka partition consumer for short-lived runtimes
// that behaves like one always-on consumer.
//
// Each invocation owns one partition, or a group of them. A lease per
// partition in DynamoDB (or Redis, built with -tags redis) records the
// owner, a fencing epoch and the offset; the running invocation passes the
// baton to the next one with conditional writes before its deadline. See
// README.md, REFERENCE.md and DESIGN.md. Licensed under the Apache License
// 2.0 (LICENSE).
//
// Modes:
//   - lambda: the AWS Lambda handler; chosen when AWS_LAMBDA_RUNTIME_API is
//     set. Event: {"topic": "t", "partition": 3, "tick": "<scheduled time>"},
//     or "partitions": [0, 1, 2, 3] for a group, or "slot": k, "slots": K
//     for every partition p of the topic with p mod K = k (the template's
//     schedules: a partition added is read without a redeploy), each
//     partition with its own lease (partitions.go).
//   - process: a long-running process owning -partitions, each with its own
//     lease; SIGINT/SIGTERM hands over to a waiting successor or releases.
//   - demo: with no setting at all (or -mode demo), an in-process Kafka
//     (kfake), the memory lease store and overlapping short invocations,
//     to watch baton work.
//
// Every flag has a BATON_* environment fallback; `baton -h` lists them.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

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
	// pause is the first pause before a partition runs again
	// (ownPartition); 0: a second.
	pause time.Duration
	// refresh is how often process mode with -partitions all lists the
	// topic's partitions (followTopic); 0: partitionRefresh, a minute.
	refresh time.Duration
	// action replaces the action above when set (tests); wrapSink lets the
	// demo and tests watch what reaches the sink.
	action   actionFunc
	wrapSink func(invocation, sink) sink
	// takeOnly: a run takes a free lease or goes, and never asks (a
	// fleet's pursuit of a free partition, fleet.go).
	takeOnly bool
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

// handler is the Lambda handler: one invocation a call, owning one
// partition, or each of "partitions", or each partition of a slot
// (partitions.go). Clients are made and
// closed inside each call; only the store outlives it.
func handler(cfg *config, d *deps) func(context.Context, json.RawMessage) (outcome, error) {
	return func(ctx context.Context, payload json.RawMessage) (outcome, error) {
		invs, list, sl, err := parseEvents(payload, cfg, d.now())
		if err != nil {
			d.log.Error("bad event: want "+eventShape, "err", err, "bytes", len(payload), "event", eventHead(payload))
			return outcome{End: endError}, err
		}
		if sl != nil {
			topic := invs[0].Topic
			if invs, err = slotInvocations(ctx, cfg, d, invs[0], *sl); err != nil {
				d.log.Error("listing the slot's partitions failed: Lambda retries the event", "topic", topic, "slot", sl.Slot, "slots", sl.Slots, "err", err)
				return outcome{End: endError}, err
			}
		}
		outs, err := runInvocations(ctx, cfg, d, invs, lambdaOwner(ctx), list)
		if list {
			return outcome{Partitions: outs}, err
		}
		return outs[0], err
	}
}

// runProcess owns each listed partition with its own lease until a signal
// ends the context or every partition is handed over. A listed partition
// the topic lacks ends it before anything is owned (startPartitions). With
// -partitions all it follows the topic (followTopic): a partition added
// while it runs is owned as the others are within one refresh. A partition
// a newer owner takes is logged as superseded, and when newer owners took
// them all, one line says the process exits because it was replaced. Every
// goroutine it starts has ended when it returns.
func runProcess(ctx context.Context, cfg *config, d *deps) error {
	parts, err := startPartitions(ctx, cfg, d)
	if err != nil {
		return err
	}
	tick, owner := d.now().UnixMilli(), newOwnerID("process")
	if cfg.MetricsAddr != "" {
		stop, err := serveMetrics(cfg.MetricsAddr, d)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.Balance {
		return runFleet(ctx, cfg, d, parts, owner)
	}
	// The watcher (followTopic) ends with ctx, or once no partition's runs
	// are left (each handed over or failed for good): the process ends
	// then, as it does with a fixed list. live counts the partitions whose
	// runs go on; own starts none once the watcher is stopped.
	wctx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards owned, live, errs and by, which grow as the topic does
		owned []int32
		live  int
		errs  []error
		by    []string // the newer owner of each partition superseded
	)
	logLeft := func() {
		mu.Lock()
		ps := slices.Clone(owned)
		mu.Unlock()
		logLeftRunning(cfg, d, ps, owner)
	}
	forcedExit.Store(&logLeft)
	defer forcedExit.CompareAndSwap(&logLeft, nil)
	// own is called by this goroutine and by the watcher's, both counted in
	// wg while they call it, so wg.Go never races wg.Wait from zero.
	own := func(ps []int32) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps {
			if wctx.Err() != nil {
				return
			}
			owned, live = append(owned, p), live+1
			inv := invocation{Topic: cfg.Topic, Partition: p, Tick: tick, Owner: fmt.Sprintf("%s/%d", owner, p)}
			wg.Go(func() {
				out, err := ownPartition(ctx, cfg, d, inv, true)
				newer, gone := superseded(ctx, cfg, d, inv, out, err, owner)
				mu.Lock()
				defer mu.Unlock()
				errs, live = append(errs, err), live-1
				if gone {
					by = append(by, newer)
				}
				if live == 0 {
					stopWatching()
				}
			})
		}
	}
	own(parts)
	if cfg.Partitions == nil {
		wg.Go(func() { followTopic(wctx, cfg, d, int32(len(parts)), own) })
	}
	wg.Wait()
	if len(owned) > 0 && len(by) == len(owned) {
		// Nothing failed and no signal came: newer owners took every
		// partition, as in a rolling deploy, or a second replica started.
		d.log.Info("every partition went to a newer owner: exiting because this process was replaced",
			"topic", cfg.Topic, "partitions", owned, "by", processes(by))
	}
	return errors.Join(errs...)
}

// startPartitions is what process mode owns at start: -partitions, or with
// -partitions all every partition the topic has. A listing that fails on
// an error that may heal is tried again, as a run that fails before owning
// is (ownPartition); a missing topic is given missingTopicTries tries. A
// listed partition the topic lacks is a usage error, found before anything
// is owned: a fixed list is checked once, here, and not waited for.
func startPartitions(ctx context.Context, cfg *config, d *deps) ([]int32, error) {
	all, err := listPartitionsRetrying(ctx, cfg, d, cfg.Topic)
	if err != nil || cfg.Partitions == nil {
		return all, err
	}
	n := int32(len(all))
	var lacking []string
	for _, p := range cfg.Partitions {
		if p >= n {
			lacking = append(lacking, strconv.Itoa(int(p)))
		}
	}
	if lacking == nil {
		return cfg.Partitions, nil
	}
	no, have := "partition", fmt.Sprintf("%d partitions, 0-%d", n, n-1)
	if len(lacking) > 1 {
		no = "partitions"
	}
	if n == 1 {
		have = "1 partition, 0"
	}
	return nil, usageError{optionErr("partitions", "topic %q has no %s %s (it has %s): list only partitions it has (a fixed list is checked once, at start), or give -partitions all to read every partition, those added later included",
		cfg.Topic, no, strings.Join(lacking, ", "), have)}
}

// superseded reports whether a partition's runs ended because a newer
// owner took it (handed over, fenced, or found newer before owning) while
// the process was not stopping, and logs it; newer names that owner.
func superseded(ctx context.Context, cfg *config, d *deps, inv invocation, out outcome, err error, owner string) (newer string, gone bool) {
	switch {
	case err != nil || ctx.Err() != nil:
		return "", false
	case out.End != endHanded && out.End != endFenced && out.End != endStale && out.End != endDuplicate:
		return "", false
	}
	newer = newerOwner(ctx, cfg, d, inv, owner)
	d.log.Info("superseded by a newer owner: this process no longer reads the partition",
		"topic", inv.Topic, "partition", inv.Partition, "by", newer, "end", out.End)
	return newer, true
}

// newerOwner names who holds a partition this process lost: the lease's
// owner, or its successor while the record still names this process;
// "unknown" when the record does not say (or was not read).
func newerOwner(ctx context.Context, cfg *config, d *deps, inv invocation, owner string) string {
	sctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	defer cancel()
	l, err := d.store.load(sctx, leaseKey(cfg.Group, inv.Topic, inv.Partition))
	switch {
	case err != nil:
		return "unknown"
	case l.Owner != "" && !strings.HasPrefix(l.Owner, owner+"/"):
		return l.Owner
	case l.Successor != "":
		return l.Successor
	}
	return "unknown"
}

// processes are the distinct owners behind runs' owner ids: process-1a2b
// for process-1a2b/3 and process-1a2b/3#1.
func processes(owners []string) []string {
	var ids []string
	for _, o := range owners {
		o, _, _ = strings.Cut(o, "#")
		if i := strings.LastIndex(o, "/"); i > 0 {
			o = o[:i]
		}
		if !slices.Contains(ids, o) {
			ids = append(ids, o)
		}
	}
	return ids
}

// partitionRefresh is how often process mode with -partitions all lists the
// topic's partitions (deps.refresh overrides it): a partition added is owned
// within it, as a Kafka group consumer's metadata refresh would find it.
const partitionRefresh = time.Minute

// followTopic lists the topic's partitions every refresh until ctx ends,
// and calls own with each partition numbered from have up that it finds. A
// listing that fails is logged once per cause and tried at the next
// refresh: partitions already owned go on meanwhile.
func followTopic(ctx context.Context, cfg *config, d *deps, have int32, own func([]int32)) {
	tk := time.NewTicker(cmp.Or(d.refresh, partitionRefresh))
	defer tk.Stop()
	cause := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		ps, err := listPartitions(ctx, cfg, d, cfg.Topic)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if err.Error() != cause {
				d.log.Warn("listing the topic's partitions failed; the partitions owned go on, and the next refresh tries again",
					"topic", cfg.Topic, "in", cmp.Or(d.refresh, partitionRefresh), "err", err)
			}
			cause = err.Error()
			continue
		}
		cause = ""
		if n := int32(len(ps)); n > have {
			d.log.Info("partitions added to the topic: owning them", "topic", cfg.Topic, "partitions", ps[have:], "was", have, "now", n)
			own(ps[have:])
			have = n
		}
	}
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
	if left == nil {
		// Every lease was handed over or released already: nothing to
		// wait for, and no alarm.
		d.log.Info("forced exit by a second signal: no lease left running", "topic", cfg.Topic, "partitions", "none")
		return
	}
	d.log.Error("forced exit by a second signal: leases left running; another owner takes each once it ends (plus -skew)",
		"topic", cfg.Topic, "partitions", strings.Join(left, ", "), "skew", cfg.Skew)
}

// ownPartition runs one partition (runInvocation), and runs it again after
// a pause when a new run can mend how the last one ended:
//   - its lease record was lost (endLost): nobody owns the partition, and
//     the new run takes the missing record, starting from the offset
//     committed to the Kafka group;
//   - it failed before owning on an error that may heal (see lasting): a
//     throttled or dropped lease read, a broker that did not answer in
//     time; one blip must not leave the partition unread;
//   - restartFailed (process mode) and this process owned the partition
//     before: a record the action cannot handle is dealt with meanwhile
//     (baton ctl seek) with no restart. Under Lambda the error is the
//     invocation's instead, and Lambda retries the event.
//
// The pause is d.pause (a second) doubling to 30 s. It stops when ctx ends,
// or when ctx's deadline (Lambda's) leaves a new run no time to read. The
// next run's tick is the first's plus one a try: newer than this process's
// (or invocation's) old runs, older than one started later, which keeps its
// place. It returns the last run's outcome; each run's is logged.
func ownPartition(ctx context.Context, cfg *config, d *deps, inv invocation, restartFailed bool) (outcome, error) {
	pause, tick, base := cmp.Or(d.pause, time.Second), inv.Tick, inv.Owner
	owned, failed, cause := false, 0, ""
	for n := 1; ; n++ {
		out, err := runInvocation(ctx, cfg, d, inv)
		cause = logDone(d, inv, out, err, cause)
		owned = owned || out.Epoch > 0
		if err != nil && out.Epoch == 0 {
			failed++ // runs in a row that failed before owning
		} else {
			failed = 0
		}
		why := rerun(out, err, owned && restartFailed, failed)
		if why == "" || ctx.Err() != nil || !timeLeft(ctx, cfg, d, pause) {
			return out, err
		}
		d.log.Warn(why, "topic", inv.Topic, "partition", inv.Partition, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
		inv.Tick, inv.Owner = tick+int64(n), fmt.Sprintf("%s#%d", base, n)
	}
}

// logDone logs the end of one run. A failure is an ERROR once per cause;
// its retries repeat it only at DEBUG. It returns the cause last logged.
func logDone(d *deps, inv invocation, out outcome, err error, cause string) string {
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelDebug
		if err.Error() != cause {
			level, cause = slog.LevelError, err.Error()
		}
	}
	d.log.Log(context.Background(), level, "partition done", "topic", inv.Topic, "partition", inv.Partition, "owner", inv.Owner,
		"tick", inv.Tick, "epoch", out.Epoch, "outcome", out, "err", err)
	return cause
}

// rerun says why a run that ended so is run again, or "" when it is not.
// failed counts the runs in a row, this one included, that failed before
// owning.
func rerun(out outcome, err error, restartFailed bool, failed int) string {
	switch {
	case out.End == endLost:
		return "lease record lost; starting again from the offset committed to the Kafka group"
	case err == nil:
		return ""
	case out.Epoch == 0 && !lasting(err, failed):
		return "partition failed before owning it; trying again"
	case restartFailed:
		return "partition failed after owning it; starting again"
	}
	return ""
}

// timeLeft reports whether a run started after pause still has time to
// read before ctx's deadline (as waitPoll judges it); with no deadline
// (process mode), always.
func timeLeft(ctx context.Context, cfg *config, d *deps, pause time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || dl.Sub(d.now().Add(pause)) >= 2*cfg.MarginFloor
}

// A configError is one only a person can mend: the options make no client,
// the topic lacks the partition, the brokers refuse the credentials. It
// says what its error says.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// missingTopicTries is how many runs in a row may find a topic missing
// before that is taken for the configuration's: a topic created beside
// baton shows up within them (a second doubling to 8 s: 15 s).
const missingTopicTries = 5

// refusals are the brokers' answers that no retry changes.
var refusals = []error{kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed, kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism,
	kerr.IllegalSaslState, kerr.InvalidTopicException}

// lasting reports whether an error that ended a run before it owned the
// partition is the configuration's, which no retry mends; failed counts
// the runs in a row that failed so. The rule: a tick from the future (bad
// input); a configError; a refusal (authorization, SASL, a bad topic name)
// or a TLS handshake refused either way; a topic missing missingTopicTries
// times in a row. Anything else may heal and is retried: a lease store or
// broker that did not answer, throttling, a leader moving.
func lasting(err error, failed int) bool {
	var verify *tls.CertificateVerificationError
	var op *net.OpError
	switch {
	case errors.Is(err, errFutureTick), errors.As(err, new(configError)):
		return true
	case slices.ContainsFunc(refusals, func(r error) bool { return errors.Is(err, r) }):
		return true
	case errors.As(err, &verify), errors.As(err, &op) && op.Op == "remote error": // crypto/tls's name for the peer's alert
		return true
	}
	return errors.Is(err, kerr.UnknownTopicOrPartition) && failed >= missingTopicTries
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

// listPartitions asks the brokers for the topic's partitions, 0..n-1.
func listPartitions(ctx context.Context, cfg *config, d *deps, topic string) ([]int32, error) {
	k, err := connect(ctx, cfg, d, invocation{Topic: topic})
	if err != nil {
		return nil, err
	}
	defer k.close()
	n, err := k.partitions(ctx, cfg, topic)
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
// Durations read as text ("1s") in both: JSON would write nanoseconds.
func newLogger(mode string, w io.Writer, getenv func(string) string) *slog.Logger {
	level, json := getenv("BATON_LOG_LEVEL"), !isTerminal(w)
	if mode == "lambda" {
		level, json = getenv("AWS_LAMBDA_LOG_LEVEL"), !strings.EqualFold(getenv("AWS_LAMBDA_LOG_FORMAT"), "text")
	}
	opts := &slog.HandlerOptions{Level: logLevel(level), ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
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
	if len(args) > 0 && args[0] == "template" {
		return templateMain(args[1:], io)
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
		if errors.As(err, new(usageError)) {
			return 2 // a value the topic refuses: -partitions
		}
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
	cfg.storeLog = log
	st, err := newStore(ctx, *cfg)
	if err != nil {
		return err
	}
	d := &deps{store: st, kafka: kgo.NewClient, now: time.Now, log: log, stdout: io.stdout, emf: emfWriter(cfg, io.stdout, io.stderr)}
	switch {
	case cfg.Mode == "lambda":
		lambda.StartWithOptions(lambdaHandler(handler(cfg, d)), lambda.WithContext(ctx))
		return nil
	case isTerminal(io.stderr):
		// A person is watching: a status line a partition every few seconds.
		d.progress = terminalProgress
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
