//go:build !redis

// bench_sizing_test.go is the bench's sizing section: the Lambda binary in
// process mode inside a cgroup given the CPU share and memory of a Lambda
// function of 128, 256, 512 and 1,769 MB, against kfake on loopback (in the
// test process, outside the cgroup) and DynamoDB Local: records/s with the
// discard and Kafka sinks, 200 B and 2 KiB values, peak RSS, and the time
// from exec to the first Runtime API request in Lambda mode.

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lambdaSizes are the function memory sizes measured, in MB.
var lambdaSizes = []int{128, 256, 512, 1769}

// lambdaMBPerCPU: Lambda gives a function one vCPU at 1,769 MB, and CPU in
// proportion to memory below that (128 MB: about 7.2% of one).
const lambdaMBPerCPU = 1769

// cfsPeriod is the CPU quota's period: the kernel's default.
const cfsPeriod = 100 * time.Millisecond

// A cgroup holds the processes started in it to a CPU quota and a memory
// limit: cgroup v2 where its cpu and memory controllers are enabled, else
// the v1 cpu and memory hierarchies.
type cgroup struct {
	version int
	dirs    []string // where processes are put: one per hierarchy
	mem     string   // the directory with the memory files
}

// cgroupRoot is where cgroups are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// newCgroup makes a cgroup limited to cpus CPUs and mem bytes, removed at
// cleanup. The error says why none can be made here.
func newCgroup(t testing.TB, name string, cpus float64, mem int64) (*cgroup, error) {
	quota := int64(cpus * float64(cfsPeriod.Microseconds()))
	if ctl, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		// v2: a cgroup whose controllers are enabled may hold no process,
		// so the new one hangs off the root.
		if f := strings.Fields(string(ctl)); !slices.Contains(f, "cpu") || !slices.Contains(f, "memory") {
			return nil, fmt.Errorf("cgroup v2 at %s without the cpu and memory controllers (%s)", cgroupRoot, strings.TrimSpace(string(ctl)))
		}
		if err := os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+cpu +memory"), 0); err != nil {
			return nil, fmt.Errorf("cgroup v2: enable cpu and memory: %w", err)
		}
		dir := filepath.Join(cgroupRoot, name)
		c := &cgroup{version: 2, dirs: []string{dir}, mem: dir}
		if err := c.make(t, map[string]string{"cpu.max": fmt.Sprintf("%d %d", quota, cfsPeriod.Microseconds()),
			"memory.max": strconv.FormatInt(mem, 10), "memory.swap.max": "0"}, "memory.swap.max"); err != nil {
			return nil, err
		}
		return c, nil
	}
	c := &cgroup{version: 1}
	for _, ctl := range []string{"cpu", "memory"} {
		own, err := ownCgroup(ctl)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(cgroupRoot, ctl, own, name)
		c.dirs = append(c.dirs, dir)
		if ctl == "memory" {
			c.mem = dir
		}
	}
	if err := c.make(t, map[string]string{"cpu.cfs_period_us": strconv.FormatInt(cfsPeriod.Microseconds(), 10),
		"cpu.cfs_quota_us": strconv.FormatInt(quota, 10)}); err != nil {
		return nil, err
	}
	// The swap limit (where swap accounting is on) must not be below the
	// memory limit, so it follows it.
	if err := c.write(map[string]string{"memory.limit_in_bytes": strconv.FormatInt(mem, 10),
		"memory.memsw.limit_in_bytes": strconv.FormatInt(mem, 10)}, "memory.memsw.limit_in_bytes"); err != nil {
		return nil, err
	}
	return c, nil
}

// ownCgroup is this process's cgroup in the v1 hierarchy of controller.
func ownCgroup(controller string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && slices.Contains(strings.Split(f[1], ","), controller) {
			return f[2], nil
		}
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, controller)); err != nil {
		return "", fmt.Errorf("no cgroup v1 %s hierarchy at %s and no cgroup v2 (%w)", controller, cgroupRoot, err)
	}
	return "/", nil
}

