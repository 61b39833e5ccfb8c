//go:build e2e

// e2e_test.go runs the real binary end to end: under aws-lambda-rie, invoked
// by a scheduler the way EventBridge Scheduler invokes it, and as three
// -mode process processes started and stopped at random; against kfake on a
// loopback port and the lease store of this build.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// rieModule is the emulator the tests run under, pinned.
const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// e2eBuild builds the binary for this machine, with the tags of this
// test build.
func e2eBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command(e2eGoTool(t), "build", "-tags", e2eBuildTags, "-o", bin, ".")
	cmd.Env = e2eWithoutEnv(os.Environ(), "GOOS", "GOARCH") // this machine's
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", e2eBuildTags, err, out)
	}
	return bin
}

func e2eGoTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	t.Fatal("the go command is not on PATH; the end-to-end tests build the binary with it")
	return ""
}

func e2eWithoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && name != n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// needRIE finds aws-lambda-rie on PATH or in $(go env GOPATH)/bin, or skips
// (fails under BATON_TEST_STRICT=1) saying how to install it.
func needRIE(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p
	}
	if out, err := exec.Command(e2eGoTool(t), "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "aws-lambda-rie")
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
	}
	msg := "aws-lambda-rie is not on PATH nor in $(go env GOPATH)/bin: install it with\n\tgo install " + rieModule
	if os.Getenv("BATON_TEST_STRICT") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// e2eFreeAddr is a loopback address nobody listens on now.
func e2eFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// e2eLogDir is where a test's processes log: removed when the test
// passes, kept and named when it fails.
func e2eLogDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "baton-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// e2eGroup is a lease group of the test's own.
func e2eGroup(t *testing.T) string {
	return fmt.Sprintf("e2e-%s-%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
}

// e2eCluster starts kfake on a loopback port with topics src and out of
// partitions each, and notes every connection it accepts.
func e2eCluster(t *testing.T, partitions int32) (*kfake.Cluster, *e2eConns) {
	t.Helper()
	conns := &e2eConns{}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "src", "out"), kfake.ListenFn(conns.listen))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, conns
}

// e2eConns notes each connection kfake accepts and, from /proc, the
// process that opened it: so a test can show that a process never connected
// while other processes did.
type e2eConns struct {
	mu         sync.Mutex
	port       int
	conns      []e2eConn
	candidates func() []int // processes a connection may come from
}

type e2eConn struct {
	At  time.Time
	PID int // 0: none of the candidates (the test's own clients)
}

func (k *e2eConns) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	k.port = ln.Addr().(*net.TCPAddr).Port
	return e2eConnListener{ln, k}, nil
}

type e2eConnListener struct {
	net.Listener
	k *e2eConns
}

// Accept names the process before kfake reads the first request, so the
// client's socket is certainly still open.
func (l e2eConnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.k.note(c)
	}
	return c, err
}

func (k *e2eConns) note(c net.Conn) {
	at := time.Now()
	k.mu.Lock()
	cands := k.candidates
	k.mu.Unlock()
	pid := 0
	if cands != nil {
		pid = e2eSocketOwner(c.RemoteAddr().(*net.TCPAddr).Port, k.port, cands())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.conns = append(k.conns, e2eConn{at, pid})
}

func (k *e2eConns) setCandidates(f func() []int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.candidates = f
}

// from counts the connections pid opened in [from, to].
func (k *e2eConns) from(pid int, from, to time.Time) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.conns {
		if c.PID == pid && !c.At.Before(from) && !c.At.After(to) {
			n++
		}
	}
	return n
}

// e2eSocketOwner finds which of pids holds the TCP socket from local port
// lport to remote port rport, through /proc/net/tcp and /proc/PID/fd.
// It returns 0 when none does.
func e2eSocketOwner(lport, rport int, pids []int) int {
	inode := e2eSocketInode(lport, rport)
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}

// e2eSocketInode is the inode of the socket from local port lport to remote
// port rport, or "".
func e2eSocketInode(lport, rport int) string {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, e := range e2eTCPEntries(f) {
			if e.lport == lport && e.rport == rport {
				return e.inode
			}
		}
	}
	return ""
}

type e2eTCPEntry struct {
	lport, rport int
	state        string
	inode        string
}

// e2eTCPEntries reads a /proc/net/tcp table.
func e2eTCPEntries(file string) []e2eTCPEntry {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var es []e2eTCPEntry
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		es = append(es, e2eTCPEntry{lport: e2eHexPort(f[1]), rport: e2eHexPort(f[2]), state: f[3], inode: f[9]})
	}
	return es
}

func e2eHexPort(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.ParseInt(p, 16, 32)
	return int(n)
}

// e2eOpenConns counts the established TCP connections pid holds to rport.
func e2eOpenConns(pid, rport int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, e := range e2eTCPEntries(f) {
			if e.rport == rport && e.state == "01" {
				inodes["socket:["+e.inode+"]"] = true
			}
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && inodes[l] {
			n++
		}
	}
	return n
}

