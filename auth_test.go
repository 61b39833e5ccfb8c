// auth_test.go runs baton against kfake with SASL (PLAIN, SCRAM) and TLS on
// loopback, checks that a wrong password fails fast and clearly before the
// lease is touched, checks the security flags, and that a password never
// prints. Secrets Manager and MSK IAM are checked by their wiring only: no
// AWS calls.

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // the CA, and the client's certificate and key
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "baton test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		must(t, err)
		return der, k
	}
	p := &testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	sder, skey := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	p.server = tls.Certificate{Certificate: [][]byte{sder}, PrivateKey: skey}
	cder, ckey := leaf(3, "baton", x509.ExtKeyUsageClientAuth)
	kder, err := x509.MarshalPKCS8PrivateKey(ckey)
	must(t, err)
	p.certFile, p.keyFile = write("client.pem", "CERTIFICATE", cder), write("client.key", "PRIVATE KEY", kder)
	return p
}

// serverTLS is kfake's side: its certificate, and with mutual, a demand
// for a client certificate signed by the CA.
func (p *testPKI) serverTLS(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if mutual {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	return c
}

// secureCluster is kfake on loopback with one topic "src" and the options.
func secureCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "src")}, opts...)...)
	must(t, err)
	t.Cleanup(c.Close)
	return c
}

// mustSetAuth resolves the security fields as parseConfig would.
func mustSetAuth(t *testing.T, cfg *config) {
	t.Helper()
	must(t, errors.Join(cfg.setAuth()...))
}

// produceSecure writes n records to the config's topic through its
// security settings.
func produceSecure(t *testing.T, cfg *config, n int) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic)}, authOpts(cfg)...)...)
	must(t, err)
	defer cl.Close()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Value: fmt.Appendf(nil, "r%d", i)}
	}
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeThrough runs one invocation with cfg until its sink holds the n
// records, then shuts it down: it must have connected and consumed.
func consumeThrough(t *testing.T, cfg *config, s store, n int) {
	t.Helper()
	rec := newRecorder(nil)
	d, _ := testDeps(t, s, rec)
	ctx, stop := context.WithCancel(ctxT(t))
	defer stop()
	wait := invoke(ctx, cfg, d, invocation{"src", 0, time.Now().UnixMilli(), "A"}, time.Minute)
	var ended atomic.Bool // one that ends early fails below with its own error, not at the wait's timeout
	go func() { wait(); ended.Store(true) }()
	waitFor(t, "the records at the sink", 10*time.Second, func() bool { return rec.count("A") >= n || ended.Load() })
	stop()
	out, err := wait()
	if err != nil || out.End != endReleased {
		t.Fatalf("invocation: %+v, %v; want released at shutdown", out, err)
	}
	if got := rec.count("A"); got != n || out.To != int64(n) {
		t.Fatalf("sink has %d records, committed to %d; want %d", got, out.To, n)
	}
}

// kfakeName is a -sasl mechanism as kfake names it.
func kfakeName(mech string) string { return strings.ToUpper(mech) }

func TestAuth_sasl_consumes(t *testing.T) {
	for _, mech := range []string{saslPlain, saslScram256, saslScram512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			cluster := secureCluster(t, kfake.EnableSASL(), kfake.Superuser(kfakeName(mech), "alice", "s3cret-"+mech))
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			cfg.SASL, cfg.SASLUser, cfg.SASLPassword = mech, "alice", newSecret("s3cret-"+mech)
			mustSetAuth(t, cfg)
			produceSecure(t, cfg, 20)
			consumeThrough(t, cfg, newMemStore(), 20)
		})
	}
}

func TestAuth_tls_consumes(t *testing.T) {
	pki := newPKI(t)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			t.Parallel()
			cluster := secureCluster(t, kfake.TLS(pki.serverTLS(mutual)))
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			cfg.TLSCA = pki.caFile
			if mutual {
				cfg.TLSCert, cfg.TLSKey = pki.certFile, pki.keyFile
			}
			mustSetAuth(t, cfg)
			if !cfg.TLS {
				t.Fatal("-tls-ca did not imply -tls")
			}
			produceSecure(t, cfg, 20)
			consumeThrough(t, cfg, newMemStore(), 20)
		})
	}
}