// make creates the directories, removed at cleanup, and writes files.
func (c *cgroup) make(t testing.TB, files map[string]string, optional ...string) error {
	for _, dir := range c.dirs {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup v%d: %w", c.version, err)
		}
		t.Cleanup(func() {
			// Empty once its processes are reaped; the kernel may take a moment.
			for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return c.write(files, optional...)
}

// write writes each file in whichever directory has it; an optional file
// may be missing (swap accounting off).
func (c *cgroup) write(files map[string]string, optional ...string) error {
	// In a fixed order: a v1 swap limit must come after the memory limit.
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	slices.SortStableFunc(names, func(a, b string) int { return strings.Count(a, "memsw") - strings.Count(b, "memsw") })
	for _, name := range names {
		written := false
		for _, dir := range c.dirs {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if err := os.WriteFile(p, []byte(files[name]), 0); err != nil {
				return fmt.Errorf("cgroup v%d: write %s: %w", c.version, p, err)
			}
			written = true
		}
		if !written && !slices.Contains(optional, name) {
			return fmt.Errorf("cgroup v%d: no %s in %v", c.version, name, c.dirs)
		}
	}
	return nil
}

// throttled is the share of the quota periods the cgroup ran in that its
// CPU quota ran out in (cpu.stat), or 0 where the kernel does not say.
func (c *cgroup) throttled() float64 {
	for _, dir := range c.dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			continue
		}
		var periods, throttled float64
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				switch f[0] {
				case "nr_periods":
					periods = v
				case "nr_throttled":
					throttled = v
				}
			}
		}
		if periods > 0 {
			return throttled / periods
		}
	}
	return 0
}