// childPIDs lists the processes whose parent is pid: from
// /proc/PID/task/*/children, or where the kernel has no such file, from
// every process's /proc/PID/stat.
func childPIDs(pid int) []int {
	var kids []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if errors.Is(err, os.ErrNotExist) {
			return childPIDsFromStat(pid)
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

func childPIDsFromStat(pid int) []int {
	var kids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// A rieEmulator is one aws-lambda-rie process: one Lambda container, which
// takes one invocation at a time and keeps its runtime process warm.
type rieEmulator struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  string

	mu    sync.Mutex
	busy  bool
	calls []rieCall
}

// A rieCall is one invocation as the scheduler saw it.
type rieCall struct {
	Emulator   string
	ID         string // the request id: the owner id in the lease starts with it
	Payload    string
	Partition  int32
	Tick       time.Time
	Start, End time.Time
	Status     int
	Body       string
	Out        outcome // when Body is the handler's answer
	PID        int     // the runtime process that served it: after the call, or before when it died
	LeftOpen   int     // its connections to Kafka after it answered
	Err        error
}

// timedOut reports whether the emulator killed the runtime at the deadline.
func (c rieCall) timedOut() bool { return strings.Contains(c.Body, "Task timed out") }

// died reports whether the runtime was killed during the call: by the
// emulator at the deadline, or by the test.
func (c rieCall) died() bool {
	return c.timedOut() || strings.Contains(c.Body, "Runtime.ExitError")
}

var rieCallSeq atomic.Int64

// startRIE starts aws-lambda-rie running bin, with env as the whole
// environment (the emulator passes all of it to the runtime), logging to
// logDir.
func startRIE(t *testing.T, rie, bin, logDir, name string, env []string) *rieEmulator {
	t.Helper()
	dir := t.TempDir()
	api, addr := e2eFreeAddr(t), e2eFreeAddr(t)
	e := &rieEmulator{name: name, url: "http://" + addr + "/2015-03-31/functions/function/invocations", log: filepath.Join(logDir, name+".log")}
	logf, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(rie, "--runtime-api-address", api, "--runtime-interface-emulator-address", addr, bin)
	e.cmd.Dir, e.cmd.Env, e.cmd.Stdout, e.cmd.Stderr = dir, env, logf, logf
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if pid := e.runtimePID(); pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		e.cmd.Process.Kill()
		e.cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("%s log, last lines:\n%s", name, e2eTail(e.log, 12))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 10s: %v\n%s", name, addr, err, e2eTail(e.log, 15))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runtimePID is the emulator's runtime process (the binary), or 0 before
// the first invocation starts it.
func (e *rieEmulator) runtimePID() int {
	if kids := childPIDs(e.cmd.Process.Pid); len(kids) > 0 {
		return kids[0]
	}
	return 0
}

// claim marks the emulator busy; it reports false when it already is: a
// second concurrent invoke would crash it.
func (e *rieEmulator) claim() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.busy {
		return false
	}
	e.busy = true
	return true
}

// invoke sends one payload to a claimed emulator and waits for the answer.
func (e *rieEmulator) invoke(ctx context.Context, partition int32, tick time.Time, payload string, kafkaPort int) rieCall {
	c := rieCall{Emulator: e.name, ID: fmt.Sprintf("%s-p%d-%d", e.name, partition, rieCallSeq.Add(1)),
		Payload: payload, Partition: partition, Tick: tick, PID: e.runtimePID(), Start: time.Now()}
	defer func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.busy = false
		e.calls = append(e.calls, c)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, strings.NewReader(payload))
	if err != nil {
		c.Err = err
		return c
	}
	req.Header.Set("X-Amzn-RequestId", c.ID)
	resp, err := http.DefaultClient.Do(req)
	c.End = time.Now()
	if err != nil {
		c.Err = err
		return c
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.Status, c.Body = resp.StatusCode, string(body)
	if json.Unmarshal(body, &c.Out) != nil || c.Out.End == "" {
		c.Out = outcome{}
	}
	if pid := e.runtimePID(); pid != 0 {
		c.PID, c.LeftOpen = pid, e2eOpenConns(pid, kafkaPort)
	}
	return c
}

// story is what the runtime logged for a call: "time msg; ...".
func (e *rieEmulator) story(c rieCall) string {
	var lines []string
	for _, f := range e2eLogLines(e.log) {
		if strings.HasPrefix(f["owner"], c.ID+"-") {
			lines = append(lines, f["time"]+" "+f["msg"])
		}
	}
	return strings.Join(lines, "; ")
}

func (e *rieEmulator) history() []rieCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]rieCall(nil), e.calls...)
}

func e2eTail(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// e2eSinkScheme is the sink the binary writes to: kafka, or kafka+txn with
// BATON_E2E_SINK=kafka+txn (./bootstrap.sh test sets it for the Redis
// build). With kafka+txn the sink is read read_committed, and even a
// SIGKILL may not deliver a record twice.
func e2eSinkScheme(t *testing.T) string {
	switch v := os.Getenv("BATON_E2E_SINK"); v {
	case "", "kafka":
		return "kafka"
	case "kafka+txn":
		return v
	default:
		t.Fatalf("BATON_E2E_SINK=%q: want kafka or kafka+txn", v)
		return ""
	}
}

// rieEnv is the whole environment of an emulator and its runtime.
func rieEnv(t *testing.T, timeout time.Duration, brokers []string, group string, store []string) []string {
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		// Nothing from the developer's AWS configuration reaches the binary.
		"HOME=" + home, "AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(int(timeout/time.Second)),
		"BATON_BROKERS=" + strings.Join(brokers, ","),
		"BATON_TOPIC=src", // the only topic an event may name
		"BATON_SINK=" + e2eSinkScheme(t) + "://out",
		"BATON_GROUP=" + group,
	}
	return append(env, store...)
}

// e2eSink reads the sink topic from its start, as a downstream consumer
// would: the value of each record is the source offset (the producer numbers
// the records of each partition 0, 1, 2, ...), its timestamp the time baton
// produced it.
type e2eSink struct {
	mu   sync.Mutex
	recs map[int32][]e2eSinkRecord
}

type e2eSinkRecord struct {
	N  int64     // source offset
	At time.Time // when baton wrote it (the record's CreateTime, set by baton's producer)
}

func e2eReadSink(t *testing.T, brokers []string, topic string) *e2eSink {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.DisableFetchSessions()} // franz-go v1.22.3's Close races an in-flight fetch's session update
	if e2eSinkScheme(t) == "kafka+txn" {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	s := &e2eSink{recs: map[int32][]e2eSinkRecord{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			s.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				n, err := strconv.ParseInt(string(r.Value), 10, 64)
				if err != nil {
					n = -1
				}
				s.recs[r.Partition] = append(s.recs[r.Partition], e2eSinkRecord{n, r.Timestamp})
			})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return s
}

