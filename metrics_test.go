// metrics_test.go checks the EMF lines of a handler run against what it did.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// emfLine is one EMF line as CloudWatch reads it.
type emfLine struct {
	AWS struct {
		Timestamp         int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct{ Name, Unit string }
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	values map[string]any
}

// parseEMF checks each line is EMF: every dimension and metric it declares
// is present at the top level, metrics as numbers.
func parseEMF(t *testing.T, out []byte) []emfLine {
	t.Helper()
	var lines []emfLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l emfLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not JSON: %s: %v", sc.Text(), err)
		}
		json.Unmarshal(sc.Bytes(), &l.values)
		if l.AWS.Timestamp == 0 || len(l.AWS.CloudWatchMetrics) != 1 {
			t.Fatalf("not EMF (no _aws.Timestamp or CloudWatchMetrics): %s", sc.Text())
		}
		cw := l.AWS.CloudWatchMetrics[0]
		if cw.Namespace != emfNamespace || len(cw.Dimensions) != 1 || len(cw.Metrics) == 0 {
			t.Fatalf("bad CloudWatchMetrics: %s", sc.Text())
		}
		for _, d := range cw.Dimensions[0] {
			if _, ok := l.values[d].(string); !ok {
				t.Fatalf("dimension %s missing or not a string: %s", d, sc.Text())
			}
		}
		for _, m := range cw.Metrics {
			if _, ok := l.values[m.Name].(float64); !ok {
				t.Fatalf("metric %s missing or not a number: %s", m.Name, sc.Text())
			}
		}
		lines = append(lines, l)
	}
	return lines
}

func (l emfLine) num(name string) int {
	v, _ := l.values[name].(float64)
	return int(v)
}

func TestMetrics_emf_counts_match_the_run(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 1, "src", "dlq")
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	cfg.DLQ = "dlq"
	var emf bytes.Buffer
	d, _ := testDeps(t, newMemStore(), newRecorder(nil))
	d.emf = &emf
	// Keep even values, dead-letter multiples of 7.
	d.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
		var n int
		fmt.Sscan(string(r.Value), &n)
		switch {
		case n%7 == 0:
			return nil, errors.New("seven")
		case n%2 == 0:
			return append(out, r), nil
		}
		return out, nil
	}
	produceTo(t, cfg.Brokers, "src", 0, 100) // values 0 to 99
	hctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	defer cancel()
	out, err := handler(cfg, d)(hctx, []byte(`{"topic":"src","partition":0}`))
	if err != nil || out.Records != 100 {
		t.Fatalf("run: %+v, %v", out, err)
	}
	lines := parseEMF(t, emf.Bytes())
	if len(lines) == 0 {
		t.Fatal("no EMF line at the end of the run")
	}
	var in, written, dead, calls int
	for _, l := range lines {
		in, written, dead, calls = in+l.num("RecordsIn"), written+l.num("RecordsOut"), dead+l.num("DeadLettered"), calls+l.num("LeaseStoreCalls")
		if got := l.values["Partition"]; got != "0" || l.values["Topic"] != "src" || l.values["Group"] != cfg.Group {
			t.Errorf("dimensions %v", l.values)
		}
	}
	if in != 100 || written != out.Written || dead != out.DeadLettered || written != 42 || dead != 15 {
		t.Fatalf("EMF counts in=%d out=%d dead=%d; the run handled %d, wrote %d, dead-lettered %d (want 100, 42, 15)",
			in, written, dead, out.Records, out.Written, out.DeadLettered)
	}
	if calls < 3 {
		t.Fatalf("LeaseStoreCalls=%d: a run loads, takes and releases at least", calls)
	}
	last := lines[len(lines)-1]
	if !slices.ContainsFunc(last.AWS.CloudWatchMetrics[0].Metrics, func(m struct{ Name, Unit string }) bool { return m.Name == "Lag" }) {
		t.Fatalf("the last line has no Lag: %v", last.values)
	}
}

