// cli_test.go runs baton's command lines in-process, as a person types them:
// every bad one exits 2 naming the field and leaves the lease alone, every
// command the documents show works, and REFERENCE.md's settings table is
// `baton -h`.

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// lockedBuffer is an output written from several goroutines, as a file is.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runBaton runs one command line with env as its whole environment.
func runBaton(ctx context.Context, args []string, env map[string]string) (code int, stdout, stderr string) {
	var out, errs lockedBuffer
	code = batonMain(ctx, args, sysio{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errs})
	return code, out.String(), errs.String()
}

// produceTo writes n records to one partition and returns when they are acked.
func produceTo(t *testing.T, brokers []string, topic string, p int32, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	must(t, err)
	defer cl.Close()
	for i := range n {
		cl.Produce(ctxT(t), &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	must(t, cl.Flush(ctxT(t)))
}

// must fails the test on err, as t.Fatal(err).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func with(env map[string]string, kv ...string) map[string]string {
	out := maps.Clone(env)
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// cliRig is this build's store, a cluster with topics src (2 partitions,
// 103 records in partition p) and out, and the environment that names them
// and a group of the test's own.
func cliRig(t *testing.T, p int32) (s store, env map[string]string, group string) {
	s, storeEnv := cliStore(t)
	cluster := newCluster(t, 2, "src", "out")
	produceTo(t, cluster.ListenAddrs(), "src", p, 103)
	group = strings.ReplaceAll(testKey(t), "/", ".")
	return s, with(storeEnv, "BATON_BROKERS", strings.Join(cluster.ListenAddrs(), ","), "BATON_TOPIC", "src", "BATON_GROUP", group), group
}

func TestBadInput_command_lines(t *testing.T) {
	s, env, group := cliRig(t, 0)

	// A running owner's lease with a pending seek: no bad command may
	// touch it (a -time after the newest record once cleared the seek).
	key := leaseKey(group, "src", 0)
	l, err := s.take(ctxT(t), key, lease{}, claim{Owner: "owner", Tick: 1000}, in(time.Hour))
	must(t, err)
	_, err = s.control(ctxT(t), l, 50, false)
	must(t, err)
	before := mustLoad(t, s, key)

	other := otherStoreArgs()
	otherName := strings.TrimPrefix(other[0], "-")
	freshTable := fmt.Sprintf("baton-cli-never-%d", time.Now().UnixNano())
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	envCreate := map[string]int{"dynamodb": 1, "redis": 2}[storeBuild] // table missing; or the flag refused
	tests := []struct {
		name string
		args []string
		env  map[string]string // over env
		code int
		want []string // what the message must say, the field first
	}{
		// timings (issue 13 item 6)
		{"skew not under the TTL", []string{"-skew", "10m", "-ttl", "4s"}, nil, 2, []string{"-skew (BATON_SKEW)", "10m0s", "less than -ttl (4s)"}},
		{"TTL and commit interval too short", []string{"-ttl", "2ms", "-commit-interval", "1ms"}, nil, 2,
			[]string{"-ttl (BATON_TTL): want at least 1s, got 2ms", "-commit-interval (BATON_COMMIT_INTERVAL): want at least 100ms", "got 1ms"}},
		{"commit interval over half the TTL", []string{"-ttl", "4s", "-commit-interval", "3s"}, nil, 2, []string{"-commit-interval (BATON_COMMIT_INTERVAL)", "half of -ttl (4s)"}},
		{"kafka+txn timeout over the brokers' cap", []string{"-sink", "kafka+txn://out", "-ttl", "15m"}, nil, 2, []string{"-ttl (BATON_TTL)", "15m0s", "18m45s"}},
		{"timing from the environment", nil, map[string]string{"BATON_TTL": "2ms"}, 2, []string{"-ttl (BATON_TTL)"}},
		// the other build's store (item 4)
		{"the other build's store flag", other, nil, 2, []string{other[0], "go build"}},
		{"the other build's store variable", nil, map[string]string{optionEnv(t, otherName): other[1]}, 2, []string{other[0], optionEnv(t, otherName), "go build"}},
		// switches (item 7)
		{"a value after a switch", []string{"-create-table", "true", "-sink", "discard"}, nil, 2, []string{"-create-table (BATON_CREATE_TABLE)", "-create-table=true"}},
		{"a switch that is not true or false", []string{"-tls=maybe"}, nil, 2, []string{"-tls (BATON_TLS)", "maybe"}},
		{"a switch variable that is not true or false", nil, map[string]string{"BATON_TLS": "yes please"}, 2, []string{"-tls (BATON_TLS)"}},
		// reading its own output (item 2)
		{"the sink is the source", []string{"-sink", "kafka://src"}, nil, 2, []string{"-sink (BATON_SINK)", `"src"`}},
		{"the DLQ is the source", []string{"-dlq", "src"}, nil, 2, []string{"-dlq (BATON_DLQ)", `"src"`}},
		{"an event topic is the sink", []string{"-mode", "lambda", "-topics", "out", "-sink", "kafka://out"}, nil, 2, []string{"-sink (BATON_SINK)", "-topics", `"out"`}},
		{"lambda mode without a topic", []string{"-mode", "lambda"}, map[string]string{"BATON_TOPIC": ""}, 2, []string{"-topic (BATON_TOPIC)", "lambda mode"}},
		// names (item 10)
		{"lease table name too short", []string{"-lease-table", "t1"}, nil, 2, []string{"-lease-table (BATON_LEASE_TABLE)"}},
		{"unknown flag", []string{"-frobnicate"}, nil, 2, []string{"-frobnicate"}},
		// metric lines (issue 22)
		{"BATON_EMF neither 0 nor 1", nil, map[string]string{"BATON_EMF": "yes"}, 2, []string{"BATON_EMF", `"yes"`}},
		{"BATON_EMF=0 under Lambda", []string{"-mode", "lambda"}, map[string]string{"BATON_EMF": "0"}, 2, []string{"BATON_EMF", "Lambda"}},
		{"a stray argument", []string{"orders"}, nil, 2, []string{`"orders"`}},
		// ctl (items 3 and 8)
		{"ctl unknown command", []string{"ctl", "frobnicate"}, nil, 2, []string{`"frobnicate"`, "status, seek, pause, resume"}},
		{"ctl without a command", []string{"ctl"}, nil, 2, []string{"status, seek, pause, resume"}},
		{"ctl flag of another command", []string{"ctl", "status", "-offset", "5"}, nil, 2, []string{"status takes no -offset"}},
		{"ctl seek without where", []string{"ctl", "seek", "-partition", "0"}, nil, 2, []string{"-offset", "-time"}},
		{"ctl seek to a negative offset", []string{"ctl", "seek", "-partition", "0", "-offset", "-3"}, nil, 2, []string{"-offset", `"-3"`}},
		{"ctl seek past the end", []string{"ctl", "seek", "-partition", "0", "-offset", "999999"}, nil, 2, []string{"-offset 999999", "0 (start) to 103 (end)"}},
		{"ctl seek to a time after the newest record", []string{"ctl", "seek", "-partition", "0", "-time", future}, nil, 2,
			[]string{"-time " + future, "newest record in partition 0 (written at 20", "end is offset 103"}},
		{"ctl seek to a bad time", []string{"ctl", "seek", "-partition", "0", "-time", "noon"}, nil, 2, []string{"-time", `"noon"`}},
		{"ctl seek on a partition the topic lacks", []string{"ctl", "seek", "-partition", "9", "-offset", "0"}, nil, 2, []string{"-partition", "0..1"}},
		{"ctl seek on all partitions", []string{"ctl", "seek", "-partition", "all", "-offset", "0"}, nil, 2, []string{"-partition", `"all"`}},
		{"ctl pause without a partition", []string{"ctl", "pause"}, nil, 2, []string{"-partition"}},
		{"ctl with a bad baton flag", []string{"ctl", "status", "-ttl", "1ms"}, nil, 2, []string{"-ttl (BATON_TTL)"}},
		{"ctl without a topic", []string{"ctl", "status"}, map[string]string{"BATON_TOPIC": ""}, 2, []string{"-topic (BATON_TOPIC)"}},
		{"ctl status -create-table", []string{"ctl", "status", "-create-table"}, map[string]string{"BATON_LEASE_TABLE": freshTable}, 2, []string{"-create-table", "never creates"}},
		{"ctl status with BATON_CREATE_TABLE", []string{"ctl", "status"}, map[string]string{"BATON_LEASE_TABLE": freshTable, "BATON_CREATE_TABLE": "true"}, envCreate, nil},
		// help (item 8): exit 0, on stdout
		{"baton -h", []string{"-h"}, nil, 0, []string{"baton ctl", "-topics", "BATON_SASL_PASSWORD", "BATON_LOG_LEVEL", "Exit status"}},
		{"ctl -h", []string{"ctl", "-h"}, nil, 0, []string{"status", "seek", "pause", "resume", "-partition", "-offset", "-time"}},
		{"ctl status -h", []string{"ctl", "status", "-h"}, nil, 0, []string{"usage: baton ctl", "-partition"}},
		{"ctl seek -h", []string{"ctl", "seek", "-h"}, nil, 0, []string{"-partition", "-offset", "-time", "start", "end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctxT(t), 15*time.Second)
			defer cancel()
			code, stdout, stderr := runBaton(ctx, tt.args, withParams(env, tt.env))
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("the message does not say %q:\n%s%s", w, stdout, stderr)
				}
			}
			if got := mustLoad(t, s, key); got != before {
				t.Errorf("lease changed:\ngot  %+v\nwant %+v", got, before)
			}
			if tableExists(t, freshTable) {
				t.Fatalf("table %s created", freshTable)
			}
		})
	}
}

