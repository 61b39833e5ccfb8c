// metrics.go holds baton's metrics: CloudWatch Embedded Metric Format lines
// (read from the logs by CloudWatch: no SDK calls, no PutMetricData cost),
// and the store-call counter they need.

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// emfNamespace is the CloudWatch namespace of baton's metrics.
const emfNamespace = "baton"

// A tally of one owned run since its last metrics line.
type figures struct {
	in, out, dead, calls, rewinds, expired int64
}

// emfMetric names one metric and its unit, in the order lines carry them.
type emfMetric struct{ Name, Unit string }

var emfMetrics = []emfMetric{
	{"RecordsIn", "Count"}, {"RecordsOut", "Count"}, {"DeadLettered", "Count"},
	{"Lag", "Count"}, {"HandoffGap", "Milliseconds"}, {"CommitLatency", "Milliseconds"},
	{"LeaseStoreCalls", "Count"}, {"SinkRewinds", "Count"}, {"RecordsExpiredUnread", "Count"},
	{"UnscheduledPartitions", "Count"}, // a slot's partitions past what its invocation was sized for (partitions.go)
}

// emfWriter is where EMF lines go: stdout under Lambda, where CloudWatch
// reads them; in process mode stderr, beside the logs, so stdout holds only
// records. On a terminal they would bury the log lines, so there only when
// BATON_EMF=1 asks for them; BATON_EMF=0 turns them off anywhere in process
// mode. nil: none.
func emfWriter(cfg *config, stdout, stderr io.Writer) io.Writer {
	switch {
	case cfg.Mode == "lambda":
		return stdout
	case cfg.EMF == "0", cfg.EMF == "" && isTerminal(stderr):
		return nil
	}
	return stderr
}

// emfMu keeps EMF lines whole when partitions share one writer.
var emfMu sync.Mutex

// writeEMF writes one line in the Embedded Metric Format: the dimension
// values and metric values at the top level, and _aws saying which is which.
func writeEMF(w io.Writer, at time.Time, dims map[string]string, values map[string]any) {
	var names []string
	var metrics []emfMetric
	line := map[string]any{}
	for k, v := range dims {
		names = append(names, k)
		line[k] = v
	}
	slices.Sort(names)
	for _, m := range emfMetrics {
		if v, ok := values[m.Name]; ok {
			metrics = append(metrics, m)
			line[m.Name] = v
		}
	}
	line["_aws"] = map[string]any{
		"Timestamp": at.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": emfNamespace, "Dimensions": [][]string{names}, "Metrics": metrics,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return
	}
	emfMu.Lock()
	defer emfMu.Unlock()
	w.Write(append(b, '\n'))
}

// promRegistry sums every partition's figures for /metrics in process
// mode (-metrics-addr), in Prometheus's text format.
type promRegistry struct {
	mu    sync.Mutex
	parts map[promKey]*promFigures
}

type promKey struct {
	group, topic string
	partition    int32
}

type promFigures struct {
	figures
	lag int64
}

func newPromRegistry() *promRegistry { return &promRegistry{parts: map[promKey]*promFigures{}} }

var promMetrics = []struct {
	name, kind, help string
	value            func(*promFigures) int64
}{
	{"baton_records_in_total", "counter", "Records read from the source partition.", func(f *promFigures) int64 { return f.in }},
	{"baton_records_out_total", "counter", "Records written to the sink.", func(f *promFigures) int64 { return f.out }},
	{"baton_dead_lettered_total", "counter", "Records sent to the dead-letter topic.", func(f *promFigures) int64 { return f.dead }},
	{"baton_lease_store_calls_total", "counter", "Calls to the lease store.", func(f *promFigures) int64 { return f.calls }},
	{"baton_sink_rewinds_total", "counter", "Times the sink failed and the owner read again from its last commit.", func(f *promFigures) int64 { return f.rewinds }},
	{"baton_records_expired_unread_total", "counter", "Offsets retention deleted before they were read.", func(f *promFigures) int64 { return f.expired }},
	{"baton_lag_records", "gauge", "High watermark minus the next offset to read.", func(f *promFigures) int64 { return f.lag }},
}

func (r *promRegistry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]promKey, 0, len(r.parts))
	for k := range r.parts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b promKey) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	for _, m := range promMetrics {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, k := range keys {
			fmt.Fprintf(w, "%s{group=%q,topic=%q,partition=\"%d\"} %d\n", m.name, k.group, k.topic, k.partition, m.value(r.parts[k]))
		}
	}
}

// counted counts the calls an invocation makes to the lease store.
type counted struct {
	store
	n *atomic.Int64
}

func (c counted) load(ctx context.Context, key string) (lease, error) {
	c.n.Add(1)
	return c.store.load(ctx, key)
}

func (c counted) take(ctx context.Context, key string, seen lease, cl claim, exp int64) (lease, error) {
	c.n.Add(1)
	return c.store.take(ctx, key, seen, cl, exp)
}

func (c counted) ask(ctx context.Context, key string, epoch int64, cl claim, until int64) error {
	c.n.Add(1)
	return c.store.ask(ctx, key, epoch, cl, until)
}

func (c counted) handOver(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	c.n.Add(1)
	return c.store.handOver(ctx, l, offset, exp)
}

func (c counted) commit(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	c.n.Add(1)
	return c.store.commit(ctx, l, offset, exp)
}

func (c counted) release(ctx context.Context, l lease, offset int64) error {
	c.n.Add(1)
	return c.store.release(ctx, l, offset)
}