// peak is the most memory the cgroup's processes were charged (page cache
// included), or 0 where the kernel does not say.
func (c *cgroup) peak() int64 {
	name := "memory.max_usage_in_bytes"
	if c.version == 2 {
		name = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(c.mem, name))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// command is bin with args, started inside the cgroup: a shell moves
// itself in, then execs bin, so bin's first instruction is already limited.
func (c *cgroup) command(bin string, args ...string) *exec.Cmd {
	script := ""
	for _, dir := range c.dirs {
		script += "echo $$ > '" + filepath.Join(dir, "cgroup.procs") + "' && "
	}
	return exec.Command("/bin/sh", append([]string{"-c", script + `exec "$0" "$@"`, bin}, args...)...)
}

// A sizingResult is one run of the binary in a cgroup.
type sizingResult struct {
	rps       float64 // records a second between the first and the last commit seen
	hwm       int64   // the process's peak resident set
	cgPeak    int64   // the cgroup's peak charge
	throttled float64 // the share of CPU quota periods in which the quota ran out
	err       error   // why there is no rate (killed for memory, too few commits)
}

func (r sizingResult) rate() string {
	if r.err != nil {
		return "failed: " + r.err.Error()
	}
	return fmt.Sprintf("%.0f", r.rps)
}

// sizingRun runs baton -mode process in a new cgroup of mb's CPU and memory,
// over topic (n records from its start) into sink, with any extra flags,
// for at least window of commits after the first, and measures it. The lease record's expiry gives
// each commit's time exactly: the owner writes its clock at the commit plus
// the TTL.
func (b *bench) sizingRun(t *testing.T, bin string, mb int, brokers []string, topic, sink string, n int64, window time.Duration, s *dynamoStore, table string, extra ...string) sizingResult {
	t.Helper()
	name := fmt.Sprintf("baton-bench-%d-%d", os.Getpid(), time.Now().UnixNano())
	cg, err := newCgroup(t, name, float64(mb)/lambdaMBPerCPU, int64(mb)<<20)
	if err != nil {
		return sizingResult{err: err}
	}
	group := strings.ReplaceAll(name, "-", ".")
	commitEvery := window / 8
	cmd := cg.command(bin, append([]string{"-mode=process", "-brokers=" + strings.Join(brokers, ","), "-topic=" + topic, "-partitions=0",
		"-sink=" + sink, "-group=" + group, "-lease-table=" + table, "-commit-interval=" + commitEvery.String()}, extra...)...)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_DYNAMODB="+os.Getenv("BATON_TEST_DYNAMO"), "BATON_LOG_LEVEL=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	key := leaseKey(group, topic, 0)
	var first, last lease
	end := time.Now().Add(window + time.Minute)
	for last.ExpiresAt == 0 || last.ExpiresAt-first.ExpiresAt < window.Milliseconds() && last.Offset < n {
		select {
		case err := <-exited:
			return sizingResult{err: fmt.Errorf("exited: %v (%s)", err, lastLine(stderr.String()))}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(end) {
			return sizingResult{err: fmt.Errorf("no %v of commits within %v", window, window+time.Minute)}
		}
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		l, err := s.load(ctx, key)
		cancel()
		switch {
		case err != nil || l.Offset <= 0:
		case first.ExpiresAt == 0:
			first, last = l, l
		case l.ExpiresAt != last.ExpiresAt:
			last = l
		}
	}
	r := sizingResult{cgPeak: cg.peak(), throttled: cg.throttled()}
	r.hwm, _ = vmHWM(cmd.Process.Pid)
	if span := time.Duration(last.ExpiresAt-first.ExpiresAt) * time.Millisecond; span < 2*commitEvery {
		r.err = fmt.Errorf("commits only %v apart: too few records for the rate (%d)", span, n)
	} else {
		r.rps = float64(last.Offset-first.Offset) / span.Seconds()
	}
	stopProcess(cmd, exited)
	return r
}

// stopProcess sends cmd SIGTERM and waits for it to exit (exited gets
// cmd.Wait's result), killing it after 10 s.
func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// lastLine is the last line of a log, for an error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// cgroupInit is the median time from exec to the first Runtime API request
// of bin in Lambda mode, started n times in a cgroup of mb's CPU and memory
// (the shell that moves it there included), and of the empty program there.
func (b *bench) cgroupInit(t *testing.T, bin, hello string, mb, n int) (baton, empty time.Duration, err error) {
	cg, err := newCgroup(t, fmt.Sprintf("baton-init-%d-%d", os.Getpid(), mb), float64(mb)/lambdaMBPerCPU, int64(mb)<<20)
	if err != nil {
		return 0, 0, err
	}
	ready := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ready <- time.Now():
		default:
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	env := []string{"PATH=" + os.Getenv("PATH"), "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
		"BATON_BROKERS=127.0.0.1:9092", "BATON_TOPIC=bench", "AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(srv.URL, "http://")}
	var bs, hs []time.Duration
	for range n {
		cmd := cg.command(hello)
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, 0, fmt.Errorf("empty program: %w", err)
		}
		hs = append(hs, time.Since(start))
		cmd = cg.command(bin)
		cmd.Env = env
		start = time.Now()
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		select {
		case at := <-ready:
			bs = append(bs, at.Sub(start))
		case <-time.After(10 * time.Second):
			err = errors.New("no Runtime API request within 10 s")
		}
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			return 0, 0, err
		}
	}
	return median(bs), median(hs), nil
}

// sizing prints, for each Lambda memory size, what the binary sustains in
// process mode with that CPU share and memory, its peak RSS and its init.
func (b *bench) sizing(t *testing.T, bin string) {
	probe, err := newCgroup(t, fmt.Sprintf("baton-probe-%d", os.Getpid()), 1, 1<<30)
	if err != nil {
		b.note("sizing: skipped: cgroups cannot be written here (%v); run the bench as root on Linux with cgroup v1 cpu and memory, or v2 with both controllers", err)
		for _, mb := range lambdaSizes {
			for _, f := range []string{"rps_discard", "rps_kafka", "rps_discard_2k", "rps_kafka_2k", "peak_rss_mib", "init_ms"} {
				b.figure(fmt.Sprintf("lambda_%d_%s", mb, f), "skipped: no writable cgroups")
			}
		}
		return
	}
	url := needServer(t, "BATON_TEST_DYNAMO")
	table := fmt.Sprintf("baton-bench-sizing-%d", time.Now().UnixNano())
	if _, err := openDynamo(b.ctx, config{LeaseTable: table, CreateTable: true}, url, testAWS()...); err != nil {
		t.Fatal(err)
	}
	defer dropTable(t, table)
	s := testDynamo(t, url, table)
	type values struct {
		topic string
		size  int
		n     int64
	}
	// Enough records that the fastest run still commits for the window;
	// -quick measures 128 MB only, once each.
	window, sizes, reps := pick(b, time.Second, 2*time.Second), pick(b, lambdaSizes[:1], lambdaSizes), pick(b, 1, 3)
	vs := []values{{"small", 200, pick[int64](b, 300_000, 3_000_000)}, {"large", 2048, pick[int64](b, 100_000, 600_000)}}
	brokers := newCluster(t, 1, "small", "large").ListenAddrs()
	start := time.Now()
	for _, v := range vs {
		fill(t, b.ctx, brokers, v.topic, int(v.n), v.size)
	}
	b.note("sizing: %d records of 200 B and %d of 2 KiB produced to kfake in %.1f s", vs[0].n, vs[1].n, time.Since(start).Seconds())
	hello := buildHello(t, "empty")
	sinks := 0
	for _, mb := range lambdaSizes {
		if !slices.Contains(sizes, mb) {
			for _, f := range []string{"rps_discard", "rps_kafka", "rps_discard_2k", "rps_kafka_2k", "peak_rss_mib", "init_ms"} {
				b.figure(fmt.Sprintf("lambda_%d_%s", mb, f), "skipped in -quick")
			}
			continue
		}
		var hwm, cgPeak int64
		var runs []string
		for _, v := range vs {
			for _, sink := range []string{"discard", "kafka"} {
				var rates []float64
				var failed error
				for range reps {
					to := sink
					if sink == "kafka" {
						sinks++
						to = fmt.Sprintf("kafka://out-%d", sinks)
						if err := createTopic(b.ctx, brokers, strings.TrimPrefix(to, "kafka://")); err != nil {
							t.Fatal(err)
						}
					}
					r := b.sizingRun(t, bin, mb, brokers, v.topic, to, v.n, window, s, table)
					if sink == "kafka" {
						deleteTopic(b.ctx, brokers, strings.TrimPrefix(to, "kafka://"))
					}
					if r.err != nil {
						failed = r.err
						continue
					}
					rates = append(rates, r.rps)
					hwm, cgPeak = max(hwm, r.hwm), max(cgPeak, r.cgPeak)
				}
				name := fmt.Sprintf("lambda_%d_rps_%s", mb, sink)
				if v.size != 200 {
					name += "_2k"
				}
				if len(rates) == 0 {
					b.figure(name, "failed: %v", failed)
					continue
				}
				b.figure(name, "%.0f", medianF(rates))
				runs = append(runs, fmt.Sprintf("%s %.0f-%.0f", strings.TrimPrefix(name, fmt.Sprintf("lambda_%d_rps_", mb)), slices.Min(rates), slices.Max(rates)))
				if failed != nil {
					b.note("sizing: %s: %d of %d runs failed: %v", name, reps-len(rates), reps, failed)
				}
			}
		}
		b.figure(fmt.Sprintf("lambda_%d_peak_rss_mib", mb), "%.1f", float64(hwm)/(1<<20))
		init, empty, err := b.cgroupInit(t, bin, hello, mb, pick(b, 5, 15))
		if err != nil {
			b.figure(fmt.Sprintf("lambda_%d_init_ms", mb), "failed: %v", err)
			continue
		}
		b.figure(fmt.Sprintf("lambda_%d_init_ms", mb), "%s", ms(init))
		b.note("sizing: %d MB (%.1f%% of a CPU, quota per %v): records/s of the %d runs, slowest-fastest: %s; the cgroup's peak charge %.1f MiB (page cache included); the empty program starts and exits in %s ms there",
			mb, 100*float64(mb)/lambdaMBPerCPU, cfsPeriod, reps, strings.Join(runs, ", "), float64(cgPeak)/(1<<20), ms(empty))
	}
	b.note("sizing: baton -mode process in a cgroup (v%d) with the memory and CPU share of a Lambda function of that size, GOMAXPROCS as Go sets it from the quota; kfake (in this process) and DynamoDB Local outside it, on the same machine; records/s between the first and last commit of a %v window (a commit every %v), the median of %d runs; peak RSS is the largest VmHWM of the runs; init is the median exec to first Runtime API request in Lambda mode (through the shell that enters the cgroup)",
		probe.version, window, window/8, reps)
}