// The same rig accepts the good seeks, each where it says.
func TestCtl_seek_range(t *testing.T) {
	s, env, group := cliRig(t, 1)
	key := leaseKey(group, "src", 1)
	_, err := s.take(ctxT(t), key, lease{}, claim{Owner: "owner", Tick: 1000}, in(time.Hour))
	must(t, err)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		where []string
		seek  int64
	}{
		{[]string{"-offset", "end"}, 103},
		{[]string{"-offset", "start"}, 0},
		{[]string{"-offset", "103"}, 103},
		{[]string{"-offset=57"}, 57},
		{[]string{"-time", past}, 0},
	} {
		code, stdout, stderr := runBaton(ctxT(t), append([]string{"ctl", "seek", "-partition", "1"}, tc.where...), env)
		if l := mustLoad(t, s, key); code != 0 || l.Seek != tc.seek {
			t.Errorf("seek %v: exit %d, lease seek %d, want 0 and %d\n%s%s", tc.where, code, l.Seek, tc.seek, stdout, stderr)
		}
	}
	code, stdout, stderr := runBaton(ctxT(t), []string{"ctl", "status"}, env)
	if code != 0 || !regexp.MustCompile(`(?m)^1\s+owner\s+1970-01-01T00:00:01Z\s+1\s+running\s+`).MatchString(stdout) || !strings.Contains(stdout, "SUCCESSOR TICK") {
		t.Errorf("status: exit %d, want 0 and partition 1 with its owner's tick:\n%s%s", code, stdout, stderr)
	}
}

