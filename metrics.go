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
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// emfNamespace is the CloudWatch namespace of baton's metrics.
const emfNamespace = "baton"

// A tally of one owned run since its last metrics line.
type figures struct {
	in, out, dead, calls, rewinds int64
}

// countsSince returns the run's counts since *last, and moves *last on.
func (p *run) countsSince(last *figures) figures {
	now := figures{int64(p.records), int64(p.written), int64(p.deadLettered), p.calls.Load(), int64(p.rewound)}
	d := figures{now.in - last.in, now.out - last.out, now.dead - last.dead, now.calls - last.calls, now.rewinds - last.rewinds}
	*last = now
	return d
}

// lag is how far the owner is behind the partition's end: 0 on an empty
// partition, where the next offset is still unknown (-1).
func (p *run) lag() int64 { return max(0, p.highWater-max(p.next, 0)) }

// progress logs one status line: where the owner is, how far behind, and
// its rate since the last line.
func (p *run) progress(now time.Time) {
	since := now.Sub(p.reported)
	if p.reported.IsZero() {
		since = now.Sub(p.started)
	}
	rate := 0.0
	if since > 0 {
		rate = float64(p.records-p.reportedRecords) / since.Seconds()
	}
	p.reported, p.reportedRecords = now, p.records
	p.log.Info("progress", "offset", p.committed, "lag", p.lag(), "records_per_s", math.Round(rate),
		"records", p.records, "written", p.written, "dead_lettered", p.deadLettered)
}

// emfMetric names one metric and its unit, in the order lines carry them.
type emfMetric struct{ Name, Unit string }

var emfMetrics = []emfMetric{
	{"RecordsIn", "Count"}, {"RecordsOut", "Count"}, {"DeadLettered", "Count"},
	{"Lag", "Count"}, {"HandoffGap", "Milliseconds"}, {"CommitLatency", "Milliseconds"},
	{"LeaseStoreCalls", "Count"}, {"SinkRewinds", "Count"},
}

// emitMetrics writes one EMF line: counts since the previous line, lag and
// the slowest commit now. It is called once a minute and when the run ends.
func (p *run) emitMetrics() {
	if p.d.emf == nil {
		return
	}
	d := p.countsSince(&p.sent)
	values := map[string]any{
		"RecordsIn": d.in, "RecordsOut": d.out, "DeadLettered": d.dead, "LeaseStoreCalls": d.calls, "SinkRewinds": d.rewinds,
		"Lag":           p.lag(),
		"CommitLatency": float64(p.slowestCommit.Microseconds()) / 1000,
	}
	if p.gap > 0 {
		values["HandoffGap"] = float64(p.gap.Microseconds()) / 1000
		p.gap = 0
	}
	p.slowestCommit = 0
	writeEMF(p.d.emf, p.d.now(), map[string]string{
		"Group": p.cfg.Group, "Topic": p.inv.Topic, "Partition": strconv.Itoa(int(p.inv.Partition)),
	}, values)
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

// publish adds what the run did since it last published.
func (p *run) publish() {
	if p.d.prom == nil {
		return
	}
	d := p.countsSince(&p.published)
	r := p.d.prom
	r.mu.Lock()
	defer r.mu.Unlock()
	k := promKey{p.cfg.Group, p.inv.Topic, p.inv.Partition}
	f := r.parts[k]
	if f == nil {
		f = &promFigures{}
		r.parts[k] = f
	}
	f.in, f.out, f.dead, f.calls, f.rewinds = f.in+d.in, f.out+d.out, f.dead+d.dead, f.calls+d.calls, f.rewinds+d.rewinds
	f.lag = p.lag()
}

var promMetrics = []struct {
	name, kind, help string
	value            func(*promFigures) int64
}{
	{"baton_records_in_total", "counter", "Records read from the source partition.", func(f *promFigures) int64 { return f.in }},
	{"baton_records_out_total", "counter", "Records written to the sink.", func(f *promFigures) int64 { return f.out }},
	{"baton_dead_lettered_total", "counter", "Records sent to the dead-letter topic.", func(f *promFigures) int64 { return f.dead }},
	{"baton_lease_store_calls_total", "counter", "Calls to the lease store.", func(f *promFigures) int64 { return f.calls }},
	{"baton_sink_rewinds_total", "counter", "Times the sink failed and the owner read again from its last commit.", func(f *promFigures) int64 { return f.rewinds }},
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
