// auth.go holds Kafka security: TLS, SASL (PLAIN, SCRAM, AWS MSK IAM), the
// password from the environment or Secrets Manager, and a string type that
// never prints.

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	kaws "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms, as -sasl names them.
const (
	saslNone     = "none"
	saslPlain    = "plain"
	saslScram256 = "scram-sha-256"
	saslScram512 = "scram-sha-512"
	saslMSKIAM   = "aws-msk-iam"
)

// passwordEnv is where a SASL password is read when no -sasl-secret holds
// it. There is no flag: flags show in process lists.
const passwordEnv = "BATON_SASL_PASSWORD"

// secretTimeout bounds each read of the Secrets Manager secret and of AWS
// credentials.
const secretTimeout = 5 * time.Second

// A secret is a string that never prints: fmt (every verb, %#v too), slog
// and encoding/json show [redacted], or nothing when it is empty. The value
// sits behind a pointer, so even where fmt reaches it by reflection (through
// an unexported field, where it calls no methods) it shows an address. Only
// reveal, where the value goes to the broker, gives it away.
type secret struct{ p *string }

func newSecret(s string) secret {
	if s == "" {
		return secret{}
	}
	return secret{&s}
}

func (s secret) reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

func (s secret) given() bool { return s.p != nil }

func (s secret) String() string {
	if !s.given() {
		return ""
	}
	return "[redacted]"
}

func (s secret) GoString() string             { return strconv.Quote(s.String()) }
func (s secret) LogValue() slog.Value         { return slog.StringValue(s.String()) }
func (s secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
func (s secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, s.String())
}

var (
	_ slog.LogValuer = secret{}
	_ fmt.Formatter  = secret{}
	_ fmt.GoStringer = secret{}
)

// kafkaAuth is what the security flags resolve to: made once by setAuth,
// shared by every copy of the config, and turned into client options by
// authOpts at each connect.
type kafkaAuth struct {
	tls  *tls.Config // nil: plaintext
	mech string      // a -sasl mechanism; "" for none

	mu      sync.Mutex
	user    string
	pass    secret
	arn     string                  // Secrets Manager secret with the user and password
	loaded  bool                    // arn was read
	secrets secretReader            // reads arn; nil: a client from the SDK's default chain
	aws     aws.CredentialsProvider // MSK IAM; nil: the SDK's default chain, at first use
}