func TestSignal_gate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		sigs []os.Signal
		at   []time.Duration // since the first
		want []int
	}{
		{"one stop", []os.Signal{syscall.SIGTERM}, []time.Duration{0}, []int{signalStop}},
		{"one stop delivered twice", []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, []time.Duration{0, 10 * time.Millisecond}, []int{signalStop, signalRepeat}},
		{"the same signal a second later", []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, []time.Duration{0, time.Second}, []int{signalStop, signalForce}},
		{"another signal at once", []os.Signal{syscall.SIGTERM, os.Interrupt}, []time.Duration{0, time.Millisecond}, []int{signalStop, signalForce}},
		{"Ctrl-C twice, slowly", []os.Signal{os.Interrupt, os.Interrupt, os.Interrupt}, []time.Duration{0, 300 * time.Millisecond, 1500 * time.Millisecond}, []int{signalStop, signalRepeat, signalForce}},
	} {
		var g signalGate
		for i, sig := range tc.sigs {
			if got := g.next(sig, t0.Add(tc.at[i])); got != tc.want[i] {
				t.Errorf("%s: signal %d: got %d, want %d", tc.name, i+1, got, tc.want[i])
			}
		}
	}
}

// docs are the documents whose commands TestReadme_commands runs.
var docs = []string{"README.md", "REFERENCE.md", "DESIGN.md", "PERFORMANCE.md"}