func (s *e2eSink) partition(p int32) []e2eSinkRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]e2eSinkRecord(nil), s.recs[p]...)
}

// complete reports whether every produced record has reached the sink.
func (s *e2eSink) complete(produced []int64) bool {
	for p, n := range produced {
		if r := analyseSink(s.partition(int32(p)), n); r.Missing > 0 {
			return false
		}
	}
	return true
}

// An e2eSinkReport is what one partition's sink shows against what was produced.
type e2eSinkReport struct {
	Written    int     // records in the sink
	Duplicates int     // records already in the sink before
	Rewinds    []int64 // source offsets where a run of duplicates began
	rewindAt   []int   // and their places in the sink
	Skips      int     // records that came before one they follow at the source
	Missing    int64   // produced records not in the sink
	first      map[int64]int
}

// analyseSink walks one partition's sink in order. In order means each record is
// the one after the highest before it; a record at or below the highest is
// a duplicate, and a duplicate that does not continue the record before it
// is a rewind: a new owner starting again from an older commit.
func analyseSink(recs []e2eSinkRecord, produced int64) e2eSinkReport {
	r := e2eSinkReport{Written: len(recs), first: map[int64]int{}}
	high := int64(-1)
	for i, rec := range recs {
		switch {
		case rec.N <= high:
			r.Duplicates++
			if i == 0 || recs[i-1].N != rec.N-1 {
				r.Rewinds, r.rewindAt = append(r.Rewinds, rec.N), append(r.rewindAt, i)
			}
		case rec.N > high+1:
			r.Skips++
		}
		if _, ok := r.first[rec.N]; !ok {
			r.first[rec.N] = i
		}
		high = max(high, rec.N)
	}
	for n := range produced {
		if _, ok := r.first[n]; !ok {
			r.Missing++
		}
	}
	return r
}

// e2eGapBefore is how long the sink saw nothing of the partition before the
// first copy of source offset n: from the record written before it to it.
func e2eGapBefore(recs []e2eSinkRecord, r e2eSinkReport, n int64) (time.Duration, bool) {
	i, ok := r.first[n]
	if !ok || i == 0 {
		return 0, false
	}
	return recs[i].At.Sub(recs[i-1].At), true
}

func e2ePercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func e2eMs(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1000) }