// fakeSecrets is Secrets Manager holding one secret.
type fakeSecrets struct {
	arn, value string
	err        error
	calls      atomic.Int32
	deadline   atomic.Bool // every call had a deadline within secretTimeout
}

func (f *fakeSecrets) secretString(ctx context.Context, arn string) (*string, error) {
	f.calls.Add(1)
	dl, ok := ctx.Deadline()
	f.deadline.Store(ok && time.Until(dl) <= secretTimeout)
	if f.err != nil {
		return nil, f.err
	}
	if arn != f.arn {
		return nil, fmt.Errorf("ResourceNotFoundException: no secret %s", arn)
	}
	return &f.value, nil
}

// withSecrets resolves cfg's security and has it read its secret from sm.
func withSecrets(t *testing.T, cfg *config, sm *fakeSecrets) *config {
	t.Helper()
	mustSetAuth(t, cfg)
	cfg.auth.secrets = sm
	return cfg
}

const testARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_baton-AbCdEf"

func TestAuth_scram_over_mtls_with_secret_from_secrets_manager(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	cluster := secureCluster(t, kfake.TLS(pki.serverTLS(true)), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "bob", "from-the-vault"))
	cfg := testConfig(t, cluster.ListenAddrs(), "src")
	cfg.TLSCA, cfg.TLSCert, cfg.TLSKey = pki.caFile, pki.certFile, pki.keyFile
	cfg.SASL, cfg.SASLSecret = saslScram512, testARN
	sm := &fakeSecrets{arn: testARN, value: `{"username": "bob", "password": "from-the-vault"}`}
	withSecrets(t, cfg, sm)
	produceSecure(t, cfg, 20)
	consumeThrough(t, cfg, newMemStore(), 20)
	if got := sm.calls.Load(); got != 1 {
		t.Errorf("Secrets Manager read %d times over two clients; want once", got)
	}
	if !sm.deadline.Load() {
		t.Errorf("the read had no deadline within %v", secretTimeout)
	}
}

// TestAuth_wrong_password_fails_fast_and_leaves_lease shows a refused
// password end to end: kfake closes the connection (as kgo would otherwise
// retry until the metadata deadline), the error says what failed for whom,
// never the password, and the lease is not touched.
func TestAuth_wrong_password_fails_fast_and_leaves_lease(t *testing.T) {
	for _, mech := range []string{saslPlain, saslScram256, saslScram512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			cluster := secureCluster(t, kfake.EnableSASL(), kfake.Superuser(kfakeName(mech), "alice", "right"))
			s := newMemStore()
			good := testConfig(t, cluster.ListenAddrs(), "src")
			good.SASL, good.SASLUser, good.SASLPassword = mech, "alice", newSecret("right")
			mustSetAuth(t, good)
			wrong := *good
			wrong.SASLPassword = newSecret("wrong-Pa55word")
			mustSetAuth(t, &wrong)
			key := leaseKey(good.Group, "src", 0)

			refused := func() {
				t.Helper()
				d, _ := testDeps(t, s, nil)
				start := time.Now()
				out, err := runInvocation(ctxT(t), &wrong, d, invocation{"src", 0, time.Now().UnixMilli(), "W"})
				took := time.Since(start)
				if err == nil {
					t.Fatalf("wrong password: %+v, no error", out)
				}
				msg := err.Error()
				t.Logf("after %v: %v", took.Round(time.Millisecond), msg)
				for _, want := range []string{"authentication failed", kfakeName(mech), `"alice"`} {
					if !strings.Contains(msg, want) {
						t.Errorf("error does not say %q: %v", want, msg)
					}
				}
				if strings.Contains(msg, "wrong-Pa55word") || strings.Contains(msg, "right") {
					t.Errorf("error shows a password: %v", msg)
				}
				if out.End != endError {
					t.Errorf("outcome %q, want %q", out.End, endError)
				}
				if took > 5*time.Second {
					t.Errorf("took %v to fail; want a few seconds at most", took)
				}
			}

			refused()
			if _, err := s.load(ctxT(t), key); !errors.Is(err, errNotFound) {
				t.Fatalf("after a refused password, load: %v; want errNotFound", err)
			}
			produceSecure(t, good, 5)
			consumeThrough(t, good, s, 5)
			before, err := s.load(ctxT(t), key)
			must(t, err)
			refused()
			after, err := s.load(ctxT(t), key)
			if err != nil || !reflect.DeepEqual(after, before) {
				t.Fatalf("a refused password changed the lease:\nbefore %+v\nafter  %+v (%v)", before, after, err)
			}
		})
	}
}