// readmeLines are the shell lines of the documents' sh blocks, continuations
// joined and comments dropped.
func readmeLines(t *testing.T) []string {
	t.Helper()
	var lines []string
	for _, doc := range docs {
		lines = append(lines, shLines(t, doc)...)
	}
	return lines
}

// shLines are the shell lines of one document's sh blocks.
func shLines(t *testing.T, doc string) []string {
	t.Helper()
	b, err := os.ReadFile(doc)
	must(t, err)
	var lines []string
	in, cont := false, ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		case !in:
			continue
		}
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if c, ok := strings.CutSuffix(line, `\`); ok {
			cont += c + " "
			continue
		}
		if line = strings.TrimSpace(cont + line); line != "" {
			lines = append(lines, line)
		}
		cont = ""
	}
	return lines
}

// readmeSkipped are the commands README shows that this test cannot run
// here, each with the reason.
var readmeSkipped = map[string]string{
	"./bootstrap.sh": "installs and starts servers, builds zips or deploys to AWS: bootstrap.sh's own business",
	"aws":            "needs an AWS account",
	"export":         "sets the shell's environment for the deploy",
	".":              "reads the local store's settings into the shell; the test sets its own",
	"go build":       "builds the binary the lines after it run; this test runs the same code in process",
}

// TestReadme_commands runs every baton command line the documents (docs)
// show, in their order, against kfake and this build's local store: placeholders (B, T,
// localhost:9092, baton-leases) become the test's; a process runs until it
// owns every partition, then stops as on SIGTERM.
func TestReadme_commands(t *testing.T) {
	s, storeEnv := cliStore(t)
	cluster := newCluster(t, 6, "orders")
	produceTo(t, cluster.ListenAddrs(), "orders", 3, 1300)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	placeholders := map[string]string{"B": brokers, "localhost:9092": brokers, "T": "orders"}
	group := strings.ReplaceAll(testKey(t), "/", ".")
	env := with(storeEnv, "BATON_GROUP", group)
	ran := 0
	for _, line := range readmeLines(t) {
		f := strings.Fields(line)
		r, ok := readmeSkipped[f[0]]
		if !ok && len(f) > 1 {
			r, ok = readmeSkipped[f[0]+" "+f[1]]
		}
		if ok {
			t.Logf("not run (%s): %s", r, line)
			continue
		}
		var args []string
		switch {
		case len(f) >= 2 && f[0] == "go" && f[1] == "run" && f[2] == ".":
			args = f[3:]
		case f[0] == "baton" || f[0] == "./baton":
			args = f[1:]
		default:
			t.Errorf("README command %q: neither baton nor a known skip; add it to readmeSkipped with a reason or make it run here", line)
			continue
		}
		for i, a := range args {
			if v, ok := placeholders[a]; ok {
				args[i] = v
			}
		}
		args = readmeStoreArgs(args, env)
		ran++
		t.Run(line, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
			defer cancel()
			if i := slices.Index(args, "-mode"); i >= 0 && i+1 < len(args) && args[i+1] == "process" {
				// Stop it, as a SIGTERM would, once every partition has an owner.
				go func() {
					defer cancel()
					for ctx.Err() == nil && runningLeases(s, group) < 6 {
						time.Sleep(50 * time.Millisecond)
					}
				}()
			}
			runEnv := env
			if len(args) == 0 {
				runEnv = nil // the demo: a newcomer's shell sets nothing of baton's
			}
			code, stdout, stderr := runBaton(ctx, args, runEnv)
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %.2000s\nstderr: %.2000s", code, stdout, stderr)
			}
			if len(args) > 0 && args[0] == "ctl" && args[1] == "status" && !strings.Contains(stdout, "PARTITION") {
				t.Errorf("status printed no table:\n%s", stdout)
			}
		})
	}
	if ran < 4 {
		t.Fatalf("ran %d README commands; the parser must have lost some", ran)
	}
}

// runningLeases counts the group's orders partitions with an owner running.
func runningLeases(s store, group string) int {
	n := 0
	for p := range int32(6) {
		if l, err := s.load(context.Background(), leaseKey(group, "orders", p)); err == nil && l.State == stateRunning {
			n++
		}
	}
	return n
}

// TestReadme_flag_table checks that REFERENCE.md's settings table and `baton -h` name
// the same flags with the same variables, and the same variables without one.
func TestReadme_flag_table(t *testing.T) {
	b, err := os.ReadFile("REFERENCE.md")
	must(t, err)
	readme := map[string]bool{}
	in := false
	flagRe, envRe := regexp.MustCompile("`-([a-z-]+)`"), regexp.MustCompile("`(BATON_[A-Z_]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| flag | environment |") {
			in = true
			continue
		}
		if in && !strings.HasPrefix(line, "|") {
			break
		}
		cols := strings.Split(line, "|")
		if !in || len(cols) < 4 || strings.HasPrefix(cols[1], "---") {
			continue
		}
		flags, envs := flagRe.FindAllStringSubmatch(cols[1], -1), envRe.FindAllStringSubmatch(cols[2], -1)
		if strings.TrimSpace(cols[1]) == "(no flag)" {
			for _, e := range envs {
				readme[e[1]] = true
			}
			continue
		}
		if len(flags) != len(envs) {
			t.Errorf("REFERENCE.md row %q: %d flags, %d variables", line, len(flags), len(envs))
			continue
		}
		for i := range flags {
			readme["-"+flags[i][1]+" "+envs[i][1]] = true
		}
	}
	var out bytes.Buffer
	usage(&out)
	help := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  (-[a-z-]+  )?(BATON_[A-Z_]+)$`).FindAllStringSubmatch(out.String(), -1) {
		help[strings.TrimSpace(strings.TrimSpace(m[1])+" "+m[2])] = true
	}
	for k := range readme {
		if !help[k] {
			t.Errorf("REFERENCE.md's settings table has %s; baton -h does not", k)
		}
	}
	for k := range help {
		if !readme[k] {
			t.Errorf("baton -h has %s; REFERENCE.md's settings table does not", k)
		}
	}
	if len(help) != len(options)+len(envOnly) || !slices.ContainsFunc(options, func(o option) bool { return help["-"+o.name+" "+o.env] }) {
		t.Errorf("baton -h lists %d flags and variables, want %d:\n%s", len(help), len(options)+len(envOnly), out.String())
	}
}

// A payload that is not JSON reaches baton (not the runtime library's bare
// "EOF") and is logged at ERROR with its first 200 bytes and what was
// expected.
func TestMain_bad_event_logged(t *testing.T) {
	var logs lockedBuffer
	cfg := &config{Topic: "src"}
	d := &deps{store: newMemStore(), now: time.Now, log: slog.New(slog.NewJSONHandler(&logs, nil))}
	payload := "not json " + strings.Repeat("x", 191) + "TAIL"
	_, err := lambdaHandler(handler(cfg, d)).Invoke(ctxT(t), []byte(payload))
	if err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Fatalf("error %v, want one saying it wants JSON", err)
	}
	got := logs.String()
	for _, w := range []string{`"level":"ERROR"`, `"msg":"bad event: want {`, payload[:200], `"bytes":204`} {
		if !strings.Contains(got, w) {
			t.Errorf("log line does not hold %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "TAIL") {
		t.Errorf("log line holds more than 200 bytes of the event:\n%s", got)
	}
}