// e2eWaitLease polls the lease of key until ok holds, and returns it and when
// it was seen.
func e2eWaitLease(t *testing.T, s store, key string, limit time.Duration, what string, ok func(lease) bool) (lease, time.Time) {
	t.Helper()
	end := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := s.load(ctx, key)
		cancel()
		if err == nil && ok(l) {
			return l, time.Now()
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v; lease %+v, %v", what, limit, l, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Lease timings of both tests: short, so that a run of seconds shows many
// renewals and a takeover after a crash. A 4 s lease is about the shortest
// baton takes with a 100 ms skew: it leaves an owner's last produces the
// 1.1 s they need to settle (producesSettle).
const (
	e2eTTL          = 4 * time.Second
	e2eSkew         = 100 * time.Millisecond
	e2eCommitEvery  = 500 * time.Millisecond
	e2eProduceEvery = 2 * time.Millisecond // a record a partition
)

// The Lambda schedule: a 4 s function timeout and a tick every 3 s per
// partition, so each invocation overlaps the next by a second, as a
// 15-minute function scheduled every 14 minutes does.
const (
	rieTimeout     = 4 * time.Second
	rieEvery       = rieTimeout - time.Second
	riePartitions  = 3
	rieTicks       = 16
	rieLateDupTick = 3 // partition 1's tick is delivered again while its first delivery runs
	rieKillTick    = 5 // partition 0's invocation has its runtime SIGKILLed
	rieSameDupTick = 9 // partition 2's tick is delivered to two emulators at the same instant
)

// rieScheduler invokes emulators as EventBridge Scheduler invokes a
// function: it never sends a second invoke to a busy emulator (that crashes
// the emulator; on AWS it would go to another container), and picks idle
// ones in turn, so each container serves several partitions over time.
type rieScheduler struct {
	t      *testing.T
	emus   []*rieEmulator
	port   int // kfake's
	ctx    context.Context
	next   int
	wg     sync.WaitGroup
	mu     sync.Mutex
	issued []*riePending
}

// riePending is an invocation on its way: wait gives its call.
type riePending struct {
	emu  *rieEmulator
	done chan struct{}
	c    rieCall
}

func (p *riePending) wait() rieCall { <-p.done; return p.c }

func (s *rieScheduler) pick() *rieEmulator {
	s.t.Helper()
	for i := range s.emus {
		e := s.emus[(s.next+i)%len(s.emus)]
		if e.claim() {
			s.next = (s.next + i + 1) % len(s.emus)
			return e
		}
	}
	s.t.Fatalf("no idle emulator: every one of %d is running an invocation", len(s.emus))
	return nil
}

// start invokes a picked emulator in the background, once gate (if any)
// is closed.
func (s *rieScheduler) start(e *rieEmulator, partition int32, tick time.Time, gate <-chan struct{}) *riePending {
	p := &riePending{emu: e, done: make(chan struct{})}
	payload := fmt.Sprintf(`{"topic":"src","partition":%d,"tick":%q}`, partition, tick.UTC().Format(time.RFC3339))
	s.mu.Lock()
	s.issued = append(s.issued, p)
	s.mu.Unlock()
	s.wg.Go(func() {
		defer close(p.done)
		if gate != nil {
			<-gate
		}
		p.c = e.invoke(s.ctx, partition, tick, payload, s.port)
	})
	return p
}

func TestE2E_lambda_rotations_under_rie(t *testing.T) {
	t.Parallel()
	rie := needRIE(t)
	storeEnv, leases := e2eLeaseStore(t)
	bin := e2eBuild(t)
	cluster, conns := e2eCluster(t, riePartitions)
	brokers, group := cluster.ListenAddrs(), e2eGroup(t)
	env := append(rieEnv(t, rieTimeout, brokers, group, storeEnv),
		"BATON_TTL="+e2eTTL.String(), "BATON_SKEW="+e2eSkew.String(), "BATON_COMMIT_INTERVAL="+e2eCommitEvery.String())
	// Two containers a partition, so that a tick's invocation never finds
	// its partition's previous one still running in the same container; one
	// spare for the duplicate deliveries.
	emus, logs := make([]*rieEmulator, 2*riePartitions+1), e2eLogDir(t)
	for i := range emus {
		emus[i] = startRIE(t, rie, bin, logs, fmt.Sprintf("rie%d", i), env)
	}
	conns.setCandidates(func() []int {
		var pids []int
		for _, e := range emus {
			if pid := e.runtimePID(); pid != 0 {
				pids = append(pids, pid)
			}
		}
		return pids
	})
	sink := e2eReadSink(t, brokers, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced, err := produce(pctx, brokers, "src", riePartitions, e2eProduceEvery)
	if err != nil {
		t.Fatal(err)
	}
	s := &rieScheduler{t: t, emus: emus, port: conns.port, ctx: ctx}
	t.Logf("%d emulators (timeout %v), %d partitions, a tick every %v for %d ticks; lease ttl %v, skew %v, commit every %v; store %s",
		len(emus), rieTimeout, riePartitions, rieEvery, rieTicks, e2eTTL, e2eSkew, e2eCommitEvery, storeName)

	var (
		killAt      time.Time
		killedLease lease
		killed      *riePending
		lateDup     rieCall
		sameDup     [2]*riePending
	)
	base := time.Now().Truncate(time.Second).Add(2 * time.Second)
	var lastTick time.Time
	for n := range rieTicks {
		tick := base.Add(time.Duration(n) * rieEvery)
		lastTick = tick
		time.Sleep(time.Until(tick))
		byPartition := map[int32]*riePending{}
		for p := range int32(riePartitions) {
			if n == rieSameDupTick && p == 2 {
				a, b := s.pick(), s.pick()
				gate := make(chan struct{})
				sameDup = [2]*riePending{s.start(a, p, tick, gate), s.start(b, p, tick, gate)}
				close(gate)
				continue
			}
			byPartition[p] = s.start(s.pick(), p, tick, nil)
		}
		tickMs := tick.UnixMilli()
		switch n {
		case rieLateDupTick:
			// Once the first delivery has claimed the tick (asked for the
			// baton), the same payload arrives in another warm container.
			e2eWaitLease(t, leases, leaseKey(group, "src", 1), 2*time.Second, "the first delivery to claim its tick",
				func(l lease) bool { return l.Tick == tickMs || l.SuccessorTick == tickMs })
			e := s.pick()
			lateDup = s.start(e, 1, tick, nil).wait()
		case rieKillTick:
			// Once the invocation owns partition 0 and has committed
			// records, its runtime is killed half a commit interval later:
			// a container that dies mid-invocation, with records written
			// since its last commit.
			key := leaseKey(group, "src", 0)
			got, _ := e2eWaitLease(t, leases, key, 2*time.Second, "the invocation to own partition 0",
				func(l lease) bool { return l.Tick == tickMs && l.State == stateRunning })
			e2eWaitLease(t, leases, key, 2*time.Second, "the invocation to commit",
				func(l lease) bool { return l.Tick == tickMs && l.Offset > got.Offset })
			time.Sleep(e2eCommitEvery / 2)
			killed = byPartition[0]
			pid := killed.emu.runtimePID()
			killAt = time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if killedLease, err = leases.load(ctx, key); err != nil || killedLease.Tick != tickMs {
				t.Fatalf("lease after the kill: %+v, %v", killedLease, err)
			}
			t.Logf("tick %d: killed %s's runtime (pid %d) owning partition 0, last commit at offset %d, lease until %s",
				n, killed.emu.name, pid, killedLease.Offset, time.UnixMilli(killedLease.ExpiresAt).Format("15:04:05.000"))
		}
	}
	// The last tick's invocations read on until their deadline: everything
	// produced up to a second after that tick is theirs to deliver.
	time.Sleep(time.Until(lastTick.Add(time.Second)))
	stopProducing()
	total := produced()
	s.wg.Wait()
	waitFor(t, "the sink to hold every produced record", 10*time.Second, func() bool { return sink.complete(total) })

	// Every invocation answered: nothing hit the emulator's timeout.
	var calls []rieCall
	var slack []time.Duration // from each answer to its deadline
	for _, p := range s.issued {
		c := p.wait()
		calls = append(calls, c)
		if c.Out.End != "" {
			slack = append(slack, c.Start.Add(rieTimeout).Sub(c.End))
		}
		switch {
		case c.Err != nil:
			t.Errorf("%s %s: %v", c.Emulator, c.Payload, c.Err)
		case p == killed:
			if c.Status != http.StatusBadGateway || !strings.Contains(c.Body, "Runtime.ExitError") {
				t.Errorf("killed invocation on %s: status %d %s; want 502 Runtime.ExitError", c.Emulator, c.Status, c.Body)
			}
		case c.timedOut():
			t.Errorf("%s %s: the emulator killed the runtime at the deadline %s; it had logged: %s",
				c.Emulator, c.Payload, c.Start.Add(rieTimeout).Format("15:04:05.000"), p.emu.story(c))
		case c.Status != http.StatusOK || c.Out.End == "":
			t.Errorf("%s %s: status %d, body %s", c.Emulator, c.Payload, c.Status, c.Body)
		case c.End.Sub(c.Start) >= rieTimeout:
			t.Errorf("%s %s: answered after %v, past the %v timeout", c.Emulator, c.Payload, c.End.Sub(c.Start), rieTimeout)
		case c.Out.End != endDuplicate && (c.Out.Records == 0 || c.Out.End != endHanded && c.Out.End != endReleased):
			t.Errorf("%s %s: %s; want records read, then handed over or released", c.Emulator, c.Payload, c.Body)
		}
		if c.LeftOpen != 0 {
			t.Errorf("%s %s: its runtime kept %d Kafka connections open after answering", c.Emulator, c.Payload, c.LeftOpen)
		}
	}

	// Duplicate deliveries exit before any Kafka connection.
	// Connections are counted by the process that opened them, so other
	// invocations starting meanwhile do not count.
	if lateDup.Out.End != endDuplicate {
		t.Errorf("late duplicate of tick %d on %s: %s; want %q", rieLateDupTick, lateDup.Emulator, lateDup.Body, endDuplicate)
	}
	if n := conns.from(lateDup.PID, lateDup.Start, lateDup.End); n != 0 || lateDup.PID == 0 {
		t.Errorf("late duplicate on %s: its runtime (pid %d) opened %d Kafka connections", lateDup.Emulator, lateDup.PID, n)
	}
	t.Logf("late duplicate (tick %d, partition 1) on %s: %q in %v, Kafka connections from its runtime: %d",
		rieLateDupTick, lateDup.Emulator, lateDup.Out.End, lateDup.End.Sub(lateDup.Start).Round(time.Millisecond), conns.from(lateDup.PID, lateDup.Start, lateDup.End))
	dups := 0
	for i, p := range sameDup {
		c := p.c
		n := conns.from(c.PID, c.Start, c.End)
		t.Logf("same-instant delivery %d of tick %d (partition 2) on %s: %q, Kafka connections from its runtime: %d", i+1, rieSameDupTick, c.Emulator, c.Out.End, n)
		if c.Out.End == endDuplicate {
			dups++
			if n != 0 {
				t.Errorf("same-instant duplicate on %s ended %q but its runtime opened %d Kafka connections first", c.Emulator, c.Out.End, n)
			}
		}
	}
	if dups != 1 {
		t.Errorf("tick %d delivered twice at once: %d deliveries ended %q, want exactly 1", rieSameDupTick, dups, endDuplicate)
	}

	// Per partition: the baton passes with the offset, every handoff is a
	// rotation with a gap measured at the sink, nothing is lost or
	// reordered, and duplicates follow only the kill.
	var gaps []time.Duration
	txn := e2eSinkScheme(t) == "kafka+txn"
	for p := range int32(riePartitions) {
		recs := sink.partition(p)
		rep := analyseSink(recs, total[p])
		var seq []rieCall
		for _, c := range calls {
			if c.Partition == p && c.Out.End != endDuplicate {
				seq = append(seq, c)
			}
		}
		slices.SortFunc(seq, func(a, b rieCall) int { return a.Tick.Compare(b.Tick) })
		rotations := 0
		for i, c := range seq {
			if c.ID == killed.c.ID && i+1 < len(seq) {
				// With kafka+txn it may start later: where the killed owner's
				// last transaction ended, if that came after its lease commit.
				if from := seq[i+1].Out.From; from < killedLease.Offset || !txn && from != killedLease.Offset {
					t.Errorf("partition %d: the invocation after the killed one started at %d, not at its last commit %d", p, from, killedLease.Offset)
				}
			}
			if c.Out.End != endHanded {
				continue
			}
			rotations++
			if i+1 < len(seq) && seq[i+1].Out.End != "" && seq[i+1].Out.From != c.Out.To {
				t.Errorf("partition %d: %s handed over at %d, the next started at %d", p, c.Emulator, c.Out.To, seq[i+1].Out.From)
			}
			gap, ok := e2eGapBefore(recs, rep, c.Out.To)
			if !ok {
				continue
			}
			gaps = append(gaps, gap)
			next := "?"
			if i+1 < len(seq) {
				next = seq[i+1].Emulator
			}
			t.Logf("partition %d rotation %2d: %s -> %s at offset %6d, gap %s", p, rotations, c.Emulator, next, c.Out.To, e2eMs(gap))
		}
		if rotations < 12 {
			t.Errorf("partition %d: %d rotations, want at least 12", p, rotations)
		}
		if last := seq[len(seq)-1]; last.Out.End != endReleased || last.Out.To != total[p] {
			t.Errorf("partition %d: the last invocation %+v; want released at offset %d", p, last.Out, total[p])
		}
		if l, err := leases.load(ctx, leaseKey(group, "src", p)); err != nil || l.State != stateReleased || l.Offset != total[p] {
			t.Errorf("partition %d lease at the end: %+v, %v; want released at %d", p, l, err, total[p])
		}
		t.Logf("partition %d: produced %d, sink %d records, duplicates %d (rewinds to %v), out of order %d, missing %d",
			p, total[p], rep.Written, rep.Duplicates, rep.Rewinds, rep.Skips, rep.Missing)
		if rep.Missing != 0 || rep.Skips != 0 {
			t.Errorf("partition %d: %d records missing, %d out of order", p, rep.Missing, rep.Skips)
		}
		switch {
		case txn && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates with the exactly-once sink", p, rep.Duplicates)
		case p != 0 && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates with no kill", p, rep.Duplicates)
		case p == 0 && len(rep.Rewinds) > 1, p == 0 && len(rep.Rewinds) == 1 && rep.Rewinds[0] != killedLease.Offset:
			t.Errorf("partition 0: rewinds to %v; want at most one, to the killed owner's last commit %d", rep.Rewinds, killedLease.Offset)
		case p == 0 && len(rep.Rewinds) == 1:
			took := recs[rep.rewindAt[0]].At // the next owner's first write
			t.Logf("partition 0 after the kill: the next owner wrote from offset %d at +%s (lease end + skew at +%s), %d duplicates",
				rep.Rewinds[0], e2eMs(took.Sub(killAt)), e2eMs(time.UnixMilli(killedLease.ExpiresAt).Add(e2eSkew).Sub(killAt)), rep.Duplicates)
		}
	}
	t.Logf("handoff gap over %d rotations: p50 %s, max %s (sink: from the old owner's last record to the new owner's first, by record timestamps)",
		len(gaps), e2eMs(e2ePercentile(gaps, 0.5)), e2eMs(e2ePercentile(gaps, 1)))
	t.Logf("answers before the %v deadline: least %s, p50 %s ahead", rieTimeout, e2eMs(e2ePercentile(slack, 0)), e2eMs(e2ePercentile(slack, 0.5)))

	// A reused container behaves like a fresh one: same runtime process,
	// same kind of answer, no connection left behind.
	for _, e := range emus {
		var pids []int
		ends, warm, afterKill := map[string]int{}, 0, false
		for _, c := range e.history() {
			if c.died() { // killed, by the test or at the deadline: its runtime is gone
				ends["killed"]++
				afterKill = true
				continue
			}
			ends[c.Out.End]++
			switch {
			case len(pids) == 0 || afterKill:
				pids = append(pids, c.PID)
			case c.PID == pids[len(pids)-1]:
				warm++
			default:
				t.Errorf("%s: an invocation ran in runtime %d after one in %d with no kill between: the container was not reused", e.name, c.PID, pids[len(pids)-1])
				pids = append(pids, c.PID)
			}
			afterKill = false
		}
		if warm == 0 {
			t.Errorf("%s: no invocation reused a warm runtime", e.name)
		}
		t.Logf("%s: %d invocations, %d of them in a warm runtime (pids %v), ends %v", e.name, len(e.history()), warm, pids, ends)
	}
}

// An e2eProc is one run of the binary in -mode process.
type e2eProc struct {
	name, parts string
	cmd         *exec.Cmd
	log         string
	started     time.Time
	done        chan struct{} // closed when it has exited
	sent        string        // the signal the test sent, if any
}

// e2eStartProc runs the binary owning parts, with env as its whole
// environment.
func e2eStartProc(t *testing.T, bin, dir, name, parts string, env []string) *e2eProc {
	t.Helper()
	p := &e2eProc{name: name, parts: parts, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-mode", "process", "-topic", "src", "-partitions", parts, "-sink", e2eSinkScheme(t)+"://out",
		"-ttl", e2eTTL.String(), "-skew", e2eSkew.String(), "-commit-interval", e2eCommitEvery.String())
	p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = env, logf, logf
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s (-partitions %s) log, last lines:\n%s", name, parts, e2eTail(p.log, 8))
		}
	})
	return p
}