// TestAuth_tls_refused_fails_fast: a broker certificate from an unknown CA,
// and mutual TLS without a client certificate, end the invocation quickly
// with TLS's own reason, before the lease.
func TestAuth_tls_refused_fails_fast(t *testing.T) {
	pki, other := newPKI(t), newPKI(t)
	for _, tt := range []struct {
		name   string
		mutual bool
		set    func(*config)
		want   string
	}{
		{"unknown CA", false, func(c *config) { c.TLSCA = other.caFile }, "certificate"},
		{"no client certificate", true, func(c *config) { c.TLSCA = pki.caFile }, "certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cluster := secureCluster(t, kfake.TLS(pki.serverTLS(tt.mutual)))
			cfg := testConfig(t, cluster.ListenAddrs(), "src")
			tt.set(cfg)
			mustSetAuth(t, cfg)
			s := newMemStore()
			d, _ := testDeps(t, s, nil)
			start := time.Now()
			_, err := runInvocation(ctxT(t), cfg, d, invocation{"src", 0, 1000, "A"})
			took := time.Since(start)
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v; want one about the %s", err, tt.want)
			}
			if took > cfg.KafkaTimeout {
				t.Errorf("took %v to fail", took)
			}
			if _, err := s.load(ctxT(t), leaseKey(cfg.Group, "src", 0)); !errors.Is(err, errNotFound) {
				t.Fatalf("lease: %v; want errNotFound", err)
			}
		})
	}
}