// A deployment whose broker variable went missing must not run the demo and
// look healthy: only a command line with no settings (or -mode demo) runs
// it; anything else without brokers exits 2 naming -brokers.
func TestBadInput_missing_brokers_is_not_demo(t *testing.T) {
	env := map[string]string{"BATON_TOPIC": "orders", "BATON_SINK": "stdout", "BATON_LEASE_TABLE": "baton-leases"}
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
	defer cancel()
	code, stdout, stderr := runBaton(ctx, nil, env)
	if code != 2 || !strings.Contains(stderr, "-brokers (BATON_BROKERS)") || !strings.Contains(stderr, "-topic (BATON_TOPIC)") || strings.Contains(stdout, "baton demo") {
		t.Fatalf("settings without brokers: exit %d, stdout %q, stderr %q; want exit 2 naming -brokers and what was given", code, stdout, stderr)
	}
	code, _, stderr = runBaton(ctx, []string{"-topic", "orders"}, nil)
	if code != 2 || !strings.Contains(stderr, "-brokers (BATON_BROKERS)") {
		t.Fatalf("-topic without brokers: exit %d, stderr %q; want exit 2 naming -brokers", code, stderr)
	}
}

// A mistyped flag names itself and points to -h once: parseConfig's error
// and batonMain's hint both said it (issue 22).
func TestBadInput_flag_typo_hint_once(t *testing.T) {
	for _, tc := range []struct {
		args []string
		name string // what the message must name
	}{
		{[]string{"-brokres", "x"}, "-brokres"},
		{[]string{"-brokers", "b:9092", "orders"}, `"orders"`},
		{[]string{"ctl", "status", "-brokres", "x"}, "-brokres"},
	} {
		code, _, stderr := runBaton(ctxT(t), tc.args, nil)
		if n := strings.Count(stderr, " -h lists the "); code != 2 || n != 1 || !strings.Contains(stderr, tc.name) {
			t.Errorf("%q: exit %d, the hint %d times; want exit 2, %s named and the hint once:\n%s", tc.args, code, n, tc.name, stderr)
		}
	}
}

// A duration logs as text ("1s"), in JSON as in text: JSON's default is
// raw nanoseconds ("skew":1000000000). Keys ending in _ms stay numbers.
func TestLogger_durations_are_text(t *testing.T) {
	for _, tc := range []struct {
		mode string
		env  map[string]string
		want []string
	}{
		{"process", nil, []string{`"skew":"1s"`, `"gap":"2.5ms"`, `"waited_ms":1500`}},
		{"lambda", nil, []string{`"skew":"1s"`, `"gap":"2.5ms"`, `"waited_ms":1500`}},
		{"lambda", map[string]string{"AWS_LAMBDA_LOG_FORMAT": "Text"}, []string{"skew=1s", "run.gap=2.5ms", "waited_ms=1500"}},
	} {
		f, err := os.CreateTemp(t.TempDir(), "log")
		must(t, err)
		log := newLogger(tc.mode, f, fakeEnv(tc.env))
		log.Info("timings", "skew", time.Second, slog.Group("run", "gap", 2500*time.Microsecond), "waited_ms", int64(1500))
		f.Close()
		b, err := os.ReadFile(f.Name())
		must(t, err)
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s %v: the line does not hold %s:\n%s", tc.mode, tc.env, w, b)
			}
		}
	}
}
