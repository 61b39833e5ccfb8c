// template_test.go checks the templates baton template generates (the
// CloudFormation stack that ./bootstrap.sh deploy makes) against the code:
// every environment variable baton reads is set, every partition is
// scheduled once with an input naming it, and the roles grant what the code
// calls and nothing more. template_eval_test.go resolves the templates'
// intrinsic functions for sample parameters.

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// notInTemplate are the variables baton reads that the template must not
// set, each with the reason.
var notInTemplate = map[string]string{
	"BATON_CREATE_TABLE":  "the template makes the table; the role has no CreateTable or DescribeTable",
	"BATON_REDIS":         "the template deploys the default (DynamoDB) build; the Redis build is not templated",
	"BATON_PARTITIONS":    "process mode only: each schedule's input names its partition",
	"BATON_BALANCE":       "process mode only (baton refuses it under Lambda): each schedule's input names its partitions",
	"BATON_METRICS_ADDR":  "process mode only (baton refuses it under Lambda): the function's metrics are EMF lines in its log",
	"BATON_TOPICS":        "each schedule names the Topic parameter, which BATON_TOPIC already allows",
	"BATON_EMF":           "process mode on a terminal only: under Lambda the EMF lines always go to stdout",
	"BATON_LOG_LEVEL":     "process mode only: under Lambda baton reads AWS_LAMBDA_LOG_LEVEL, which the LogLevel parameter sets (LoggingConfig)",
	"BATON_SASL_PASSWORD": "a secret never goes into a template or a function's configuration: BATON_SASL_SECRET names a Secrets Manager secret instead",
}

// scheduleRateMinutes is n−1 for the function's n-minute timeout: the next
// invocation starts a minute before the running one must end.
const scheduleRateMinutes = 14

// Sample deploys: the parameters a newcomer gives, and those an MSK IAM (at
// least once, or exactly once with kafka+txn) or a SCRAM deploy adds. The
// rest keep their defaults.
var (
	sampleParams = map[string]any{
		"CodeBucket": "my-bucket", "CodeKey": "baton/function-0123abcd.zip",
		"Brokers": "b-1.example:9092,b-2.example:9092", "Topic": "orders",
	}
	sampleCluster   = "arn:aws:kafka:eu-west-1:123456789012:cluster/demo/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
	sampleTopicARN  = "arn:aws:kafka:eu-west-1:123456789012:topic/demo/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2/"
	sampleTxnIDARN  = "arn:aws:kafka:eu-west-1:123456789012:transactional-id/demo/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2/"
	sampleGroupARN  = "arn:aws:kafka:eu-west-1:123456789012:group/demo/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2/"
	sampleMSKParams = withParams(sampleParams, map[string]any{
		"MskClusterArn": sampleCluster, "Sasl": "aws-msk-iam", "Sink": "kafka://enriched", "Dlq": "orders-dlq",
		"Brokers": "b-1.demo.kafka.eu-west-1.amazonaws.com:9098",
	})
	sampleTxnParams   = withParams(sampleMSKParams, map[string]any{"Sink": "kafka+txn://enriched"})
	sampleSecret      = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:AmazonMSK_baton-AbCdEf"
	sampleKey         = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	sampleScramParams = withParams(sampleParams, map[string]any{"Sasl": "scram-sha-512", "SaslSecretArn": sampleSecret, "Tls": "true"})
)

// withParams is base with more's entries added or replaced.
func withParams[V any](base, more map[string]V) map[string]V {
	m := maps.Clone(base)
	maps.Copy(m, more)
	return m
}

// loadTemplate is the sample deploys' template: 3 partitions, one an
// invocation.
func loadTemplate(t *testing.T) map[string]any { return genTemplate(t, 3, 1) }

// templateConfig is parseConfig for the template's environment, which is
// the default (DynamoDB) build's: a -tags redis test skips the rest.
func templateConfig(t *testing.T, getenv func(string) string) (*config, error) {
	t.Helper()
	if storeBuild != "dynamodb" {
		t.Skipf("the template deploys the DynamoDB build; this one keeps leases in %s", storeBuild)
	}
	return parseConfig(nil, getenv)
}

// genTemplate is baton template's output for n partitions in groups of k.
func genTemplate(t *testing.T, n, k int) map[string]any {
	t.Helper()
	var tmpl map[string]any
	b, err := renderTemplate(n, k, memoryDefaultMB(min(k, n)))
	if err == nil {
		err = json.Unmarshal(b, &tmpl)
	}
	if err != nil {
		t.Fatalf("baton template -partition-count %d -partitions-per-invocation %d: %v", n, k, err)
	}
	return tmpl
}

func tmplSection(t *testing.T, tmpl map[string]any, name string) map[string]any {
	t.Helper()
	m, ok := tmpl[name].(map[string]any)
	if !ok {
		t.Fatalf("the template has no %s section", name)
	}
	return m
}

// templateShapes are the partition counts and group sizes the template
// tests generate for.
var templateShapes = []struct{ n, k int }{{1, 1}, {1, 4}, {32, 1}, {32, 4}, {100, 1}, {100, 4}, {256, 1}, {256, 4}}

// TestTemplate_references checks that each template holds together: every
// Ref, GetAtt, Sub variable and condition names something it declares, and
// every parameter and condition is used.
func TestTemplate_references(t *testing.T) {
	for _, s := range templateShapes {
		t.Run(fmt.Sprintf("%d partitions in groups of %d", s.n, s.k), func(t *testing.T) { checkReferences(t, genTemplate(t, s.n, s.k)) })
	}
}

func checkReferences(t *testing.T, tmpl map[string]any) {
	t.Helper()
	if got, want := tmpl["AWSTemplateFormatVersion"], "2010-09-09"; got != want {
		t.Errorf("AWSTemplateFormatVersion = %v, want %s", got, want)
	}
	params, conds, res := tmplSection(t, tmpl, "Parameters"), tmplSection(t, tmpl, "Conditions"), tmplSection(t, tmpl, "Resources")
	used := map[string]bool{}
	name := func(where, n string, resourceOnly bool) {
		used[n] = true
		_, isParam := params[n]
		_, isRes := res[n]
		_, isPseudo := cfnPseudoParams[n]
		if resourceOnly && !isRes || !resourceOnly && !isParam && !isRes && !isPseudo {
			t.Errorf("%s: %q is not declared", where, n)
		}
		if isParam && isRes {
			t.Errorf("%q is both a parameter and a resource", n)
		}
	}
	cond := func(where, c string) {
		used["condition "+c] = true
		if _, ok := conds[c]; !ok {
			t.Errorf("%s: condition %q is not declared", where, c)
		}
	}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", where, i), x)
			}
		case map[string]any:
			if r, ok := v["Ref"].(string); ok && len(v) == 1 {
				name(where, r, false)
				return
			}
			if ga, ok := v["Fn::GetAtt"].([]any); ok {
				if len(ga) != 2 {
					t.Errorf("%s: Fn::GetAtt wants [resource, attribute], got %v", where, ga)
					return
				}
				name(where, fmt.Sprint(ga[0]), true)
				return
			}
			if s, ok := v["Fn::Sub"]; ok {
				str, vars := s, map[string]any{}
				if l, ok := s.([]any); ok && len(l) == 2 {
					str, vars = l[0], l[1].(map[string]any)
				}
				for k, x := range vars {
					walk(where+".Fn::Sub."+k, x)
				}
				for _, m := range cfnSubVar.FindAllStringSubmatch(fmt.Sprint(str), -1) {
					if _, ok := vars[m[1]]; ok {
						continue
					}
					n, _, isAttr := strings.Cut(m[1], ".")
					name(where+" (Fn::Sub)", n, isAttr)
				}
				return
			}
			if c, ok := v["Condition"].(string); ok && len(v) == 1 {
				cond(where, c)
				return
			}
			if f, ok := v["Fn::If"].([]any); ok && len(f) == 3 {
				cond(where, fmt.Sprint(f[0]))
				walk(where+".then", f[1])
				walk(where+".else", f[2])
				return
			}
			for k, x := range v {
				walk(where+"."+k, x)
			}
		}
	}
	for n, r := range res {
		rm := r.(map[string]any)
		if c, ok := rm["Condition"].(string); ok {
			cond("Resources."+n, c)
		}
		walk("Resources."+n, rm["Properties"])
		if _, ok := rm["Type"].(string); !ok {
			t.Errorf("resource %s has no Type", n)
		}
	}
	for n, c := range conds {
		walk("Conditions."+n, c)
	}
	rules, _ := tmpl["Rules"].(map[string]any)
	for n, r := range rules {
		walk("Rules."+n, r)
	}
	walk("Outputs", tmpl["Outputs"])
	for n := range params {
		if !used[n] {
			t.Errorf("parameter %s is never used", n)
		}
	}
	for n := range conds {
		if !used["condition "+n] {
			t.Errorf("condition %s is never used", n)
		}
	}
}