// secretARN is a Secrets Manager secret's ARN; its fourth field is the region.
var secretARN = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$`)

// parseAuth reads the security flags and BATON_SASL_PASSWORD into c and
// checks them: parseConfig's part for this file.
func parseAuth(c *config, v map[string]*string, getenv func(string) string) []error {
	c.TLSCA, c.TLSCert, c.TLSKey = *v["tls-ca"], *v["tls-cert"], *v["tls-key"]
	c.SASL, c.SASLUser, c.SASLSecret = *v["sasl"], *v["sasl-user"], *v["sasl-secret"]
	c.SASLPassword = newSecret(getenv(passwordEnv))
	var errs []error
	tlsOn, err := strconv.ParseBool(*v["tls"])
	if err != nil {
		errs = append(errs, optionErr("tls", "want true or false, got %q", *v["tls"]))
	}
	c.TLS = tlsOn
	return append(errs, c.setAuth()...)
}

// setAuth checks the security fields of c, reads its TLS files and sets
// c.auth (nil when there is no security to set up). A CA file or a client
// certificate implies -tls, and so does aws-msk-iam: MSK's IAM listener
// speaks only TLS.
func (c *config) setAuth() (errs []error) {
	bad := func(name, format string, a ...any) { errs = append(errs, optionErr(name, format, a...)) }
	c.SASL = strings.ToLower(strings.TrimSpace(c.SASL))
	a := &kafkaAuth{mech: c.SASL, user: c.SASLUser, pass: c.SASLPassword, arn: c.SASLSecret}
	given := c.SASLUser != "" || c.SASLPassword.given() || c.SASLSecret != ""
	switch c.SASL {
	case "", saslNone:
		c.SASL, a.mech = saslNone, ""
		if given {
			bad("sasl", "-sasl-user, %s and -sasl-secret are for plain and scram; got -sasl none", passwordEnv)
		}
	case saslPlain, saslScram256, saslScram512:
		switch {
		case c.SASLSecret != "" && c.SASLPassword.given():
			bad("sasl-secret", "set either it or %s, not both", passwordEnv)
		case c.SASLSecret != "":
			if !secretARN.MatchString(c.SASLSecret) {
				bad("sasl-secret", "want a Secrets Manager ARN like arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME, got %q", c.SASLSecret)
			}
		default:
			if c.SASLUser == "" {
				bad("sasl-user", "required with -sasl %s (or -sasl-secret)", c.SASL)
			}
			if !c.SASLPassword.given() {
				bad("sasl", "%s needs a password: set %s, or -sasl-secret (BATON_SASL_SECRET)", c.SASL, passwordEnv)
			}
		}
	case saslMSKIAM:
		c.TLS = true
		if given {
			bad("sasl", "aws-msk-iam takes AWS credentials from the SDK's default chain: unset -sasl-user, %s and -sasl-secret", passwordEnv)
		}
	default:
		bad("sasl", "want none, plain, scram-sha-256, scram-sha-512 or aws-msk-iam, got %q", c.SASL)
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		bad("tls-key", "required with -tls-cert (BATON_TLS_CERT)")
	case c.TLSKey != "" && c.TLSCert == "":
		bad("tls-cert", "required with -tls-key (BATON_TLS_KEY)")
	}
	if c.TLSCA != "" || c.TLSCert != "" {
		c.TLS = true
	}
	if c.TLS {
		a.tls = c.tlsConfig(bad)
	}
	c.auth = nil
	if len(errs) == 0 && (a.tls != nil || a.mech != "") {
		c.auth = a
	}
	return errs
}

// tlsConfig is the client side of TLS: the system roots or -tls-ca's, and
// -tls-cert for mutual TLS.
func (c *config) tlsConfig(bad func(name, format string, a ...any)) *tls.Config {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		switch {
		case err != nil:
			bad("tls-ca", "%v", err)
		default:
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				bad("tls-ca", "no PEM certificate in %s", c.TLSCA)
			}
		}
	}
	if c.TLSCert != "" && c.TLSKey != "" {
		kp, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			bad("tls-cert", "with -tls-key %s: %v", c.TLSKey, err)
		}
		t.Certificates = []tls.Certificate{kp}
	}
	return t
}

// authOpts are the client options the security flags ask for: none without
// them.
func authOpts(cfg *config) []kgo.Opt {
	a := cfg.auth
	if a == nil {
		return nil
	}
	var opts []kgo.Opt
	if a.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(a.tls))
	}
	if a.mech != "" {
		g := &saslGuard{Mechanism: a.mechanism(), a: a}
		opts = append(opts, kgo.SASL(g), kgo.WithHooks(g))
	}
	return opts
}

// mechanism is the SASL mechanism -sasl names, drawing its credentials at
// each handshake.
func (a *kafkaAuth) mechanism() sasl.Mechanism {
	userPass := func(ctx context.Context) (string, string, error) {
		u, p, err := a.credentials(ctx)
		return u, p.reveal(), err
	}
	switch a.mech {
	case saslPlain:
		return plain.Plain(func(ctx context.Context) (plain.Auth, error) {
			u, p, err := userPass(ctx)
			return plain.Auth{User: u, Pass: p}, err
		})
	case saslScram256, saslScram512:
		f := scram.Sha256
		if a.mech == saslScram512 {
			f = scram.Sha512
		}
		return f(func(ctx context.Context) (scram.Auth, error) {
			u, p, err := userPass(ctx)
			return scram.Auth{User: u, Pass: p}, err
		})
	default: // saslMSKIAM
		return kaws.ManagedStreamingIAM(a.awsAuth)
	}
}

// credentials is the SASL user and password: the flag's and the
// environment's, or the secret's, read from Secrets Manager at the first
// handshake (before any lease is touched) and kept for the life of the
// process. A secret without a username takes -sasl-user's.
func (a *kafkaAuth) credentials(ctx context.Context) (string, secret, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.arn == "" || a.loaded {
		return a.user, a.pass, nil
	}
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	if a.secrets == nil {
		region := strings.Split(a.arn, ":")[3]
		ac, err := loadAWS(ctx, region, "SECRETS_MANAGER")
		if err != nil {
			return "", secret{}, optionErr("sasl-secret", "AWS config: %v", err)
		}
		a.secrets = secretsManager{ac}
	}
	value, err := a.secrets.secretString(ctx, a.arn)
	if err != nil {
		return "", secret{}, optionErr("sasl-secret", "read %s: %v", a.arn, err)
	}
	var s struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	// The decoder's own message may quote the secret: it is not passed on.
	if value == nil || json.Unmarshal([]byte(*value), &s) != nil {
		return "", secret{}, optionErr("sasl-secret", `%s: want a SecretString like {"username": "...", "password": "..."}`, a.arn)
	}
	if s.Username == "" {
		s.Username = a.user
	}
	if s.Username == "" || s.Password == "" {
		return "", secret{}, optionErr("sasl-secret", `%s: want both "username" and "password" (or -sasl-user for the username)`, a.arn)
	}
	a.user, a.pass, a.loaded = s.Username, newSecret(s.Password), true
	return a.user, a.pass, nil
}

// awsAuth is MSK IAM's signing key: under Lambda the function role's
// credentials, with its session token, from the environment (aws.go); else
// from the SDK's default chain, cached and refreshed by the SDK.
func (a *kafkaAuth) awsAuth(ctx context.Context) (kaws.Auth, error) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	a.mu.Lock()
	if a.aws == nil {
		ac, err := loadAWS(ctx, "", "KAFKA")
		if err != nil {
			a.mu.Unlock()
			return kaws.Auth{}, fmt.Errorf("aws-msk-iam: AWS config: %w", err)
		}
		a.aws = ac.Credentials
	}
	p := a.aws
	a.mu.Unlock()
	if p == nil {
		return kaws.Auth{}, errors.New("aws-msk-iam: no AWS credentials in the SDK's default chain")
	}
	cr, err := p.Retrieve(ctx)
	if err != nil {
		return kaws.Auth{}, fmt.Errorf("aws-msk-iam: AWS credentials from the SDK's default chain: %w", err)
	}
	return kaws.Auth{AccessKey: cr.AccessKeyID, SecretKey: cr.SecretAccessKey, SessionToken: cr.SessionToken}, nil
}

// who names the mechanism and user for an error; never the password.
func (a *kafkaAuth) who(mechanism string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.user == "" { // MSK IAM, or a secret not read yet
		return "SASL " + mechanism
	}
	return fmt.Sprintf("SASL %s as user %q", mechanism, a.user)
}

// saslGuard makes refused credentials fail fast and say so. A broker that
// refuses credentials answers SaslAuthenticate with an error code (Kafka:
// kgo fails the request at once) or closes the connection (kfake, and
// brokers that close instead of answering). kgo takes a close for a network
// fault and retries until the request's deadline, so a wrong password would
// look like a slow cluster. The guard counts closed answers to
// SaslAuthenticate since the last completed handshake (its OnBrokerRead
// hook); after two (kgo retries once on a new connection at once) it fails
// the next handshake with an error naming the mechanism and user, which kgo
// does not retry. A close that was a network fault costs one request, not
// the client.
type saslGuard struct {
	sasl.Mechanism
	a      *kafkaAuth
	closes atomic.Int32
}

func (g *saslGuard) Authenticate(ctx context.Context, host string) (sasl.Session, []byte, error) {
	if g.closes.Load() >= 2 {
		g.closes.Store(0)
		return nil, nil, configError{fmt.Errorf("%s: authentication failed: the broker closed the connection in answer to the credentials (wrong user or password, or a user the broker does not have?)", g.a.who(g.Name()))}
	}
	s, first, err := g.Mechanism.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", g.a.who(g.Name()), err)
	}
	return guardedSession{s, g}, first, nil
}

// OnBrokerRead counts closed answers to SaslAuthenticate.
func (g *saslGuard) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == int16(kmsg.SASLAuthenticate) &&
		(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
		g.closes.Add(1)
	}
}

// guardedSession clears the guard's count when a handshake completes: the
// closes counted are the ones in a row.
type guardedSession struct {
	sasl.Session
	g *saslGuard
}

func (s guardedSession) Challenge(resp []byte) (bool, []byte, error) {
	done, out, err := s.Session.Challenge(resp)
	if done && err == nil {
		s.g.closes.Store(0)
	}
	return done, out, err
}

var _ kgo.HookBrokerRead = (*saslGuard)(nil)
