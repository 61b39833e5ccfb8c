//go:build e2e

// e2e_rig_test.go is the rig of the end-to-end tests (e2e_lambda_test.go,
// e2e_process_test.go): the real binary built for this machine, the Lambda
// runtime interface emulator, kfake on a loopback port, the lease store of
// this build, and a reader of the sink topic.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	return slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, name)
	})
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
	msg := "aws-lambda-rie is not on PATH nor in $(go env GOPATH)/bin: ./bootstrap.sh test installs the pinned version (RIE_VERSION there)"
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
	for _, pid := range pids {
		if slices.Contains(e2eFDs(pid), "socket:["+inode+"]") {
			return pid
		}
	}
	return 0
}

// e2eFDs is what pid's file descriptors point to.
func e2eFDs(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	var links []string
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil {
			links = append(links, l)
		}
	}
	return links
}

// e2eSocketInode is the inode of the socket from local port lport to remote
// port rport, or "".
func e2eSocketInode(lport, rport int) string {
	for _, e := range e2eTCPEntries() {
		if e.lport == lport && e.rport == rport {
			return e.inode
		}
	}
	return ""
}

type e2eTCPEntry struct {
	lport, rport int
	state        string
	inode        string
}

// e2eTCPEntries reads /proc/net/tcp and /proc/net/tcp6.
func e2eTCPEntries() []e2eTCPEntry {
	var es []e2eTCPEntry
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 10 {
				es = append(es, e2eTCPEntry{lport: e2eHexPort(f[1]), rport: e2eHexPort(f[2]), state: f[3], inode: f[9]})
			}
		}
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
	for _, e := range e2eTCPEntries() {
		if e.rport == rport && e.state == "01" {
			inodes["socket:["+e.inode+"]"] = true
		}
	}
	n := 0
	for _, l := range e2eFDs(pid) {
		if inodes[l] {
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

// An e2eWorld is what each end-to-end test starts from: the lease store
// of this build, the binary, kfake with src and out, a lease group of the
// test's own, a log directory, a reader of the sink topic, and a context
// that bounds the test.
type e2eWorld struct {
	storeEnv []string
	leases   store
	bin      string
	conns    *e2eConns
	brokers  []string
	group    string
	logs     string
	sink     *e2eSink
	ctx      context.Context
}

func newE2EWorld(t *testing.T, partitions int32, limit time.Duration) *e2eWorld {
	t.Helper()
	w := &e2eWorld{}
	w.storeEnv, w.leases = e2eLeaseStore(t)
	w.bin = e2eBuild(t)
	cluster, conns := e2eCluster(t, partitions)
	w.conns, w.brokers, w.group, w.logs = conns, cluster.ListenAddrs(), e2eGroup(t), e2eLogDir(t)
	w.sink = e2eReadSink(t, w.brokers, "out")
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	w.ctx = ctx
	return w
}

// producing produces a record every every to each of src's partitions
// until stop, or the test's end; produced waits for the producer and
// gives the counts.
func (w *e2eWorld) producing(t *testing.T, partitions int32, every time.Duration) (produced func() []int64, stop func()) {
	t.Helper()
	pctx, stop := context.WithCancel(w.ctx)
	t.Cleanup(stop)
	produced, err := produce(pctx, w.brokers, "src", partitions, every)
	if err != nil {
		t.Fatal(err)
	}
	return produced, stop
}

// env is the whole environment of the binary, extra added.
func (w *e2eWorld) env(t *testing.T, extra ...string) []string {
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		// Nothing from the developer's AWS configuration reaches the binary.
		"HOME=" + home, "AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"BATON_BROKERS=" + strings.Join(w.brokers, ","),
		"BATON_GROUP=" + w.group,
	}
	return append(append(env, extra...), w.storeEnv...)
}

// rieEnv is the environment of an emulator and its runtime, whose function
// times out after timeout, with the tests' lease timings.
func (w *e2eWorld) rieEnv(t *testing.T, timeout time.Duration) []string {
	return w.env(t, "AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(timeout/time.Second)),
		"BATON_TOPIC=src", // the only topic an event may name
		"BATON_SINK="+e2eSinkScheme(t)+"://out",
		"BATON_TTL="+e2eTTL.String(), "BATON_SKEW="+e2eSkew.String(), "BATON_COMMIT_INTERVAL="+e2eCommitEvery.String())
}

// emulators starts n emulators, rie0 and on, with env, and counts the
// Kafka connections their runtimes open.
func (w *e2eWorld) emulators(t *testing.T, rie string, n int, env []string) []*rieEmulator {
	emus := make([]*rieEmulator, n)
	for i := range emus {
		emus[i] = startRIE(t, rie, w.bin, w.logs, fmt.Sprintf("rie%d", i), env)
	}
	w.conns.setCandidates(func() []int {
		var pids []int
		for _, e := range emus {
			if pid := e.runtimePID(); pid != 0 {
				pids = append(pids, pid)
			}
		}
		return pids
	})
	return emus
}

// lease polls the lease of src/partition until ok holds, and gives it
// and when it was seen.
func (w *e2eWorld) lease(t *testing.T, partition int32, limit time.Duration, what string, ok func(lease) bool) (lease, time.Time) {
	t.Helper()
	end := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := w.leases.load(ctx, leaseKey(w.group, "src", partition))
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

// wantReleased checks that the lease of src/p ended released at offset.
func (w *e2eWorld) wantReleased(t *testing.T, p int32, offset int64) {
	t.Helper()
	if l, err := w.leases.load(w.ctx, leaseKey(w.group, "src", p)); err != nil || l.State != stateReleased || l.Offset != offset {
		t.Errorf("partition %d lease at the end: %+v, %v; want released at %d", p, l, err, offset)
	}
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

func e2eMs(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1000) }

// Lease timings of both tests: short, so that a run of seconds shows many
// renewals and a takeover after a crash. A 4 s lease is about the shortest
// baton takes, with a skew of 10 ms (the processes share one clock): it
// leaves an owner's last produces the 1.3 s they need to settle
// (producesSettle).
const (
	e2eTTL          = 4 * time.Second
	e2eSkew         = 10 * time.Millisecond
	e2eCommitEvery  = 500 * time.Millisecond
	e2eProduceEvery = 2 * time.Millisecond // a record a partition
)