// cfnGetenv reads a function's resolved environment as baton would. A
// reference to a resource reads as the name CloudFormation makes for it,
// STACK-LOGICALID-SUFFIX, which baton's checks on names then see.
func cfnGetenv(env map[string]any) func(string) string {
	return func(k string) string {
		s, _ := env[k].(string)
		if id, ok := strings.CutPrefix(s, "ref:"); ok {
			return "baton-orders-" + id + "-1A2B3C4D5E6F"
		}
		return s
	}
}

// envVarsRead is every environment variable baton reads: each option's, and
// any BATON_* name the code spells out on its own (os.Getenv("BATON_X")).
func envVarsRead(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	for _, o := range options {
		vars[o.env] = true
	}
	batonVar := regexp.MustCompile(`^BATON_[A-Z0-9_]+$`)
	for v := range envVarsReadLiteral(t) {
		if batonVar.MatchString(v) {
			vars[v] = true
		}
	}
	return vars
}

// envVarsReadLiteral is every string literal in the non-test code that
// looks like an environment variable's name (BATON_X, AWS_X).
func envVarsReadLiteral(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	envVar := regexp.MustCompile(`^(BATON|AWS)_[A-Z0-9_]+$`)
	for _, f := range codeFiles(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && envVar.MatchString(s) {
					vars[s] = true
				}
			}
			return true
		})
	}
	return vars
}

// codeFiles parses the package's non-test files, of every build.
func codeFiles(t *testing.T) map[string]*ast.File {
	t.Helper()
	names, err := filepath.Glob("*.go")
	must(t, err)
	files := map[string]*ast.File{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), n, nil, parser.SkipObjectResolution)
		must(t, err)
		files[n] = f
	}
	return files
}

// codeHasString reports whether a string literal of the code (not its
// tests) is s.
func codeHasString(t *testing.T, s string) bool {
	t.Helper()
	found := false
	for _, f := range codeFiles(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				found = found || v == s
			}
			return !found
		})
	}
	return found
}

// TestTemplate_environment checks that the function's environment sets
// every variable baton reads, except the documented few, and nothing else;
// and that, with sample parameters, it is a configuration baton accepts.
func TestTemplate_environment(t *testing.T) {
	tmpl := loadTemplate(t)
	fn := tmplResource(t, tmpl, "Function", "AWS::Lambda::Function")
	raw := tmplDig(t, fn, "Properties", "Environment", "Variables").(map[string]any)
	read := envVarsRead(t)
	for v := range read {
		_, set := raw[v]
		if reason, ok := notInTemplate[v]; ok {
			if set && !(v == "BATON_CREATE_TABLE" && raw[v] == "false") {
				t.Errorf("Function sets %s: it must not (%s)", v, reason)
			}
			continue
		}
		if !set {
			t.Errorf("Function's Environment.Variables has no %s: baton reads it; add a parameter for it to template.json", v)
		}
	}
	for v := range raw {
		if !read[v] {
			t.Errorf("Function sets %s, which baton does not read", v)
		}
	}
	for v := range notInTemplate {
		if !read[v] {
			t.Logf("note: %s is listed in notInTemplate but baton does not read it (yet)", v)
		}
	}
	if got := raw["BATON_MODE"]; got != "lambda" {
		t.Errorf("BATON_MODE = %v, want lambda", got)
	}
	if got, want := raw["BATON_LEASE_TABLE"], (map[string]any{"Ref": "LeaseTable"}); !reflect.DeepEqual(got, want) {
		t.Errorf("BATON_LEASE_TABLE = %v, want %v", got, want)
	}
	for n, p := range tmplSection(t, tmpl, "Parameters") {
		if strings.Contains(strings.ToLower(n), "password") {
			t.Errorf("parameter %s: a password must not be a parameter (%v)", n, p)
		}
	}

	for _, sample := range []map[string]any{sampleParams, sampleMSKParams, sampleTxnParams, sampleScramParams} {
		env := newCfnEvaluator(t, tmpl, sample).env()
		cfg, err := templateConfig(t, cfnGetenv(env))
		if err != nil {
			t.Fatalf("the template's environment %v: baton refuses it: %v", env, err)
		}
		if cfg.Mode != "lambda" || cfg.Topic != sample["Topic"] || cfg.LeaseTable != cfnGetenv(env)("BATON_LEASE_TABLE") ||
			strings.Join(cfg.Brokers, ",") != sample["Brokers"] || cfg.CreateTable {
			t.Errorf("the template's environment %v: config %+v", env, cfg)
		}
		if sink, _ := sample["Sink"].(string); sink != "" && cfg.Sink != sink {
			t.Errorf("the template's environment %v: sink %q, want %q", env, cfg.Sink, sink)
		}
	}
}

// TestTemplate_patterns checks the Sink and Group parameters' patterns: each
// sink they let through is one baton takes, with the topic the role's grants
// are made from, and junk stays out. Group may not hold the wildcards * and ?,
// which would widen the kafka+txn grants made from it.
func TestTemplate_patterns(t *testing.T) {
	params := tmplSection(t, loadTemplate(t), "Parameters")
	pattern := func(name string) *regexp.Regexp {
		return regexp.MustCompile(tmplDig(t, params, name, "AllowedPattern").(string))
	}
	sink := pattern("Sink")
	for _, c := range []struct{ value, scheme, topic string }{
		{"stdout", "stdout", ""},
		{"discard", "discard", ""},
		{"kafka://enriched", "kafka", "enriched"},
		{"kafka://orders.enriched_v2-eu", "kafka", "orders.enriched_v2-eu"},
		{"kafka+txn://enriched", "kafka+txn", "enriched"},
		{"kafka+txn://orders.enriched_v2-eu", "kafka+txn", "orders.enriched_v2-eu"},
		{"kafka+txn://" + strings.Repeat("t", 249), "kafka+txn", strings.Repeat("t", 249)},
	} {
		if !sink.MatchString(c.value) {
			t.Errorf("Sink pattern refuses %q", c.value)
			continue
		}
		scheme, topic, err := parseSink(c.value)
		if err != nil || scheme != c.scheme || topic != c.topic {
			t.Errorf("Sink pattern takes %q: baton reads it as %q, %q, %v; want %q, %q", c.value, scheme, topic, err, c.scheme, c.topic)
		}
		// The role's grants take the topic after the scheme this way.
		if parts := strings.Split(c.value+"://", "://"); c.topic != "" && parts[1] != c.topic {
			t.Errorf("Sink %q: the template's Fn::Split makes topic %q, want %q", c.value, parts[1], c.topic)
		}
	}
	for _, v := range []string{
		"", "kafka://", "kafka+txn://", "kafka+txn:/enriched", "kafka+tx://enriched", "kafkatxn://enriched",
		"kafka+txn+txn://enriched", "txn://enriched", "kafka-txn://enriched", "KAFKA+TXN://enriched",
		"kafka+txn://a/b", "kafka+txn://a b", "kafka+txn://a*", "kafka+txn://enriched,other",
		"kafka+txn://" + strings.Repeat("t", 250), " kafka+txn://enriched", "kafka+txn://enriched ", "stdout2",
	} {
		if sink.MatchString(v) {
			t.Errorf("Sink pattern takes %q", v)
		}
	}
	group := pattern("Group")
	for _, v := range []string{"", defaultGroup, "orders-enricher", "team.a_1"} {
		if !group.MatchString(v) {
			t.Errorf("Group pattern refuses %q", v)
		}
	}
	for _, v := range []string{"a/b", "/", "*", "orders-*", "orders?", "a*b"} {
		if group.MatchString(v) {
			t.Errorf("Group pattern takes %q", v)
		}
	}
}