func (p *e2eProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// owner is the prefix of the owner ids the process writes in leases, from
// its log; "" until it has logged one.
func (p *e2eProc) owner() string {
	for _, f := range e2eLogLines(p.log) {
		if o, _, ok := strings.Cut(f["owner"], "/"); ok {
			return o
		}
	}
	return ""
}

func (p *e2eProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.sent = sig.String()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

// e2eHandoffsIn reads the cooperative handoffs a process logged: partition
// and offset of each.
func e2eHandoffsIn(log string) [][2]int64 {
	var hs [][2]int64
	for _, f := range e2eLogLines(log) {
		if f["msg"] != "baton handed over" {
			continue
		}
		part := f["partition"]
		if part == "" { // only in the key: group/topic/partition
			part = f["key"][strings.LastIndex(f["key"], "/")+1:]
		}
		p, err1 := strconv.ParseInt(part, 10, 32)
		o, err2 := strconv.ParseInt(f["offset"], 10, 64)
		if err1 == nil && err2 == nil {
			hs = append(hs, [2]int64{p, o})
		}
	}
	return hs
}

var e2eTextAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// e2eLogLines reads a log of slog lines, JSON or text, as their top-level
// fields in text form; other lines are skipped.
func e2eLogLines(file string) []map[string]string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := map[string]string{}
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("{")) {
			var m map[string]json.RawMessage
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			for k, v := range m {
				var str string
				if json.Unmarshal(v, &str) == nil {
					fields[k] = str
				} else {
					fields[k] = string(v)
				}
			}
		} else {
			for _, m := range e2eTextAttr.FindAllStringSubmatch(string(line), -1) {
				v := m[2]
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				}
				fields[m[1]] = v
			}
		}
		if fields["msg"] != "" {
			lines = append(lines, fields)
		}
	}
	return lines
}