func TestAuth_secret_from_secrets_manager(t *testing.T) {
	t.Parallel()
	load := func(t *testing.T, sm *fakeSecrets, user string) (string, secret, error) {
		return withSecrets(t, &config{SASL: saslPlain, SASLUser: user, SASLSecret: testARN}, sm).auth.credentials(context.Background())
	}
	t.Run("read once, however many handshakes", func(t *testing.T) {
		sm := &fakeSecrets{arn: testARN, value: `{"username":"u","password":"p"}`}
		cfg := withSecrets(t, &config{SASL: saslScram256, SASLSecret: testARN}, sm)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if u, p, err := cfg.auth.credentials(context.Background()); err != nil || u != "u" || p.reveal() != "p" {
					t.Errorf("got %q, %v; want u and its password", u, err)
				}
			})
		}
		wg.Wait()
		if got := sm.calls.Load(); got != 1 {
			t.Errorf("%d reads; want 1", got)
		}
	})
	t.Run("-sasl-user fills a secret without username", func(t *testing.T) {
		u, p, err := load(t, &fakeSecrets{arn: testARN, value: `{"password":"p"}`}, "flaguser")
		if err != nil || u != "flaguser" || p.reveal() != "p" {
			t.Fatalf("got %q, %v", u, err)
		}
	})
	for _, tt := range []struct{ name, value string }{
		{"not JSON", `hunter2-not-json`},
		{"no password", `{"username":"u","passwd":"hunter2-misspelt"}`},
		{"no username", `{"password":"hunter2-alone"}`},
		{"password not a string", `{"username":"u","password":["hunter2-list"]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, &fakeSecrets{arn: testARN, value: tt.value}, "")
			if err == nil || !strings.Contains(err.Error(), "-sasl-secret (BATON_SASL_SECRET)") {
				t.Fatalf("err %v; want one naming -sasl-secret", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows the secret: %v", err)
			}
		})
	}
	t.Run("read fails, then succeeds", func(t *testing.T) {
		sm := &fakeSecrets{arn: testARN, value: `{"username":"u","password":"p"}`, err: errors.New("AccessDeniedException")}
		cfg := withSecrets(t, &config{SASL: saslPlain, SASLSecret: testARN}, sm)
		if _, _, err := cfg.auth.credentials(context.Background()); err == nil || !strings.Contains(err.Error(), "AccessDeniedException") {
			t.Fatalf("err %v; want the API's", err)
		}
		sm.err = nil
		if u, _, err := cfg.auth.credentials(context.Background()); err != nil || u != "u" {
			t.Fatalf("second try: %q, %v", u, err)
		}
	})
}

// TestAuth_msk_iam_wiring signs an MSK IAM handshake with credentials from
// the SDK's default chain (here its first link, the environment: no network)
// and checks the session token goes along.
func TestAuth_msk_iam_wiring(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDBATONTEST", "AWS_SECRET_ACCESS_KEY": "secret-key-never-sent", "AWS_SESSION_TOKEN": "session-token-xyz",
		"AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}

	challenge := func(t *testing.T, a *kafkaAuth) map[string]string {
		t.Helper()
		_, first, err := a.mechanism().Authenticate(context.Background(), "b-1.baton.abc123.c2.kafka.us-east-1.amazonaws.com:9098")
		must(t, err)
		var m map[string]string
		if err := json.Unmarshal(first, &m); err != nil {
			t.Fatalf("challenge %s: %v", first, err)
		}
		return m
	}

	t.Run("default chain", func(t *testing.T) {
		c, err := parseConfig([]string{"-mode", "lambda", "-brokers", "b-1:9098", "-topic", "t", "-sasl", "aws-msk-iam"}, fakeEnv(nil))
		must(t, err)
		if !c.TLS || c.auth == nil || c.auth.tls == nil {
			t.Fatalf("aws-msk-iam without TLS: %+v", c.auth)
		}
		if got := len(authOpts(c)); got != 3 {
			t.Errorf("%d client options; want TLS, SASL and the guard's hook", got)
		}
		m := challenge(t, c.auth)
		if got := m["action"]; got != "kafka-cluster:Connect" {
			t.Errorf("action %q", got)
		}
		if got := m["x-amz-credential"]; !strings.HasPrefix(got, "AKIDBATONTEST/") || !strings.Contains(got, "/us-east-1/kafka-cluster/") {
			t.Errorf("credential %q; want the environment's key for us-east-1", got)
		}
		if got := m["x-amz-security-token"]; got != "session-token-xyz" {
			t.Errorf("session token %q; want the environment's", got)
		}
	})
	t.Run("provider error names the chain", func(t *testing.T) {
		c := &config{SASL: saslMSKIAM}
		mustSetAuth(t, c)
		c.auth.aws = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no EC2 IMDS role found")
		})
		_, _, err := c.auth.mechanism().Authenticate(context.Background(), "b-1.x.kafka.us-east-1.amazonaws.com:9098")
		if err == nil || !strings.Contains(err.Error(), "default chain") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("static provider", func(t *testing.T) {
		c := &config{SASL: saslMSKIAM}
		mustSetAuth(t, c)
		c.auth.aws = credentials.NewStaticCredentialsProvider("AKIDSTATIC", "s", "tok")
		if m := challenge(t, c.auth); m["x-amz-security-token"] != "tok" {
			t.Errorf("challenge %v", m)
		}
	})
}

// TestAuth_password_never_prints formats a config, its resolved security
// and the password every way fmt, slog and encoding/json offer.
func TestAuth_password_never_prints(t *testing.T) {
	t.Parallel()
	const pw = "pw-Zebra-9931"
	c, err := parseConfig([]string{"-brokers", "b:9092", "-topic", "t", "-sasl", "scram-sha-512", "-sasl-user", "alice"},
		fakeEnv(map[string]string{passwordEnv: pw}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SASLPassword.reveal() != pw || c.auth == nil || c.auth.pass.reveal() != pw {
		t.Fatalf("password not read from %s", passwordEnv)
	}
	var out bytes.Buffer
	for _, v := range []any{c, *c, c.auth, c.SASLPassword, &c.SASLPassword, []secret{c.SASLPassword}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10.3s"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		fmt.Fprintln(&out, v)
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("config", "cfg", c, "value", *c, "auth", c.auth, "pw", c.SASLPassword, slog.Any("any", c.SASLPassword))
	}
	for _, v := range []any{c, c.auth} {
		b, _ := json.Marshal(v)
		out.Write(b)
	}
	if strings.Contains(out.String(), pw) || strings.Contains(strings.ToLower(out.String()), fmt.Sprintf("%x", pw)) {
		t.Fatalf("the password printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatalf("no [redacted] in:\n%s", out.String())
	}
	if got := fmt.Sprint(secret{}); got != "" {
		t.Errorf("empty secret prints %q", got)
	}
}

func TestConfig_auth_flags(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	must(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	valid := []string{"-brokers", "b:9092", "-topic", "t"}
	args := func(more ...string) []string { return append(append([]string{}, valid...), more...) }
	pw := map[string]string{passwordEnv: "pw-Quokka-77"}

	type view struct {
		TLS, RootCAs bool
		Certs        int
		SASL, User   string
		Auth         bool // c.auth is set
	}
	viewOf := func(c *config) view {
		v := view{TLS: c.TLS, SASL: c.SASL, User: c.SASLUser, Auth: c.auth != nil}
		if c.auth != nil && c.auth.tls != nil {
			v.RootCAs, v.Certs = c.auth.tls.RootCAs != nil, len(c.auth.tls.Certificates)
		}
		return v
	}
	good := []struct {
		name string
		args []string
		env  map[string]string
		want view
	}{
		{"none by default", args(), nil, view{SASL: "none"}},
		{"-tls with the system roots", args("-tls"), nil, view{TLS: true, SASL: "none", Auth: true}},
		{"BATON_TLS", args(), map[string]string{"BATON_TLS": "1"}, view{TLS: true, SASL: "none", Auth: true}},
		{"-tls-ca implies -tls", args("-tls-ca", pki.caFile), nil, view{TLS: true, RootCAs: true, SASL: "none", Auth: true}},
		{"mutual TLS", args("-tls-ca", pki.caFile, "-tls-cert", pki.certFile, "-tls-key", pki.keyFile), nil,
			view{TLS: true, RootCAs: true, Certs: 1, SASL: "none", Auth: true}},
		{"mutual TLS from the environment", args(), map[string]string{"BATON_TLS_CERT": pki.certFile, "BATON_TLS_KEY": pki.keyFile},
			view{TLS: true, Certs: 1, SASL: "none", Auth: true}},
		{"plain with BATON_SASL_PASSWORD", args("-sasl", "plain", "-sasl-user", "alice"), pw, view{SASL: "plain", User: "alice", Auth: true}},
		{"scram from the environment, any case", args(), map[string]string{"BATON_SASL": "SCRAM-SHA-512", "BATON_SASL_USER": "bob", passwordEnv: "x"},
			view{SASL: "scram-sha-512", User: "bob", Auth: true}},
		{"scram with a secret", args("-sasl", "scram-sha-256", "-sasl-secret", testARN), nil, view{SASL: "scram-sha-256", Auth: true}},
		{"aws-msk-iam implies TLS", args("-sasl", "aws-msk-iam"), nil, view{TLS: true, SASL: "aws-msk-iam", Auth: true}},
		{"scram over TLS", args("-tls=true", "-sasl", "scram-sha-256", "-sasl-user", "u"), pw,
			view{TLS: true, SASL: "scram-sha-256", User: "u", Auth: true}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, fakeEnv(tt.env))
			must(t, err)
			if got := viewOf(c); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}

	bad := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"-tls not a bool", args("-tls=maybe"), nil, []string{"tls"}},
		{"unknown mechanism", args("-sasl", "gssapi"), nil, []string{"sasl"}},
		{"unknown mechanism from the environment", args(), map[string]string{"BATON_SASL": "oauthbearer"}, []string{"sasl"}},
		{"plain without user", args("-sasl", "plain"), pw, []string{"sasl-user"}},
		{"scram without password", args("-sasl", "scram-sha-256", "-sasl-user", "u"), nil, []string{"sasl"}},
		{"plain without either", args("-sasl", "plain"), nil, []string{"sasl-user", "sasl"}},
		{"password and secret", args("-sasl", "plain", "-sasl-secret", testARN), pw, []string{"sasl-secret"}},
		{"secret not an ARN", args("-sasl", "plain", "-sasl-secret", "my-secret"), nil, []string{"sasl-secret"}},
		{"secret ARN of another service", args("-sasl", "plain", "-sasl-secret", "arn:aws:ssm:eu-west-1:123456789012:parameter/x"), nil, []string{"sasl-secret"}},
		{"user without -sasl", args("-sasl-user", "u"), nil, []string{"sasl"}},
		{"password without -sasl", args(), pw, []string{"sasl"}},
		{"aws-msk-iam with a user", args("-sasl", "aws-msk-iam", "-sasl-user", "u"), nil, []string{"sasl"}},
		{"cert without key", args("-tls-cert", pki.certFile), nil, []string{"tls-key"}},
		{"key without cert", args("-tls-key", pki.keyFile), nil, []string{"tls-cert"}},
		{"CA file missing", args("-tls-ca", missing), nil, []string{"tls-ca"}},
		{"CA file not PEM", args("-tls-ca", notPEM), nil, []string{"tls-ca"}},
		{"cert file not PEM", args("-tls-cert", notPEM, "-tls-key", pki.keyFile), nil, []string{"tls-cert"}},
		{"cert and key that do not match", args("-tls-cert", pki.certFile, "-tls-key", pki.caFile), nil, []string{"tls-cert"}},
		{"several at once", args("-tls=maybe", "-sasl", "plain", "-tls-key", pki.keyFile), nil, []string{"tls", "sasl-user", "sasl", "tls-cert"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, fakeEnv(tt.env))
			wantOptionErrs(t, err, tt.want...)
			if strings.Contains(err.Error(), pw[passwordEnv]) {
				t.Errorf("error shows the password: %v", err)
			}
			if c.auth != nil {
				t.Errorf("a bad config still resolved its security")
			}
		})
	}
}

// TestAuth_guard_counts_closes_in_a_row: two closed answers to
// SaslAuthenticate fail the next handshake once, clearly; a completed
// handshake clears the count, so one network fault is forgiven.
func TestAuth_guard_counts_closes_in_a_row(t *testing.T) {
	t.Parallel()
	cfg := &config{SASL: saslPlain, SASLUser: "alice", SASLPassword: newSecret("pw-Guard-1")}
	mustSetAuth(t, cfg)
	g := &saslGuard{Mechanism: cfg.auth.mechanism(), a: cfg.auth}
	closed := func() { g.OnBrokerRead(kgo.BrokerMetadata{}, 36, 0, 0, 0, io.EOF) }
	handshake := func() error {
		s, _, err := g.Authenticate(context.Background(), "127.0.0.1:9092")
		if err == nil {
			_, _, err = s.Challenge(nil)
		}
		return err
	}
	closed()
	g.OnBrokerRead(kgo.BrokerMetadata{}, 3, 0, 0, 0, io.EOF) // a metadata read: not counted
	if err := handshake(); err != nil {
		t.Fatalf("after one close: %v; want a handshake", err)
	}
	closed()
	if err := handshake(); err != nil {
		t.Fatalf("one close after a completed handshake: %v; want a handshake", err)
	}
	closed()
	closed()
	err := handshake()
	if err == nil || !strings.Contains(err.Error(), `SASL PLAIN as user "alice": authentication failed`) {
		t.Fatalf("after two closes in a row: %v; want authentication failed", err)
	}
	if strings.Contains(err.Error(), "pw-Guard-1") {
		t.Fatalf("error shows the password: %v", err)
	}
	if err := handshake(); err != nil {
		t.Fatalf("the failure was reported; the next try: %v, want a handshake", err)
	}
}