// TestTemplate_function checks the function: runtime, architecture, the
// whole 15 minutes, 128 MB unless told otherwise, its own log group.
func TestTemplate_function(t *testing.T) {
	tmpl := loadTemplate(t)
	e := newCfnEvaluator(t, tmpl, sampleParams)
	fn := e.props("Function", "AWS::Lambda::Function")
	wantAt(t, "Function", fn, map[string]any{
		"Runtime": "provided.al2023", "Architectures": []any{"arm64"}, "Handler": "bootstrap",
		"Timeout": float64(15 * 60), "MemorySize": "128", "Role": "getatt:FunctionRole.Arn",
		"Code.S3Bucket": sampleParams["CodeBucket"], "Code.S3Key": sampleParams["CodeKey"],
		"LoggingConfig.LogGroup": "ref:LogGroup",
		// baton logs JSON with a "level" under Lambda, at AWS_LAMBDA_LOG_LEVEL:
		// Lambda sets it from ApplicationLogLevel with the JSON format.
		"LoggingConfig.LogFormat": "JSON", "LoggingConfig.ApplicationLogLevel": "INFO",
	})
	if !envVarsReadLiteral(t)["AWS_LAMBDA_LOG_LEVEL"] {
		t.Errorf("baton no longer reads AWS_LAMBDA_LOG_LEVEL: the LogLevel parameter and LoggingConfig.ApplicationLogLevel do nothing for it")
	}
	// EMF metric lines have no level: Lambda files them as INFO, and a
	// quieter level would drop them.
	for _, l := range tmplDig(t, tmplSection(t, tmpl, "Parameters"), "LogLevel", "AllowedValues").([]any) {
		if l != "TRACE" && l != "DEBUG" && l != "INFO" {
			t.Errorf("LogLevel allows %v: Lambda would drop baton's metric lines", l)
		}
	}
	if got, want := scheduleRateMinutes, int(tmplDig(t, fn, "Timeout").(float64)/60)-1; got != want {
		t.Errorf("schedules every %d minutes, want the timeout less a minute: %d", got, want)
	}
	if _, ok := fn["VpcConfig"]; ok {
		t.Errorf("without SubnetIds the function has a VpcConfig: %v", fn["VpcConfig"])
	}
	vpc := newCfnEvaluator(t, tmpl, withParams(sampleParams, map[string]any{"SubnetIds": "subnet-1,subnet-2", "SecurityGroupIds": "sg-1"}))
	if got, want := vpc.props("Function", "AWS::Lambda::Function")["VpcConfig"], (map[string]any{"SubnetIds": []any{"subnet-1", "subnet-2"}, "SecurityGroupIds": []any{"sg-1"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("with SubnetIds, VpcConfig = %v, want %v", got, want)
	}
	// Lambda retries a failed invocation with the same event: the retry of
	// a crashed owner is its partition's fastest way back, and a retry older
	// than the next scheduled tick is of no use.
	wantAt(t, "FunctionRetries", e.props("FunctionRetries", "AWS::Lambda::EventInvokeConfig"), map[string]any{
		"MaximumRetryAttempts": float64(2), "MaximumEventAgeInSeconds": float64(scheduleRateMinutes * 60), "FunctionName": "ref:Function",
	})
	if e.props("LogGroup", "AWS::Logs::LogGroup")["RetentionInDays"] == nil {
		t.Errorf("LogGroup keeps logs forever: set RetentionInDays")
	}
}

// TestTemplate_leaseTable checks the table: on demand, key "key", point-in-
// time recovery, and kept when the stack goes (it holds the offsets).
func TestTemplate_leaseTable(t *testing.T) {
	tmpl := loadTemplate(t)
	tbl := tmplResource(t, tmpl, "LeaseTable", "AWS::DynamoDB::Table")
	wantAt(t, "LeaseTable", tbl, map[string]any{
		"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", "Properties.BillingMode": "PAY_PER_REQUEST",
		"Properties.KeySchema":            []any{map[string]any{"AttributeName": "key", "KeyType": "HASH"}},
		"Properties.AttributeDefinitions": []any{map[string]any{"AttributeName": "key", "AttributeType": "S"}},
		"Properties.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled": true,
	})
	if ttl := tmplDig(t, tbl, "Properties").(map[string]any)["TimeToLiveSpecification"]; ttl != nil {
		t.Errorf("LeaseTable has a TTL (%v): a deleted item restarts its epochs, and a fenced owner could match again", ttl)
	}
}

// TestTemplate_schedules checks, for each shape, a template CloudFormation
// takes (resources and bytes within its limits) that schedules every
// partition below PartitionCount exactly once, in groups of up to
// PartitionsPerInvocation, each schedule's input naming its partitions and
// the scheduled time as the tick.
func TestTemplate_schedules(t *testing.T) {
	const tick = "2026-01-02T15:04:00Z"
	// -partitions names one partition that no schedule has: an input
	// without its own partition would show as that one.
	var cfg *config
	if storeBuild == "dynamodb" {
		var err error
		if cfg, err = parseConfig([]string{"-mode=lambda", "-brokers=b:9092", "-topic=orders", "-partitions=99999"}, func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
	}
	for _, shape := range templateShapes {
		n, k := shape.n, shape.k
		t.Run(fmt.Sprintf("%d partitions in groups of %d", n, k), func(t *testing.T) {
			b, err := renderTemplate(n, k, memoryDefaultMB(min(k, n)))
			must(t, err)
			tmpl := genTemplate(t, n, k)
			if res := tmplSection(t, tmpl, "Resources"); len(res) > cfnMaxResources || len(b) > cfnMaxTemplateBytes {
				t.Errorf("%d resources, %d bytes: CloudFormation takes at most %d and %d", len(res), len(b), cfnMaxResources, cfnMaxTemplateBytes)
			}
			params := tmplSection(t, tmpl, "Parameters")
			for name, want := range map[string]int{"PartitionCount": n, "PartitionsPerInvocation": k} {
				if got := tmplDig(t, params, name, "AllowedValues"); !reflect.DeepEqual(got, []any{strconv.Itoa(want)}) {
					t.Errorf("%s AllowedValues = %v, want only %d: the stack says what it was generated for", name, got, want)
				}
			}
			if got, want := tmplDig(t, params, "MemorySize", "Default"), float64(memoryDefaultMB(min(k, n))); got != want {
				t.Errorf("MemorySize Default = %v, want %v for groups of %d", got, want, min(k, n))
			}
			groups := schedules(t, tmpl, sampleParams)
			slots := (n + k - 1) / k
			if len(groups) != slots {
				t.Errorf("%d schedules, want %d", len(groups), slots)
			}
			for g, s := range groups {
				if s.name != "Schedule"+strconv.Itoa(g) || s.slot != int32(g) || s.slots != int32(slots) || s.sized != int32(min(k, n)) {
					t.Errorf("%s: slot %d of %d sized %d; want Schedule%d slot %d of %d sized %d", s.name, s.slot, s.slots, s.sized, g, g, slots, min(k, n))
				}
				wantAt(t, s.name, s.props, map[string]any{
					"Description":             fmt.Sprintf("baton: orders slot %d of %d (partitions p with p mod %d = %d)", g, slots, slots, g),
					"ScheduleExpression":      fmt.Sprintf("rate(%d minutes)", scheduleRateMinutes),
					"FlexibleTimeWindow.Mode": "OFF", "GroupName": "ref:ScheduleGroup", "State": "ENABLED",
					"Target.Arn": "getatt:Function.Arn", "Target.RoleArn": "getatt:SchedulerRole.Arn",
					"Target.RetryPolicy.MaximumEventAgeInSeconds": float64(scheduleRateMinutes * 60),
				})
				if cfg == nil {
					continue // cfg is the DynamoDB build's
				}
				payload := strings.ReplaceAll(tmplDig(t, s.props, "Target", "Input").(string), "<aws.scheduler.scheduled-time>", tick)
				invs, list, sl, err := parseEvents([]byte(payload), cfg, time.Unix(0, 0))
				if err != nil {
					t.Errorf("%s input %s: baton refuses it: %v", s.name, payload, err)
					continue
				}
				want := time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC).UnixMilli()
				if !list || len(invs) != 1 || invs[0].Topic != "orders" || invs[0].Tick != want || sl == nil || *sl != (slot{s.slot, s.slots, s.sized}) {
					t.Errorf("%s input %s: %+v (a list: %v), slot %+v; want topic orders, tick %d, slot %d of %d sized %d",
						s.name, payload, invs, list, sl, want, s.slot, s.slots, s.sized)
				}
			}
			// At the count deployed each partition has one schedule and
			// no schedule more than it was sized for; grown, each still
			// has one, and the WARN says which schedule is over.
			for _, count := range []int{n, n + 1, 2*n + 3} {
				owners := make([]int, count)
				for _, s := range groups {
					mine := 0
					for p := range count {
						if int32(p)%s.slots == s.slot {
							owners[p]++
							mine++
						}
					}
					if count == n && mine > int(s.sized) {
						t.Errorf("%s at the deployed %d partitions reads %d, over the %d it is sized for", s.name, n, mine, s.sized)
					}
				}
				if i := slices.IndexFunc(owners, func(o int) bool { return o != 1 }); i >= 0 {
					t.Errorf("with %d partitions, partition %d is read by %d schedules; want 1", count, i, owners[i])
				}
			}
		})
	}
	// CloudFormation's 500 resources a template, less the stack's 7 others:
	// the most partitions README's Deploy section states.
	for _, c := range []struct {
		n, k int
		ok   bool
	}{{493, 1, true}, {494, 1, false}, {1972, 4, true}, {1973, 4, false}} {
		if _, err := renderTemplate(c.n, c.k, memoryDefaultMB(1)); (err == nil) != c.ok || err != nil && !strings.Contains(err.Error(), "-partition-count") {
			t.Errorf("%d partitions in groups of %d: %v, want ok = %v", c.n, c.k, err, c.ok)
		}
	}
}

// scheduled is one schedule of a resolved template and the slot its input
// names.
type scheduled struct {
	name               string
	props              map[string]any
	slot, slots, sized int32
}

// schedules are a template's schedules for the given parameters, ordered by
// slot. Their inputs are read here, strictly, as well as by parseEvents
// (TestTemplate_schedules): {"topic":T,"slot":G,"slots":S,"sized":K,"tick":...}.
func schedules(t *testing.T, tmpl map[string]any, params map[string]any) []scheduled {
	t.Helper()
	var out []scheduled
	for name, r := range newCfnEvaluator(t, tmpl, params).resources() {
		if r["Type"] != scheduleType {
			continue
		}
		props := r["Properties"].(map[string]any)
		input := tmplDig(t, props, "Target", "Input").(string)
		var in struct {
			Topic, Tick        string
			Slot, Slots, Sized *int32
		}
		d := json.NewDecoder(strings.NewReader(input))
		d.DisallowUnknownFields()
		if err := d.Decode(&in); err != nil {
			t.Fatalf("%s input %s: %v", name, input, err)
		}
		if in.Slot == nil || in.Slots == nil || in.Sized == nil {
			t.Fatalf(`%s input %s: want "slot", "slots" and "sized"`, name, input)
		}
		if in.Topic != params["Topic"] || in.Tick != "<aws.scheduler.scheduled-time>" {
			t.Errorf("%s input %s: want topic %v and tick <aws.scheduler.scheduled-time>", name, input, params["Topic"])
		}
		out = append(out, scheduled{name, props, *in.Slot, *in.Slots, *in.Sized})
	}
	slices.SortFunc(out, func(a, b scheduled) int { return int(a.slot - b.slot) })
	return out
}

// TestTemplate_generated checks that template.json is baton template's
// output for its defaults, 1 partition and 1 an invocation, so that the
// committed, deployable template cannot drift from the generator; and the
// subcommand's exit codes.
func TestTemplate_generated(t *testing.T) {
	file, err := os.ReadFile("template.json")
	must(t, err)
	if want, err := renderTemplate(1, 1, memoryDefaultMB(1)); err != nil || !bytes.Equal(file, want) {
		t.Errorf("template.json is not baton template's output (%v): after editing it, run go run . template >/tmp/t.json && mv /tmp/t.json template.json", err)
	}
	large, _ := renderTemplate(100, 4, memoryDefaultMB(4))
	for _, c := range []struct {
		args   []string
		code   int
		stdout []byte
		stderr string
	}{
		{nil, 0, file, ""},
		{[]string{"-partition-count", "100", "-partitions-per-invocation=4"}, 0, large, ""},
		{[]string{"-partition-count", "0"}, 2, nil, "-partition-count 0"},
		{[]string{"-partition-count", "x"}, 2, nil, "-partition-count"},
		{[]string{"-partition-count", "494"}, 2, nil, "at most 493 partitions at 1 per invocation"},
		{[]string{"-partitions-per-invocation", "0"}, 2, nil, "-partitions-per-invocation 0"},
		{[]string{"-partition-count", "3", "extra"}, 2, nil, `"extra"`},
	} {
		var stdout, stderr bytes.Buffer
		code := batonMain(t.Context(), append([]string{"template"}, c.args...), sysio{func(string) string { return "" }, &stdout, &stderr})
		if code != c.code || !bytes.Equal(stdout.Bytes(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("baton template %v: exit %d, %d bytes out, stderr %q; want exit %d, %d bytes, stderr naming %q",
				c.args, code, stdout.Len(), stderr.String(), c.code, len(c.stdout), c.stderr)
		}
	}
}

// TestTemplate_schedulerRole checks that the scheduler may invoke the
// function and nothing else, and only for this stack's schedules.
func TestTemplate_schedulerRole(t *testing.T) {
	tmpl := loadTemplate(t)
	role := newCfnEvaluator(t, tmpl, sampleParams).props("SchedulerRole", "AWS::IAM::Role")
	trust := tmplDig(t, role, "AssumeRolePolicyDocument", "Statement").([]any)
	if len(trust) != 1 || tmplDig(t, trust[0].(map[string]any), "Principal", "Service") != "scheduler.amazonaws.com" ||
		tmplDig(t, trust[0].(map[string]any), "Condition", "StringEquals", "aws:SourceAccount") != cfnPseudoParams["AWS::AccountId"] {
		t.Errorf("SchedulerRole trust = %v, want scheduler.amazonaws.com from this account", trust)
	}
	got := iamStatements(t, role)
	want := []iamStatement{{Actions: []string{"lambda:InvokeFunction"}, Resources: []string{"getatt:Function.Arn"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SchedulerRole grants %+v, want %+v", got, want)
	}
}

// kafkaRequests are the Kafka requests the code builds itself (kmsg), each
// with the kafka-cluster actions MSK IAM checks for it: Kafka's ACL
// operations on the group and the transactional ID (the topics' are granted
// with them: DescribeTopic and ReadData on the source, WriteData on the
// sinks). franz-go's own transactional requests (FindCoordinator,
// InitProducerID, AddPartitionsToTxn, EndTxn) need DescribeTransactionalId
// and AlterTransactionalId.
var kafkaRequests = map[string][]string{
	"Metadata":        {"kafka-cluster:DescribeTopic"},
	"ListOffsets":     {"kafka-cluster:DescribeTopic"},
	"OffsetFetch":     {"kafka-cluster:DescribeGroup"},                                    // DESCRIBE group
	"OffsetCommit":    {"kafka-cluster:AlterGroup"},                                       // READ group (each lease commit's offset; an operator's seek)
	"AddOffsetsToTxn": {"kafka-cluster:AlterTransactionalId", "kafka-cluster:AlterGroup"}, // WRITE transactional ID, READ group
	"TxnOffsetCommit": {"kafka-cluster:AlterTransactionalId", "kafka-cluster:AlterGroup"}, // WRITE transactional ID, READ group
}

// TestTemplate_functionRole checks the function's grants outside DynamoDB
// (template_dynamo_test.go has those) for each kind of deploy, against what
// the code does: it consumes assigned partitions (no consumer group
// membership) and commits their offsets to the Kafka group BATON_GROUP,
// produces idempotently, or with kafka+txn in transactions whose IDs txnID
// makes; and it reads a Secrets Manager secret only if it imports the client.
func TestTemplate_functionRole(t *testing.T) {
	tmpl := loadTemplate(t)
	txnIDs, requests, imports := 0, map[string]bool{}, map[string]bool{} // imports: quoted paths
	for n, f := range codeFiles(t) {
		ast.Inspect(f, func(node ast.Node) bool {
			switch node := node.(type) {
			case *ast.ImportSpec:
				imports[node.Path.Value] = true
			case *ast.SelectorExpr:
				x, ok := node.X.(*ast.Ident)
				switch {
				case !ok:
				case x.Name == "kgo":
					switch node.Sel.Name {
					case "ConsumerGroup", "ConsumeTopics", "DisableIdempotentWrite":
						t.Errorf("%s uses kgo.%s: the template's kafka-cluster grants assume assigned partitions and an idempotent or transactional producer; update the msk-iam policy and this test", n, node.Sel.Name)
					}
				case x.Name == "kmsg" && strings.HasPrefix(node.Sel.Name, "New") && strings.HasSuffix(node.Sel.Name, "Request"):
					req := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(node.Sel.Name, "New"), "Ptr"), "Request")
					requests[req] = true
					if _, ok := kafkaRequests[req]; !ok {
						t.Errorf("%s sends a Kafka %s request: add it to kafkaRequests with the kafka-cluster actions it needs, and grant them in template.json", n, req)
					}
				}
			case *ast.CallExpr:
				sel, ok := node.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "TransactionalID" {
					break
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "kgo" {
					break
				}
				txnIDs++
				if arg, ok := node.Args[0].(*ast.CallExpr); !ok || fmt.Sprint(arg.Fun) != "txnID" {
					t.Errorf("%s: kgo.TransactionalID takes something other than txnID(...): the template grants the transactional IDs baton/GROUP/* only", n)
				}
			}
			return true
		})
	}
	if txnIDs == 0 {
		t.Errorf("no kgo.TransactionalID(txnID(...)) in the code: the template grants transactional IDs to kafka+txn sinks; drop them")
	}
	grant := func(resources []string, actions ...string) iamStatement {
		return iamStatement{Actions: actions, Resources: resources}
	}
	cluster, topics := []string{sampleCluster}, func(names ...string) []string {
		for i, n := range names {
			names[i] = sampleTopicARN + n
		}
		return names
	}
	logs := grant([]string{"getatt:LogGroup.Arn"}, "logs:CreateLogStream", "logs:PutLogEvents")
	connect, read := grant(cluster, "kafka-cluster:Connect"), grant(topics("orders"), "kafka-cluster:DescribeTopic", "kafka-cluster:ReadData")
	idempotent := grant(cluster, "kafka-cluster:WriteDataIdempotently")
	write := func(names ...string) iamStatement {
		return grant(topics(names...), "kafka-cluster:DescribeTopic", "kafka-cluster:WriteData")
	}
	txnIDsOf := func(group string) iamStatement {
		return grant([]string{sampleTxnIDARN + "baton/" + group + "/*"}, "kafka-cluster:AlterTransactionalId", "kafka-cluster:DescribeTransactionalId")
	}
	groupOf := func(group string) iamStatement {
		return grant([]string{sampleGroupARN + group}, "kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup")
	}
	secret := grant([]string{sampleSecret}, "secretsmanager:GetSecretValue")
	cases := []struct {
		name   string
		params map[string]any
		want   []iamStatement // besides DynamoDB's
	}{
		{"plain", sampleParams, []iamStatement{logs}},
		{"MSK IAM, stdout sink", withParams(sampleMSKParams, map[string]any{"Sink": "stdout", "Dlq": ""}), []iamStatement{logs, connect, read, groupOf(defaultGroup)}},
		{"MSK IAM, DLQ only", withParams(sampleMSKParams, map[string]any{"Sink": "discard"}),
			[]iamStatement{logs, connect, read, idempotent, write("orders-dlq"), groupOf(defaultGroup)}},
		{"MSK IAM, Kafka sink and DLQ, its own group", withParams(sampleMSKParams, map[string]any{"Group": "enricher"}),
			[]iamStatement{logs, connect, read, idempotent, write("enriched", "orders-dlq"), groupOf("enricher")}},
		// Group left empty: baton's default group names both.
		{"MSK IAM, kafka+txn sink and DLQ", sampleTxnParams,
			[]iamStatement{logs, connect, read, idempotent, write("enriched", "orders-dlq"), txnIDsOf(defaultGroup), groupOf(defaultGroup)}},
		{"MSK IAM, kafka+txn sink, its own group, no DLQ", withParams(sampleTxnParams, map[string]any{"Group": "enricher", "Dlq": ""}),
			[]iamStatement{logs, connect, read, idempotent, write("enriched"), txnIDsOf("enricher"), groupOf("enricher")}},
		{"kafka+txn sink without MSK IAM", withParams(sampleParams, map[string]any{"Sink": "kafka+txn://enriched"}), []iamStatement{logs}},
		{"SASL secret", sampleScramParams, []iamStatement{logs, secret}},
		{"SASL secret with its KMS key", withParams(sampleScramParams, map[string]any{"SaslSecretKmsKeyArn": sampleKey}), []iamStatement{logs, secret,
			// The secret's region, which may not be the stack's.
			{Actions: []string{"kms:Decrypt"}, Resources: []string{sampleKey}, Condition: `{"StringEquals":{"kms:ViaService":"secretsmanager.eu-central-1.amazonaws.com"}}`}}},
		// The ENI actions take no resource ARN (as AWSLambdaVPCAccessExecutionRole).
		{"VPC", withParams(sampleParams, map[string]any{"SubnetIds": "subnet-1", "SecurityGroupIds": "sg-1"}), []iamStatement{logs, grant([]string{"*"},
			"ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:UnassignPrivateIpAddresses")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			role := newCfnEvaluator(t, tmpl, c.params).props("FunctionRole", "AWS::IAM::Role")
			if got := tmplDig(t, role, "AssumeRolePolicyDocument", "Statement").([]any); len(got) != 1 ||
				tmplDig(t, got[0].(map[string]any), "Principal", "Service") != "lambda.amazonaws.com" {
				t.Errorf("FunctionRole trust = %v, want lambda.amazonaws.com only", got)
			}
			var got []iamStatement
			for _, s := range iamStatements(t, role) {
				if !strings.HasPrefix(s.Actions[0], "dynamodb:") {
					got = append(got, s)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("FunctionRole grants\n%+v\nwant\n%+v", got, c.want)
			}
			txn := strings.HasPrefix(fmt.Sprint(c.params["Sink"]), "kafka+txn://") && c.params["MskClusterArn"] != nil
			for _, s := range got {
				for _, r := range s.Resources {
					if !txn && strings.Contains(r, ":transactional-id/") {
						t.Errorf("without a kafka+txn sink on MSK, FunctionRole grants %v on %s", s.Actions, r)
					}
				}
			}
		})
	}
	// The MSK grants cover the group and, with kafka+txn, the transactional
	// IDs the code uses, as baton reads the function's environment, for
	// every partition the schedules read (those added later too), and no other group's.
	for _, c := range []struct {
		tmpl   map[string]any
		params map[string]any
	}{{tmpl, sampleMSKParams}, {tmpl, sampleTxnParams}, {genTemplate(t, 32, 4), withParams(sampleTxnParams, map[string]any{"Group": "enricher"})}} {
		tmpl, params := c.tmpl, c.params
		e := newCfnEvaluator(t, tmpl, params)
		cfg, err := templateConfig(t, cfnGetenv(e.env()))
		if err != nil {
			t.Fatalf("MSK sample %v: baton refuses it: %v", params, err)
		}
		txn := cfg.SinkScheme == "kafka+txn"
		if txn != strings.HasPrefix(params["Sink"].(string), "kafka+txn://") {
			t.Fatalf("MSK sample %v: sink scheme %q", params, cfg.SinkScheme)
		}
		granted := e.grants("FunctionRole")
		other := *cfg
		other.Group += "-other"
		var partitions []int32 // the schedules' partitions, and as many added later
		for _, s := range schedules(t, tmpl, params) {
			for p := s.slot; p < 2*s.slots*s.sized; p += s.slots {
				partitions = append(partitions, p)
			}
		}
		if !txn {
			partitions = nil // no transactional IDs to check
		}
		for _, p := range partitions {
			inv := invocation{Topic: cfg.Topic, Partition: p}
			for _, a := range []string{"kafka-cluster:DescribeTransactionalId", "kafka-cluster:AlterTransactionalId"} {
				if id := sampleTxnIDARN + txnID(cfg, inv); !slices.ContainsFunc(granted[a], func(r string) bool { return iamMatch(r, id) }) {
					t.Errorf("Group %q, partition %d: %s is not granted on the transactional ID %s (granted on %v)", cfg.Group, p, a, id, granted[a])
				}
				if id := sampleTxnIDARN + txnID(&other, inv); slices.ContainsFunc(granted[a], func(r string) bool { return iamMatch(r, id) }) {
					t.Errorf("Group %q: %s is granted on another group's transactional ID %s", cfg.Group, a, id)
				}
			}
		}
		for _, a := range []string{"kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"} {
			if want := []string{sampleGroupARN + cfg.Group}; !slices.Equal(granted[a], want) {
				t.Errorf("Group %q: %s granted on %v, want %v (the group baton commits the offsets to)", cfg.Group, a, granted[a], want)
			}
		}
		for req := range requests {
			for _, a := range kafkaRequests[req] {
				if len(granted[a]) == 0 && (txn || !strings.HasSuffix(a, "TransactionalId")) {
					t.Errorf("the code sends %s requests, which need %s: the role of sink %s does not grant it", req, a, cfg.Sink)
				}
			}
		}
	}
	// Grants that need code to use them.
	granted := map[string]bool{}
	for a := range newCfnEvaluator(t, tmpl, withParams(sampleMSKParams, map[string]any{"SaslSecretArn": sampleSecret})).grants("FunctionRole") {
		granted[strings.Split(a, ":")[0]] = true
	}
	for service, uses := range map[string]bool{
		"secretsmanager": codeHasString(t, "secretsmanager.GetSecretValue"), // secrets.go's X-Amz-Target
		"kafka-cluster":  imports[strconv.Quote("github.com/twmb/franz-go/pkg/sasl/aws")],
	} {
		if got := granted[service]; got != uses {
			t.Errorf("template grants %s:* actions = %v, but the code calls %s = %v", service, got, service, uses)
		}
	}
}

// TestTemplate_rules checks the template's Rules, which refuse parameters
// that do not go together, and that every Sasl value it allows is one baton
// takes.
func TestTemplate_rules(t *testing.T) {
	tmpl := loadTemplate(t)
	for _, c := range []struct {
		name   string
		params map[string]any
		broken []string // rules that refuse it
	}{
		{"plain", sampleParams, nil},
		{"MSK IAM", sampleMSKParams, nil},
		{"MSK IAM, kafka+txn", sampleTxnParams, nil},
		{"kafka+txn without MSK IAM", withParams(sampleParams, map[string]any{"Sink": "kafka+txn://enriched"}), nil},
		{"SCRAM", sampleScramParams, nil},
		{"SCRAM and its key", withParams(sampleScramParams, map[string]any{"SaslSecretKmsKeyArn": sampleKey}), nil},
		{"MSK IAM without the cluster", withParams(sampleMSKParams, map[string]any{"MskClusterArn": ""}), []string{"MskIamNeedsCluster"}},
		{"the cluster without MSK IAM", withParams(sampleMSKParams, map[string]any{"Sasl": "none"}), []string{"MskClusterNeedsMskIam"}},
		{"SCRAM without the secret", withParams(sampleScramParams, map[string]any{"SaslSecretArn": ""}), []string{"PlainOrScramNeedsSecret"}},
		{"a secret without SCRAM", withParams(sampleScramParams, map[string]any{"Sasl": "none"}), []string{"SecretNeedsPlainOrScram"}},
		{"a key without a secret", withParams(sampleParams, map[string]any{"SaslSecretKmsKeyArn": sampleKey}), []string{"KmsKeyNeedsSecret"}},
	} {
		e := newCfnEvaluator(t, tmpl, c.params)
		var broken []string
		for n, r := range tmplSection(t, tmpl, "Rules") {
			rm := r.(map[string]any)
			if rc, ok := rm["RuleCondition"]; ok && !e.truth(rc) {
				continue
			}
			for _, a := range rm["Assertions"].([]any) {
				if !e.truth(a.(map[string]any)["Assert"]) {
					broken = append(broken, n)
				}
			}
		}
		slices.Sort(broken)
		if !slices.Equal(broken, c.broken) {
			t.Errorf("%s: rules refusing it = %v, want %v", c.name, broken, c.broken)
		}
		if c.broken != nil {
			continue
		}
		if _, err := templateConfig(t, cfnGetenv(e.env())); err != nil {
			t.Errorf("%s: the rules let it pass, but baton refuses it: %v", c.name, err)
		}
	}
	for _, v := range tmplDig(t, tmplSection(t, tmpl, "Parameters"), "Sasl", "AllowedValues").([]any) {
		env := map[string]string{"BATON_MODE": "lambda", "BATON_BROKERS": "b:9092", "BATON_TOPIC": "orders", "BATON_SASL": v.(string)}
		if v != "none" && v != "aws-msk-iam" {
			env["BATON_SASL_SECRET"] = sampleSecret
		}
		if _, err := templateConfig(t, func(k string) string { return env[k] }); err != nil {
			t.Errorf("Sasl allows %q, which baton refuses: %v", v, err)
		}
	}
}

// iamStatement is one resolved IAM statement, actions and resources sorted.
type iamStatement struct {
	Actions, Resources []string
	Condition          string // JSON, when there is one
}

// iamStatements lists every statement of a resolved role's inline policies,
// and fails on an action with a wildcard or a "*" resource outside ec2.
func iamStatements(t *testing.T, role map[string]any) []iamStatement {
	t.Helper()
	var out []iamStatement
	policies, _ := role["Policies"].([]any)
	for _, p := range policies {
		for _, s := range tmplDig(t, p.(map[string]any), "PolicyDocument", "Statement").([]any) {
			sm := s.(map[string]any)
			if sm["Effect"] != "Allow" {
				t.Errorf("statement %v: want Effect Allow", sm)
			}
			st := iamStatement{Actions: sortedStrings(sm["Action"]), Resources: sortedStrings(sm["Resource"])}
			if c, ok := sm["Condition"]; ok {
				b, _ := json.Marshal(c)
				st.Condition = string(b)
			}
			for _, a := range st.Actions {
				if strings.Contains(a, "*") {
					t.Errorf("statement %v: action %s has a wildcard", sm, a)
				}
			}
			for _, r := range st.Resources {
				// The one wildcard outside ec2: a transactional ID per
				// partition, under baton/GROUP/.
				txnIDs := strings.Contains(r, ":transactional-id/") && strings.HasSuffix(r, "/*") && strings.Count(r, "*") == 1
				if strings.ContainsAny(r, "*?") && !strings.HasPrefix(st.Actions[0], "ec2:") && !txnIDs {
					t.Errorf("statement %v: resource %s has a wildcard", sm, r)
				}
			}
			if len(st.Actions) == 0 || len(st.Resources) == 0 {
				t.Errorf("statement %v: no actions or no resources", sm)
			}
			out = append(out, st)
		}
	}
	return out
}

// iamMatch tells whether an IAM resource pattern (* and ? wildcards) matches
// an ARN.
func iamMatch(pattern, arn string) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.ReplaceAll(strings.ReplaceAll(re, `\*`, ".*"), `\?`, ".")
	return regexp.MustCompile("^" + re + "$").MatchString(arn)
}

func sortedStrings(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = []string{v}
	case []any:
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
	}
	slices.Sort(out)
	return out
}

func tmplResource(t *testing.T, tmpl map[string]any, name, typ string) map[string]any {
	t.Helper()
	r, ok := tmplSection(t, tmpl, "Resources")[name].(map[string]any)
	if !ok || r["Type"] != typ {
		t.Fatalf("template.json has no %s resource %s", typ, name)
	}
	return r
}

// wantAt checks the values at dotted paths under m.
func wantAt(t *testing.T, what string, m map[string]any, want map[string]any) {
	t.Helper()
	for path, w := range want {
		if got := tmplDig(t, m, strings.Split(path, ".")...); !reflect.DeepEqual(got, w) {
			t.Errorf("%s %s = %#v, want %#v", what, path, got, w)
		}
	}
}

// tmplDig walks nested objects; a missing key fails the test.
func tmplDig(t *testing.T, m map[string]any, path ...string) any {
	t.Helper()
	var v any = m
	for i, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object", strings.Join(path[:i], "."))
		}
		if v, ok = mm[k]; !ok {
			t.Fatalf("no %s", strings.Join(path[:i+1], "."))
		}
	}
	return v
}

// TestTemplate_slots_cover_every_partition: for partition counts from 1 to
// 256 (each to 17, then either side of the group sizes' multiples), in
// groups of 1, 3 and 4, the generated schedules' inputs (read
// by parseEvents) give each partition exactly one schedule, at the count
// deployed and once the topic has grown, and none reads more at the count
// deployed than it says it was sized for.
func TestTemplate_slots_cover_every_partition(t *testing.T) {
	t.Parallel()
	cfg := &config{Topic: "orders", Topics: []string{"orders"}}
	counts := []int{31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 191, 192, 193, 255, 256}
	for n := 17; n >= 1; n-- {
		counts = append([]int{n}, counts...)
	}
	for _, k := range []int{1, 3, 4} {
		for _, n := range counts {
			b, err := renderTemplate(n, k, memoryDefaultMB(min(k, n)))
			must(t, err)
			var tmpl struct {
				Resources map[string]struct {
					Type       string
					Properties struct {
						Target struct {
							Input struct {
								Sub string `json:"Fn::Sub"`
							}
						}
					}
				}
			}
			must(t, json.Unmarshal(b, &tmpl))
			var slots []slot
			for name, r := range tmpl.Resources {
				if r.Type != scheduleType {
					continue
				}
				payload := strings.NewReplacer("${Topic}", "orders", "<aws.scheduler.scheduled-time>", "2026-01-02T15:04:00Z").Replace(r.Properties.Target.Input.Sub)
				_, _, sl, err := parseEvents([]byte(payload), cfg, time.Unix(0, 0))
				if err != nil || sl == nil {
					t.Fatalf("%d partitions in groups of %d: %s input %s: slot %v, %v", n, k, name, payload, sl, err)
				}
				slots = append(slots, *sl)
			}
			for _, count := range []int{n, n + 1, 3 * n} {
				owners := make([]int, count)
				for _, sl := range slots {
					mine := 0
					for p := sl.Slot; int(p) < count; p += sl.Slots {
						owners[p]++
						mine++
					}
					if count == n && (mine > int(sl.Sized) || int(sl.Sized) != min(k, n)) {
						t.Errorf("%d partitions in groups of %d: slot %+v reads %d at the deployed count; want at most its sized, %d", n, k, sl, mine, min(k, n))
					}
				}
				if i := slices.IndexFunc(owners, func(o int) bool { return o != 1 }); i >= 0 {
					t.Fatalf("%d partitions in groups of %d, the topic at %d: partition %d has %d schedules; want 1", n, k, count, i, owners[i])
				}
			}
		}
	}
}

// costDoc is the text that holds the bench's figures: PERFORMANCE.md once
// the README's Performance section has moved there, else README.md.
func costDoc(t *testing.T) (name, text string) {
	t.Helper()
	for _, name := range []string{"PERFORMANCE.md", "README.md"} {
		b, err := os.ReadFile(name)
		if err == nil {
			return name, string(b)
		}
		if !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	t.Fatal("neither PERFORMANCE.md nor README.md is here: the bench's cost figures are in one of them")
	return "", ""
}

// templateRun is baton template with args: its exit code, stdout and stderr.
func templateRun(t *testing.T, args ...string) (int, []byte, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := batonMain(t.Context(), append([]string{"template"}, args...), sysio{func(string) string { return "" }, &stdout, &stderr})
	return code, stdout.Bytes(), stderr.String()
}

// estimatedPerPartition is the month's cost a partition that baton
// template's estimate on stderr states.
func estimatedPerPartition(t *testing.T, stderr string) float64 {
	t.Helper()
	m := regexp.MustCompile(`total: \$[0-9.]+ a month, \$([0-9.]+) a partition`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("the estimate states no total a partition (want \"total: $X a month, $Y a partition\"):\n%s", stderr)
	}
	usd, err := strconv.ParseFloat(m[1], 64)
	must(t, err)
	return usd
}

// TestTemplate_default_memory_matches_cost_table: the template's MemorySize
// default for groups of 1, 4 and 8 is the memory the bench's sizing rule
// gives the peak RSS the cost table states (128 MB), and the estimate baton
// template prints for groups of k is within 10% of the table's cost a
// partition for k: the deploy is what the table prices.
func TestTemplate_default_memory_matches_cost_table(t *testing.T) {
	doc, text := costDoc(t)
	m := regexp.MustCompile(`cost_per_partition_month_usd_k1 / _k4 / _k8 \| ([0-9.]+) / ([0-9.]+) / ([0-9.]+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s has no line \"cost_per_partition_month_usd_k1 / _k4 / _k8 | A / B / C\", the bench's cost a partition-month for groups of 1, 4 and 8, which the template's estimate is checked against", doc)
	}
	// The cost table's rows: | k | peak RSS | MemorySize | ...
	rows := map[int][2]string{}
	for _, r := range regexp.MustCompile(`(?m)^\| (\d+) \| ([0-9.]+) MiB \| (\d+) MB \|`).FindAllStringSubmatch(text, -1) {
		k, _ := strconv.Atoi(r[1])
		rows[k] = [2]string{r[2], r[3]}
	}
	// A multiple of k partitions, as the bench's groups are full; 100 in
	// groups of 4 is README's example.
	for i, c := range []struct{ k, n int }{{1, 100}, {4, 100}, {8, 200}} {
		want := memMin // group_kK_memory_mb of the run of 2026-11-29
		if r, ok := rows[c.k]; ok {
			rss, err := strconv.ParseFloat(r[0], 64)
			must(t, err)
			want, _ = strconv.Atoi(r[1])
			if got := memoryFor(int64(rss * (1 << 20))); got != want {
				t.Errorf("%s: k = %d: %s MiB peak RSS sizes at %d MB by the bench's rule, the table says %d MB", doc, c.k, r[0], got, want)
			}
		} else {
			t.Logf("%s has no cost table row for k = %d (| k | peak RSS | MemorySize | ...): want %d MB, the bench's", doc, c.k, want)
		}
		params := tmplSection(t, genTemplate(t, c.n, c.k), "Parameters")
		if got := tmplDig(t, params, "MemorySize", "Default"); got != float64(want) {
			t.Errorf("groups of %d: MemorySize Default = %v, want %d MB as the cost table is priced", c.k, got, want)
		}
		code, _, stderr := templateRun(t, "-partition-count", strconv.Itoa(c.n), "-partitions-per-invocation", strconv.Itoa(c.k))
		if code != 0 {
			t.Fatalf("baton template: exit %d: %s", code, stderr)
		}
		table, err := strconv.ParseFloat(m[i+1], 64)
		must(t, err)
		if got := estimatedPerPartition(t, stderr); math.Abs(got-table) > 0.1*table {
			t.Errorf("%d partitions in groups of %d: the estimate is $%.2f a partition-month, %s's cost_per_partition_month_usd_k%d is %.2f: more than 10%% apart", c.n, c.k, got, doc, c.k, table)
		}
	}
}

// TestTemplate_estimate: baton template's stdout is the template alone,
// and its stderr the month's cost of what it describes, per partition and
// in all, with the prices' date, the memory and the throughput a partition.
func TestTemplate_estimate(t *testing.T) {
	for _, c := range []struct {
		args      []string
		n, k, mb  int
		mentioned []string
	}{
		{[]string{"-partition-count", "100", "-partitions-per-invocation", "4"}, 100, 4, 128, []string{
			"25 functions of 128 MB", "Lambda duration: 8,212,500 GB-s, $109.50 ($1.10 a partition)",
			"Lambda requests: 78,214", "20,586,000 reads, 35,478,000 writes", "4.7 and 8.1 a minute a partition",
			"$24.75 ($0.25 a partition)", "total: $134.26 a month, $1.34 a partition",
			"about 46,000 records/s of 200 B (11,000/s of 2 KiB)", "shared by its 4 partitions: about 11,500/s (2,750/s) a partition",
		}},
		{[]string{"-partition-count=6", "-partitions-per-invocation=4", "-memory-size=1024"}, 6, 4, 1024, []string{
			"2 functions of 1024 MB", "throughput at 1024 MB", "its up to 4 partitions",
		}},
		{nil, 1, 1, 128, []string{"1 partitions, 1 an invocation: 1 functions of 128 MB", "total: $4.63 a month, $4.63 a partition"}},
	} {
		code, stdout, stderr := templateRun(t, c.args...)
		if code != 0 {
			t.Fatalf("baton template %v: exit %d: %s", c.args, code, stderr)
		}
		var tmpl map[string]any
		if err := json.Unmarshal(stdout, &tmpl); err != nil {
			t.Fatalf("baton template %v: stdout is not the template alone: %v", c.args, err)
		}
		want, err := renderTemplate(c.n, c.k, c.mb)
		must(t, err)
		if !bytes.Equal(stdout, want) {
			t.Errorf("baton template %v: stdout is not renderTemplate(%d, %d, %d)", c.args, c.n, c.k, c.mb)
		}
		if got := tmplDig(t, tmplSection(t, tmpl, "Parameters"), "MemorySize", "Default"); got != float64(c.mb) {
			t.Errorf("baton template %v: MemorySize Default = %v, want %d", c.args, got, c.mb)
		}
		for _, s := range append(c.mentioned, "us-east-1 list prices of "+pricesDate, "no free tier") {
			if !strings.Contains(stderr, s) {
				t.Errorf("baton template %v: the estimate does not say %q:\n%s", c.args, s, stderr)
			}
		}
		e := estimateMonth(c.n, c.k, c.mb)
		if got := estimatedPerPartition(t, stderr); math.Abs(got-e.perPartition()) > 0.005 {
			t.Errorf("baton template %v: $%.2f a partition, want %.4f", c.args, got, e.perPartition())
		}
	}
}

// TestTemplate_memory_size: -memory-size takes Lambda's range and names
// itself otherwise, with nothing on stdout.
func TestTemplate_memory_size(t *testing.T) {
	for _, v := range []string{"0", "64", "127", "10241", "-128", "1GB", ""} {
		code, stdout, stderr := templateRun(t, "-memory-size="+v)
		if code != 2 || len(stdout) > 0 || !strings.Contains(stderr, "-memory-size") {
			t.Errorf("baton template -memory-size=%s: exit %d, %d bytes out, stderr %q; want exit 2, nothing out, stderr naming -memory-size", v, code, len(stdout), stderr)
		}
	}
	for _, mb := range []int{128, 130, 10240} {
		code, stdout, stderr := templateRun(t, "-memory-size", strconv.Itoa(mb), "-partition-count", "32", "-partitions-per-invocation", "4")
		if code != 0 {
			t.Fatalf("baton template -memory-size %d: exit %d: %s", mb, code, stderr)
		}
		var tmpl map[string]any
		must(t, json.Unmarshal(stdout, &tmpl))
		if got := tmplDig(t, tmplSection(t, tmpl, "Parameters"), "MemorySize", "Default"); got != float64(mb) {
			t.Errorf("-memory-size %d: MemorySize Default = %v", mb, got)
		}
	}
	// Past the largest group the bench measured, 128 MB more a group of 8.
	for k, want := range map[int]int{1: 128, 8: 128, 9: 256, 16: 256, 17: 384, 1000: memMax} {
		if got := memoryDefaultMB(k); got != want {
			t.Errorf("memoryDefaultMB(%d) = %d, want %d", k, got, want)
		}
	}
}

// TestDeploy_dry_run_checks_params: ./bootstrap.sh deploy --dry-run shows
// the template's estimate, for the MemorySize given, and refuses a --param
// the generated template lacks (as a real deploy does: aws cloudformation
// deploy would drop it without a word) or a MemorySize Lambda lacks, exit
// 2 naming it, before building anything.
func TestDeploy_dry_run_checks_params(t *testing.T) {
	for _, tool := range []string{"bash", "python3", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("deploy needs %s: %v", tool, err)
		}
	}
	stack := fmt.Sprintf("baton-test-dry-run-%d", os.Getpid())
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(".cache", "deploy", stack)) })
	base := []string{"deploy", "--dry-run", "--stack", stack, "--bucket", "my-bucket",
		"--param", "Brokers=b:9092", "--param", "Topic=orders", "--param", "PartitionCount=100", "--param", "PartitionsPerInvocation=4"}
	for _, c := range []struct {
		params    []string
		mentioned []string
	}{
		{[]string{"--param", "MemorySize=1024", "--param", "Topics=orders"}, []string{
			"25 functions of 1024 MB", "total: $", // the estimate, before the refusal
			"--param Topics: the template has no such parameter", "it has: Brokers Topic PartitionCount",
		}},
		{[]string{"--param", "MemorySize=64"}, []string{"-memory-size 64: want 128 to 10240", "--param MemorySize=64"}},
	} {
		cmd := exec.CommandContext(t.Context(), "./bootstrap.sh", append(base, c.params...)...)
		cmd.Env = append(os.Environ(), "TAGS=")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("deploy --dry-run %v: exit %d (%v), want 2:\n%s", c.params, code, err, stderr.String())
		}
		for _, s := range c.mentioned {
			if !strings.Contains(stderr.String(), s) {
				t.Errorf("deploy --dry-run %v: stderr does not say %q:\n%s", c.params, s, stderr.String())
			}
		}
	}
}