// e2eProcEnv is the whole environment of a baton process.
func e2eProcEnv(t *testing.T, brokers []string, group string, store []string) []string {
	home := t.TempDir()
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home, "AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"BATON_BROKERS=" + strings.Join(brokers, ","),
		"BATON_GROUP=" + group,
	}, store...)
}

// e2eSeed is BATON_E2E_SEED, or the time.
func e2eSeed(t *testing.T) uint64 {
	if s := os.Getenv("BATON_E2E_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BATON_E2E_SEED=%q: want a number", s)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

const (
	procPartitions = 4
	procSteps      = 10
)

// Three slots, like three replicas under a supervisor, own the partitions
// between them; each slot's process is started, rolled (a new one started
// while the old runs: the old hands over and exits), stopped (SIGTERM: it
// releases) at random, and one is killed with SIGKILL mid-stream and
// restarted. The random choices come from a printed seed.
func TestE2E_process_restarts_and_sigkill(t *testing.T) {
	t.Parallel()
	storeEnv, leases := e2eLeaseStore(t)
	bin := e2eBuild(t)
	cluster, _ := e2eCluster(t, procPartitions)
	brokers, group := cluster.ListenAddrs(), e2eGroup(t)
	env := e2eProcEnv(t, brokers, group, storeEnv)
	dir := e2eLogDir(t)
	seed := e2eSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d (BATON_E2E_SEED=%d replays this schedule); lease ttl %v, skew %v, commit every %v; store %s",
		seed, seed, e2eTTL, e2eSkew, e2eCommitEvery, storeName)

	// The slots' partitions: the four split 2+1+1 in a random way.
	perm := rng.Perm(procPartitions)
	slotParts := [][]int{perm[:2], perm[2:3], perm[3:]}
	flag := func(ps []int) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = strconv.Itoa(p)
		}
		return strings.Join(s, ",")
	}
	sink := e2eReadSink(t, brokers, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced, err := produce(pctx, brokers, "src", procPartitions, e2eProduceEvery)
	if err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	var all []*e2eProc
	maxUp := 0 // processes running at once
	slots := make([]*e2eProc, len(slotParts))
	logf := func(format string, a ...any) {
		t.Logf("%6.2fs "+format, append([]any{time.Since(begin).Seconds()}, a...)...)
	}
	start := func(slot int, why string) *e2eProc {
		p := e2eStartProc(t, bin, dir, fmt.Sprintf("p%d", len(all)+1), flag(slotParts[slot]), env)
		logf("slot %d: start %s (-partitions %s): %s", slot, p.name, p.parts, why)
		all = append(all, p)
		slots[slot] = p
		n := 0
		for _, q := range all {
			if !q.exited() {
				n++
			}
		}
		maxUp = max(maxUp, n)
		return p
	}
	up := func(slot int) bool { return slots[slot] != nil && !slots[slot].exited() && slots[slot].sent == "" }
	for slot := range slots {
		start(slot, "first start")
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	}

	killStep := 3 + rng.IntN(4)
	var (
		victim    *e2eProc
		killAt    time.Time
		atKill    = map[int]lease{} // the victim's partitions' leases right after the kill
		takenAt   = map[int]time.Time{}
		victimSet []int
	)
	for step := range procSteps {
		time.Sleep(time.Duration(600+rng.IntN(1000)) * time.Millisecond)
		slot := rng.IntN(len(slots))
		if step == killStep {
			for i := 0; i < len(slots) && !up(slot); i++ {
				slot = (slot + 1) % len(slots)
			}
			if !up(slot) {
				start(slot, "every slot was down; one to kill")
			}
			victim, victimSet = slots[slot], slotParts[slot]
			// Kill it once it owns its partitions and has committed records.
			for _, p := range victimSet {
				key := leaseKey(group, "src", int32(p))
				got, _ := e2eWaitLease(t, leases, key, 5*time.Second, victim.name+" to own its partitions",
					func(l lease) bool { return strings.HasPrefix(l.Owner, victim.owner()+"/") && l.State == stateRunning })
				e2eWaitLease(t, leases, key, 5*time.Second, victim.name+" to commit",
					func(l lease) bool { return l.Owner == got.Owner && l.Offset > got.Offset })
			}
			time.Sleep(time.Duration(rng.IntN(int(e2eCommitEvery/time.Millisecond))) * time.Millisecond)
			killAt = time.Now()
			victim.signal(t, syscall.SIGKILL)
			for _, p := range victimSet {
				if atKill[p], err = leases.load(ctx, leaseKey(group, "src", int32(p))); err != nil {
					t.Fatal(err)
				}
			}
			logf("slot %d: SIGKILL %s owning partitions %v at offsets %v", slot, victim.name, victimSet, e2eOffsets(atKill))
			// Its supervisor restarts it; the new one must wait out the
			// dead one's lease, and no longer.
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			heir := start(slot, "restart after the kill")
			for _, p := range victimSet {
				_, takenAt[p] = e2eWaitLease(t, leases, leaseKey(group, "src", int32(p)), e2eTTL+e2eSkew+5*time.Second, heir.name+" to take over",
					func(l lease) bool { o := heir.owner(); return o != "" && strings.HasPrefix(l.Owner, o+"/") })
				logf("partition %d taken over by %s %s after the SIGKILL", p, heir.name, e2eMs(takenAt[p].Sub(killAt)))
			}
			continue
		}
		switch {
		case !up(slot):
			start(slot, "slot was down")
		case rng.IntN(2) == 0:
			old := slots[slot]
			start(slot, "rolling restart; "+old.name+" hands over and exits")
		default:
			logf("slot %d: SIGTERM %s", slot, slots[slot].name)
			slots[slot].signal(t, syscall.SIGTERM)
		}
	}
	for slot := range slots {
		if !up(slot) {
			start(slot, "slot was down at the end")
		}
	}
	time.Sleep(time.Second)
	stopProducing()
	total := produced()
	waitFor(t, "the sink to hold every produced record", 15*time.Second, func() bool { return sink.complete(total) })
	for slot := range slots {
		logf("slot %d: SIGTERM %s at the end", slot, slots[slot].name)
		slots[slot].signal(t, syscall.SIGTERM)
	}

	// How each process ended: SIGKILL for the victim; exit 0 for the rest,
	// rolled ones on their own.
	for _, p := range all {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not exit within 10s (sent %q)", p.name, p.sent)
		}
		st := p.cmd.ProcessState
		switch {
		case p == victim:
			if ws, ok := st.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Errorf("%s: %v; want killed by SIGKILL", p.name, st)
			}
		case st.ExitCode() != 0:
			t.Errorf("%s (sent %q): %v; want exit status 0", p.name, p.sent, st)
		}
	}

	// The SIGKILLed process's partitions were taken over within the lease
	// TTL and the skew allowance, and not before its lease ran out.
	if victim == nil {
		t.Fatal("no process was killed")
	}
	for _, p := range victimSet {
		// The heir polls every 20 ms and we poll every 5 ms, each read a
		// store round trip: 250 ms covers them.
		if took := takenAt[p].Sub(killAt); took > e2eTTL+e2eSkew+250*time.Millisecond {
			t.Errorf("partition %d: taken over %v after the SIGKILL; want within ttl + skew = %v", p, took, e2eTTL+e2eSkew)
		}
	}

	var gaps []time.Duration
	for _, proc := range all {
		for _, h := range e2eHandoffsIn(proc.log) {
			recs := sink.partition(int32(h[0]))
			if gap, ok := e2eGapBefore(recs, analyseSink(recs, total[h[0]]), h[1]); ok {
				gaps = append(gaps, gap)
			}
		}
	}
	txn := e2eSinkScheme(t) == "kafka+txn"
	for p := range procPartitions {
		recs := sink.partition(int32(p))
		rep := analyseSink(recs, total[p])
		logf("partition %d: produced %d, sink %d records, duplicates %d (rewinds to %v), out of order %d, missing %d",
			p, total[p], rep.Written, rep.Duplicates, rep.Rewinds, rep.Skips, rep.Missing)
		if rep.Missing != 0 || rep.Skips != 0 {
			t.Errorf("partition %d: %d records missing, %d out of order", p, rep.Missing, rep.Skips)
		}
		l, killed := atKill[p]
		switch {
		case txn && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates with the exactly-once sink (killed: %v)", p, rep.Duplicates, killed)
		case txn && killed:
			logf("partition %d: no duplicates after the SIGKILL (the exactly-once sink)", p)
		case !killed && rep.Duplicates != 0:
			t.Errorf("partition %d: %d duplicates, and its owner was never killed", p, rep.Duplicates)
		case killed && (len(rep.Rewinds) > 1 || len(rep.Rewinds) == 1 && rep.Rewinds[0] != l.Offset):
			t.Errorf("partition %d: rewinds to %v; want at most one, to the killed owner's last commit %d", p, rep.Rewinds, l.Offset)
		case killed:
			// The heir's first write: the last copy of the committed offset.
			i := rep.first[l.Offset]
			for j := i + 1; j < len(recs); j++ {
				if recs[j].N == l.Offset {
					i = j
				}
			}
			if end := time.UnixMilli(l.ExpiresAt).Add(e2eSkew); recs[i].At.Before(end) {
				t.Errorf("partition %d: the heir wrote at %v, before the dead owner's lease plus skew ended at %v", p, recs[i].At, end)
			}
			logf("partition %d: the heir wrote from offset %d %s after the SIGKILL; sink gap %s, %d duplicates",
				p, l.Offset, e2eMs(recs[i].At.Sub(killAt)), e2eMs(recs[i].At.Sub(recs[max(i-1, 0)].At)), rep.Duplicates)
		}
		if l, err := leases.load(ctx, leaseKey(group, "src", int32(p))); err != nil || l.State != stateReleased || l.Offset != total[p] {
			t.Errorf("partition %d lease at the end: %+v, %v; want released at %d", p, l, err, total[p])
		}
	}
	logf("%d processes, up to %d at once; %d cooperative handoffs, gap p50 %s, max %s", len(all), maxUp, len(gaps), e2eMs(e2ePercentile(gaps, 0.5)), e2eMs(e2ePercentile(gaps, 1)))
}