// An empty partition is not one record behind: its Lag is 0, in the EMF
// lines and in the progress line a person reads.
func TestMetrics_empty_partition_lag_is_zero(t *testing.T) {
	t.Parallel()
	cluster := newCluster(t, 1, "src")
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	var emf, logs bytes.Buffer
	d, _ := testDeps(t, newMemStore(), nil)
	d.emf, d.progress = &emf, time.Millisecond
	d.log = slog.New(slog.NewJSONHandler(&logs, nil))
	hctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	defer cancel()
	if _, err := handler(cfg, d)(hctx, []byte(`{"topic":"src","partition":0}`)); err != nil {
		t.Fatal(err)
	}
	lines := parseEMF(t, emf.Bytes())
	if len(lines) == 0 {
		t.Fatal("no EMF line")
	}
	for _, l := range lines {
		if _, ok := l.values["Lag"]; !ok || l.num("Lag") != 0 {
			t.Fatalf("Lag on an empty partition: %v, want 0", l.values["Lag"])
		}
	}
	progress := 0
	for _, line := range bytes.Split(logs.Bytes(), []byte("\n")) {
		var f map[string]any
		if json.Unmarshal(line, &f) != nil || f["msg"] != "progress" {
			continue
		}
		progress++
		if f["lag"] != float64(0) || f["records_per_s"] == nil || f["offset"] == nil {
			t.Fatalf("progress line %s: want offset, lag 0 and records_per_s", line)
		}
	}
	if progress == 0 {
		t.Fatalf("no progress line in %s", logs.String())
	}
}

// BATON_EMF=0 turns the EMF lines off in process mode, on a terminal or
// off it; 1 turns them on; unset, they are on but on a terminal. Under
// Lambda they are the metrics: always on stdout, and 0 is refused.
func TestMetrics_emf_switch(t *testing.T) {
	var stdout, file bytes.Buffer
	// isTerminal takes any character device for one: /dev/null will do.
	term, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	must(t, err)
	defer term.Close()
	for _, tc := range []struct {
		mode, emf string
		stderr    io.Writer
		want      io.Writer
	}{
		{"process", "", &file, &file},
		{"process", "", term, nil},
		{"process", "1", &file, &file},
		{"process", "1", term, term},
		{"process", "0", &file, nil},
		{"process", "0", term, nil},
		{"lambda", "", &file, &stdout},
		{"lambda", "1", &file, &stdout},
	} {
		args := []string{"-mode", tc.mode, "-brokers", "b:9092", "-topic", "src"}
		cfg, err := parseConfig(args, fakeEnv(map[string]string{"BATON_EMF": tc.emf}))
		if err != nil {
			t.Fatalf("%s BATON_EMF=%q: %v", tc.mode, tc.emf, err)
		}
		if got := emfWriter(cfg, &stdout, tc.stderr); got != tc.want {
			t.Errorf("%s BATON_EMF=%q, stderr %T: EMF lines to %v, want %v", tc.mode, tc.emf, tc.stderr, emfTarget(got, &stdout, term), emfTarget(tc.want, &stdout, term))
		}
	}
	for _, tc := range []struct{ mode, emf, want string }{
		{"process", "yes", `"yes"`},
		{"process", "true", `"true"`},
		{"lambda", "0", "Lambda"},
	} {
		_, err := parseConfig([]string{"-mode", tc.mode, "-brokers", "b:9092", "-topic", "src"}, fakeEnv(map[string]string{"BATON_EMF": tc.emf}))
		if err == nil || !strings.Contains(err.Error(), "BATON_EMF") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s BATON_EMF=%q: error %v; want one naming BATON_EMF and %s", tc.mode, tc.emf, err, tc.want)
		}
	}
}

// emfTarget says which of the writers w is.
func emfTarget(w, stdout, term io.Writer) string {
	switch w {
	case nil:
		return "none"
	case stdout:
		return "stdout"
	case term:
		return "stderr (a terminal)"
	}
	return "stderr (a file)"
}