func e2eOffsets(ls map[int]lease) map[int]int64 {
	o := map[int]int64{}
	for p, l := range ls {
		o[p] = l.Offset
	}
	return o
}

// A process stopped while it waits for the baton must not take the baton
// with it: afterwards the old owner still owns the partition, or it is
// released; it is never owned in the name of a process that has exited,
// which nobody could take before the lease ends.
func TestE2E_process_sigterm_while_waiting_leaves_no_lease(t *testing.T) {
	t.Parallel()
	storeEnv, leases := e2eLeaseStore(t)
	bin := e2eBuild(t)
	cluster, _ := e2eCluster(t, 1)
	brokers, group := cluster.ListenAddrs(), e2eGroup(t)
	env, dir := e2eProcEnv(t, brokers, group, storeEnv), e2eLogDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := produce(ctx, brokers, "src", 1, e2eProduceEvery); err != nil {
		t.Fatal(err)
	}
	key := leaseKey(group, "src", 0)
	a := e2eStartProc(t, bin, dir, "a", "0", env)
	e2eWaitLease(t, leases, key, 5*time.Second, "a to own partition 0",
		func(l lease) bool { o := a.owner(); return o != "" && strings.HasPrefix(l.Owner, o+"/") })
	b := e2eStartProc(t, bin, dir, "b", "0", env)
	e2eWaitLease(t, leases, key, 5*time.Second, "b to ask for the baton",
		func(l lease) bool { o := b.owner(); return o != "" && strings.HasPrefix(l.Successor, o+"/") })
	b.signal(t, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Fatal("b did not exit within 5s of SIGTERM")
	}
	gone := time.Now()
	// a sees an ask at its next commit: two intervals are plenty.
	time.Sleep(2*e2eCommitEvery + 200*time.Millisecond)
	l, err := leases.load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(l.Owner, b.owner()+"/") && l.State == stateRunning {
		t.Errorf("b exited (%v) while it waited for the baton, and %v later the lease is running in its name (a exited: %v): "+
			"nobody reads partition 0 until that lease expires, ttl + skew after the hand-over (32 s with the defaults); "+
			"a wait that ends without the baton must withdraw its ask", b.cmd.ProcessState, time.Since(gone).Round(time.Millisecond), a.exited())
	}
	t.Logf("after b's SIGTERM: lease owner %q, state %s, successor %q; a running: %v", l.Owner, l.State, l.Successor, !a.exited())
}
