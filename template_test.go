// template_test.go checks template.json (the CloudFormation stack that
// ./bootstrap.sh deploy makes) against the code: every environment variable
// baton reads is set, each schedule's input is an event baton accepts, and
// the roles grant what the code calls and nothing more. A small evaluator
// resolves the template's intrinsic functions for sample parameters.

package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
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
	"BATON_METRICS_ADDR":  "process mode only (baton refuses it under Lambda): the function's metrics are EMF lines in its log",
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
		"Brokers": "b-1.example:9092,b-2.example:9092", "Topic": "orders", "PartitionCount": "3",
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

func withParams(base, more map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range more {
		m[k] = v
	}
	return m
}

func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("template.json")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	if err := json.Unmarshal(b, &tmpl); err != nil {
		t.Fatalf("template.json: %v", err)
	}
	return tmpl
}

func tmplSection(t *testing.T, tmpl map[string]any, name string) map[string]any {
	t.Helper()
	m, ok := tmpl[name].(map[string]any)
	if !ok {
		t.Fatalf("template.json has no %s section", name)
	}
	return m
}

var cfnPseudoParams = map[string]string{
	"AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::Region": "eu-west-1",
	"AWS::StackName": "baton-test", "AWS::StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/baton-test/1",
	"AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": "",
}

// cfnSubVar is a ${name} or ${resource.attribute} in an Fn::Sub string; ${!x}
// is a literal.
var cfnSubVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// TestTemplate_references checks that the template holds together: every
// Ref, GetAtt, Sub variable and condition names something it declares, and
// every parameter and condition is used.
func TestTemplate_references(t *testing.T) {
	tmpl := loadTemplate(t)
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
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), n, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = f
	}
	return files
}

// codeImports tells whether any non-test file imports path.
func codeImports(t *testing.T, path string) bool {
	t.Helper()
	for _, f := range codeFiles(t) {
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == path {
				return true
			}
		}
	}
	return false
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
		e := newCfnEvaluator(t, tmpl, sample)
		env := e.resolve(raw).(map[string]any)
		getenv := func(k string) string { s, _ := env[k].(string); return s }
		cfg, err := parseConfig(nil, getenv)
		if err != nil {
			t.Fatalf("the template's environment %v: baton refuses it: %v", env, err)
		}
		if cfg.Mode != "lambda" || cfg.Topic != sample["Topic"] || cfg.LeaseTable != "ref:LeaseTable" ||
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
	fn := e.resolve(tmplResource(t, tmpl, "Function", "AWS::Lambda::Function")["Properties"]).(map[string]any)
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"Runtime"}, "provided.al2023"},
		{[]string{"Architectures"}, []any{"arm64"}},
		{[]string{"Handler"}, "bootstrap"},
		{[]string{"Timeout"}, float64(15 * 60)},
		{[]string{"MemorySize"}, "128"},
		{[]string{"Code", "S3Bucket"}, sampleParams["CodeBucket"]},
		{[]string{"Code", "S3Key"}, sampleParams["CodeKey"]},
		{[]string{"Role"}, "getatt:FunctionRole.Arn"},
		{[]string{"LoggingConfig", "LogGroup"}, "ref:LogGroup"},
		// baton logs JSON with a "level" under Lambda, at AWS_LAMBDA_LOG_LEVEL:
		// Lambda sets it from ApplicationLogLevel with the JSON format.
		{[]string{"LoggingConfig", "LogFormat"}, "JSON"},
		{[]string{"LoggingConfig", "ApplicationLogLevel"}, "INFO"},
	} {
		if got := tmplDig(t, fn, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Function %s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
		}
	}
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
	fnVPC := vpc.resolve(tmplResource(t, tmpl, "Function", "AWS::Lambda::Function")["Properties"]).(map[string]any)
	if got, want := fnVPC["VpcConfig"], (map[string]any{"SubnetIds": []any{"subnet-1", "subnet-2"}, "SecurityGroupIds": []any{"sg-1"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("with SubnetIds, VpcConfig = %v, want %v", got, want)
	}
	logs := e.resolve(tmplResource(t, tmpl, "LogGroup", "AWS::Logs::LogGroup")["Properties"]).(map[string]any)
	if logs["RetentionInDays"] == nil {
		t.Errorf("LogGroup keeps logs forever: set RetentionInDays")
	}
}

// TestTemplate_leaseTable checks the table: on demand, key "key", point-in-
// time recovery, and kept when the stack goes (it holds the offsets).
func TestTemplate_leaseTable(t *testing.T) {
	tmpl := loadTemplate(t)
	tbl := tmplResource(t, tmpl, "LeaseTable", "AWS::DynamoDB::Table")
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"DeletionPolicy"}, "Retain"},
		{[]string{"UpdateReplacePolicy"}, "Retain"},
		{[]string{"Properties", "BillingMode"}, "PAY_PER_REQUEST"},
		{[]string{"Properties", "KeySchema"}, []any{map[string]any{"AttributeName": "key", "KeyType": "HASH"}}},
		{[]string{"Properties", "AttributeDefinitions"}, []any{map[string]any{"AttributeName": "key", "AttributeType": "S"}}},
		{[]string{"Properties", "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"}, true},
	} {
		if got := tmplDig(t, tbl, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("LeaseTable %s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
		}
	}
	if ttl := tmplDig(t, tbl, "Properties").(map[string]any)["TimeToLiveSpecification"]; ttl != nil {
		t.Errorf("LeaseTable has a TTL (%v): a deleted item restarts its epochs, and a fenced owner could match again", ttl)
	}
}

// TestTemplate_schedules checks one schedule per partition below
// PartitionCount, each with an input that baton reads as that partition and
// the scheduled time as the tick.
func TestTemplate_schedules(t *testing.T) {
	tmpl := loadTemplate(t)
	counts := tmplDig(t, tmplSection(t, tmpl, "Parameters"), "PartitionCount", "AllowedValues").([]any)
	most := len(counts)
	for i, c := range counts {
		if c != strconv.Itoa(i+1) {
			t.Fatalf("PartitionCount AllowedValues = %v, want 1..%d", counts, most)
		}
	}
	res := tmplSection(t, tmpl, "Resources")
	for n, r := range res {
		if r.(map[string]any)["Type"] == "AWS::Scheduler::Schedule" {
			if p, err := strconv.Atoi(strings.TrimPrefix(n, "Schedule")); err != nil || p >= most || n != "Schedule"+strconv.Itoa(p) {
				t.Errorf("schedule %s: want Schedule0..Schedule%d only", n, most-1)
			}
		}
	}
	const tick = "2026-01-02T15:04:00Z"
	// -partitions names one partition that no schedule has: an input
	// without its own partition would show as that one.
	cfg, err := parseConfig([]string{"-mode=lambda", "-brokers=b:9092", "-partitions=" + strconv.Itoa(most+5)}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for count := 1; count <= most; count++ {
		e := newCfnEvaluator(t, tmpl, withParams(sampleParams, map[string]any{"PartitionCount": strconv.Itoa(count)}))
		active := e.resources()
		for p := range most {
			name := "Schedule" + strconv.Itoa(p)
			s, ok := active[name]
			if ok != (p < count) {
				t.Errorf("PartitionCount %d: %s created = %v", count, name, ok)
				continue
			}
			if !ok {
				continue
			}
			props := s["Properties"].(map[string]any)
			for _, c := range []struct {
				path []string
				want any
			}{
				{[]string{"ScheduleExpression"}, fmt.Sprintf("rate(%d minutes)", scheduleRateMinutes)},
				{[]string{"FlexibleTimeWindow", "Mode"}, "OFF"},
				{[]string{"GroupName"}, "ref:ScheduleGroup"},
				{[]string{"State"}, "ENABLED"},
				{[]string{"Target", "Arn"}, "getatt:Function.Arn"},
				{[]string{"Target", "RoleArn"}, "getatt:SchedulerRole.Arn"},
				{[]string{"Target", "RetryPolicy", "MaximumEventAgeInSeconds"}, float64(scheduleRateMinutes * 60)},
			} {
				if got := tmplDig(t, props, c.path...); !reflect.DeepEqual(got, c.want) {
					t.Errorf("%s %s = %#v, want %#v", name, strings.Join(c.path, "."), got, c.want)
				}
			}
			input := tmplDig(t, props, "Target", "Input").(string)
			if !strings.Contains(input, `"<aws.scheduler.scheduled-time>"`) {
				t.Errorf("%s input %s: no <aws.scheduler.scheduled-time> tick", name, input)
			}
			payload := strings.ReplaceAll(input, "<aws.scheduler.scheduled-time>", tick)
			inv, err := parseEvent([]byte(payload), cfg, time.Unix(0, 0))
			if err != nil {
				t.Errorf("%s input %s: baton refuses it: %v", name, payload, err)
				continue
			}
			if want := time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC).UnixMilli(); inv.Topic != "orders" || inv.Partition != int32(p) || inv.Tick != want {
				t.Errorf("%s input %s: invocation %+v, want topic orders, partition %d, tick %d", name, payload, inv, p, want)
			}
		}
	}
}

// TestTemplate_schedulerRole checks that the scheduler may invoke the
// function and nothing else, and only for this stack's schedules.
func TestTemplate_schedulerRole(t *testing.T) {
	tmpl := loadTemplate(t)
	e := newCfnEvaluator(t, tmpl, sampleParams)
	role := e.resolve(tmplResource(t, tmpl, "SchedulerRole", "AWS::IAM::Role")["Properties"]).(map[string]any)
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
	txnIDs, requests := 0, map[string]bool{}
	for n, f := range codeFiles(t) {
		ast.Inspect(f, func(node ast.Node) bool {
			switch node := node.(type) {
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
	logs := iamStatement{Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{"getatt:LogGroup.Arn"}}
	cluster, topic := sampleCluster, func(name string) string { return sampleTopicARN + name }
	txnIDsOf := func(group string) string { return sampleTxnIDARN + "baton/" + group + "/*" }
	groupOf := func(group string) string { return sampleGroupARN + group }
	cases := []struct {
		name   string
		params map[string]any
		want   []iamStatement // besides DynamoDB's
	}{
		{"plain", sampleParams, []iamStatement{logs}},
		{"MSK IAM, stdout sink", withParams(sampleMSKParams, map[string]any{"Sink": "stdout", "Dlq": ""}), []iamStatement{
			logs,
			{Actions: []string{"kafka-cluster:Connect"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}, Resources: []string{topic("orders")}},
			{Actions: []string{"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}, Resources: []string{groupOf(defaultGroup)}},
		}},
		{"MSK IAM, DLQ only", withParams(sampleMSKParams, map[string]any{"Sink": "discard"}), []iamStatement{
			logs,
			{Actions: []string{"kafka-cluster:Connect"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}, Resources: []string{topic("orders")}},
			{Actions: []string{"kafka-cluster:WriteDataIdempotently"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"}, Resources: []string{topic("orders-dlq")}},
			{Actions: []string{"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}, Resources: []string{groupOf(defaultGroup)}},
		}},
		{"MSK IAM, Kafka sink and DLQ, its own group", withParams(sampleMSKParams, map[string]any{"Group": "enricher"}), []iamStatement{
			logs,
			{Actions: []string{"kafka-cluster:Connect"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}, Resources: []string{topic("orders")}},
			{Actions: []string{"kafka-cluster:WriteDataIdempotently"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"}, Resources: []string{topic("enriched"), topic("orders-dlq")}},
			{Actions: []string{"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}, Resources: []string{groupOf("enricher")}},
		}},
		{"MSK IAM, kafka+txn sink and DLQ", sampleTxnParams, []iamStatement{
			logs,
			{Actions: []string{"kafka-cluster:Connect"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}, Resources: []string{topic("orders")}},
			{Actions: []string{"kafka-cluster:WriteDataIdempotently"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"}, Resources: []string{topic("enriched"), topic("orders-dlq")}},
			// Group left empty: baton's default group names both.
			{Actions: []string{"kafka-cluster:AlterTransactionalId", "kafka-cluster:DescribeTransactionalId"}, Resources: []string{txnIDsOf(defaultGroup)}},
			{Actions: []string{"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}, Resources: []string{groupOf(defaultGroup)}},
		}},
		{"MSK IAM, kafka+txn sink, its own group, no DLQ", withParams(sampleTxnParams, map[string]any{"Group": "enricher", "Dlq": ""}), []iamStatement{
			logs,
			{Actions: []string{"kafka-cluster:Connect"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}, Resources: []string{topic("orders")}},
			{Actions: []string{"kafka-cluster:WriteDataIdempotently"}, Resources: []string{cluster}},
			{Actions: []string{"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"}, Resources: []string{topic("enriched")}},
			{Actions: []string{"kafka-cluster:AlterTransactionalId", "kafka-cluster:DescribeTransactionalId"}, Resources: []string{txnIDsOf("enricher")}},
			{Actions: []string{"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}, Resources: []string{groupOf("enricher")}},
		}},
		{"kafka+txn sink without MSK IAM", withParams(sampleParams, map[string]any{"Sink": "kafka+txn://enriched"}), []iamStatement{logs}},
		{"SASL secret", sampleScramParams, []iamStatement{
			logs,
			{Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{sampleSecret}},
		}},
		{"SASL secret with its KMS key", withParams(sampleScramParams, map[string]any{"SaslSecretKmsKeyArn": sampleKey}), []iamStatement{
			logs,
			{Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{sampleSecret}},
			// The secret's region, which may not be the stack's.
			{Actions: []string{"kms:Decrypt"}, Resources: []string{sampleKey},
				Condition: `{"StringEquals":{"kms:ViaService":"secretsmanager.eu-central-1.amazonaws.com"}}`},
		}},
		{"VPC", withParams(sampleParams, map[string]any{"SubnetIds": "subnet-1", "SecurityGroupIds": "sg-1"}), []iamStatement{
			logs,
			// The ENI actions take no resource ARN (as AWSLambdaVPCAccessExecutionRole).
			{Actions: []string{"ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
				"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:UnassignPrivateIpAddresses"}, Resources: []string{"*"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newCfnEvaluator(t, tmpl, c.params)
			role := e.resolve(tmplResource(t, tmpl, "FunctionRole", "AWS::IAM::Role")["Properties"]).(map[string]any)
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
	// every partition the schedules name, and no other group's.
	for _, params := range []map[string]any{sampleMSKParams, sampleTxnParams, withParams(sampleTxnParams, map[string]any{"Group": "enricher", "PartitionCount": "32"})} {
		e := newCfnEvaluator(t, tmpl, params)
		env := e.resolve(tmplDig(t, tmplResource(t, tmpl, "Function", "AWS::Lambda::Function"), "Properties", "Environment", "Variables")).(map[string]any)
		cfg, err := parseConfig(nil, func(k string) string { s, _ := env[k].(string); return s })
		if err != nil {
			t.Fatalf("MSK sample %v: baton refuses it: %v", params, err)
		}
		txn := cfg.SinkScheme == "kafka+txn"
		if txn != strings.HasPrefix(params["Sink"].(string), "kafka+txn://") {
			t.Fatalf("MSK sample %v: sink scheme %q", params, cfg.SinkScheme)
		}
		granted := map[string][]string{} // action: resources
		for _, s := range iamStatements(t, e.resolve(tmplResource(t, tmpl, "FunctionRole", "AWS::IAM::Role")["Properties"]).(map[string]any)) {
			for _, a := range s.Actions {
				granted[a] = append(granted[a], s.Resources...)
			}
		}
		other := *cfg
		other.Group += "-other"
		count, _ := strconv.Atoi(e.params["PartitionCount"].(string))
		if !txn {
			count = 0 // no transactional IDs to check
		}
		for p := range count {
			inv := invocation{Topic: cfg.Topic, Partition: int32(p)}
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
	all := newCfnEvaluator(t, tmpl, withParams(sampleMSKParams, map[string]any{"SaslSecretArn": sampleSecret}))
	granted := map[string]bool{}
	for _, s := range iamStatements(t, all.resolve(tmplResource(t, tmpl, "FunctionRole", "AWS::IAM::Role")["Properties"]).(map[string]any)) {
		for _, a := range s.Actions {
			granted[strings.Split(a, ":")[0]] = true
		}
	}
	for service, pkg := range map[string]string{
		"secretsmanager": "github.com/aws/aws-sdk-go-v2/service/secretsmanager",
		"kafka-cluster":  "github.com/twmb/franz-go/pkg/sasl/aws",
	} {
		if got, want := granted[service], codeImports(t, pkg); got != want {
			t.Errorf("template grants %s:* actions = %v, but the code imports %s = %v", service, got, pkg, want)
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
		env := e.resolve(tmplDig(t, tmplResource(t, tmpl, "Function", "AWS::Lambda::Function"), "Properties", "Environment", "Variables")).(map[string]any)
		if _, err := parseConfig(nil, func(k string) string { s, _ := env[k].(string); return s }); err != nil {
			t.Errorf("%s: the rules let it pass, but baton refuses it: %v", c.name, err)
		}
	}
	for _, v := range tmplDig(t, tmplSection(t, tmpl, "Parameters"), "Sasl", "AllowedValues").([]any) {
		env := map[string]string{"BATON_MODE": "lambda", "BATON_BROKERS": "b:9092", "BATON_SASL": v.(string)}
		if v != "none" && v != "aws-msk-iam" {
			env["BATON_SASL_SECRET"] = sampleSecret
		}
		if _, err := parseConfig(nil, func(k string) string { return env[k] }); err != nil {
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

// cfnEvaluator resolves a template's intrinsic functions for given parameters,
// the way CloudFormation would: a resource's Ref is "ref:Name", its GetAtt
// "getatt:Name.Attr", AWS::NoValue removes what it stands in.
type cfnEvaluator struct {
	t      *testing.T
	tmpl   map[string]any
	params map[string]any // string, or []string for a CommaDelimitedList
	conds  map[string]bool
}

// cfnNoValue marks what AWS::NoValue removes.
type cfnNoValue struct{}

func newCfnEvaluator(t *testing.T, tmpl map[string]any, given map[string]any) *cfnEvaluator {
	t.Helper()
	e := &cfnEvaluator{t: t, tmpl: tmpl, params: map[string]any{}, conds: map[string]bool{}}
	for n, p := range tmplSection(t, tmpl, "Parameters") {
		pm := p.(map[string]any)
		v, ok := given[n]
		if !ok {
			if v, ok = pm["Default"]; !ok {
				t.Fatalf("parameter %s has no default and no sample value", n)
			}
		}
		s := cfnScalar(v)
		if allowed, ok := pm["AllowedValues"].([]any); ok && !slices.ContainsFunc(allowed, func(a any) bool { return cfnScalar(a) == s }) {
			t.Fatalf("parameter %s = %q is not one of %v", n, s, allowed)
		}
		if pat, ok := pm["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(s) {
			t.Fatalf("parameter %s = %q does not match %s", n, s, pat)
		}
		if pm["Type"] == "CommaDelimitedList" {
			e.params[n] = strings.Split(s, ",")
		} else {
			e.params[n] = s
		}
	}
	for n := range given {
		if _, ok := e.params[n]; !ok {
			t.Fatalf("sample parameter %s is not in the template", n)
		}
	}
	return e
}

func cfnScalar(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// resources is every resource whose condition holds, resolved.
func (e *cfnEvaluator) resources() map[string]map[string]any {
	out := map[string]map[string]any{}
	for n, r := range tmplSection(e.t, e.tmpl, "Resources") {
		rm := r.(map[string]any)
		if c, ok := rm["Condition"].(string); ok && !e.cond(c) {
			continue
		}
		out[n] = e.resolve(rm).(map[string]any)
	}
	return out
}

func (e *cfnEvaluator) cond(name string) bool {
	if v, ok := e.conds[name]; ok {
		return v
	}
	c, ok := tmplSection(e.t, e.tmpl, "Conditions")[name]
	if !ok {
		e.t.Fatalf("no condition %s", name)
	}
	v := e.truth(c)
	e.conds[name] = v
	return v
}

func (e *cfnEvaluator) truth(c any) bool {
	m, ok := c.(map[string]any)
	if !ok || len(m) != 1 {
		e.t.Fatalf("condition %v: want one condition function", c)
	}
	for f, arg := range m {
		args, _ := arg.([]any)
		switch f {
		case "Condition":
			return e.cond(arg.(string))
		case "Fn::Equals":
			return reflect.DeepEqual(e.resolve(args[0]), e.resolve(args[1]))
		case "Fn::Not":
			return !e.truth(args[0])
		case "Fn::And", "Fn::Or":
			if len(args) < 2 || len(args) > 10 {
				e.t.Errorf("%s takes 2 to 10 conditions, got %d", f, len(args))
			}
			for _, a := range args {
				if e.truth(a) == (f == "Fn::Or") {
					return f == "Fn::Or"
				}
			}
			return f == "Fn::And"
		}
		e.t.Fatalf("condition %v: unknown function %s", c, f)
	}
	return false
}

func (e *cfnEvaluator) resolve(v any) any {
	switch v := v.(type) {
	case []any:
		out := []any{}
		for _, x := range v {
			if r := e.resolve(x); r != (cfnNoValue{}) {
				out = append(out, r)
			}
		}
		return out
	case map[string]any:
		if len(v) == 1 {
			for f, arg := range v {
				if r, ok := e.function(f, arg); ok {
					return r
				}
			}
		}
		out := map[string]any{}
		for k, x := range v {
			if r := e.resolve(x); r != (cfnNoValue{}) {
				out[k] = r
			}
		}
		return out
	}
	return v
}

// function resolves one intrinsic function; ok is false for a plain key.
func (e *cfnEvaluator) function(f string, arg any) (any, bool) {
	args, _ := arg.([]any)
	str := func(x any) string {
		s, ok := e.resolve(x).(string)
		if !ok {
			e.t.Fatalf("%s: %v is not a string", f, x)
		}
		return s
	}
	switch f {
	case "Ref":
		return e.ref(arg.(string)), true
	case "Fn::GetAtt":
		return fmt.Sprintf("getatt:%s.%s", args[0], args[1]), true
	case "Fn::If":
		if e.cond(args[0].(string)) {
			return e.resolve(args[1]), true
		}
		return e.resolve(args[2]), true
	case "Fn::Join":
		var parts []string
		for _, x := range e.resolve(args[1]).([]any) {
			parts = append(parts, x.(string))
		}
		return strings.Join(parts, args[0].(string)), true
	case "Fn::Split":
		var out []any
		for _, s := range strings.Split(str(args[1]), args[0].(string)) {
			out = append(out, s)
		}
		return out, true
	case "Fn::Select":
		i, _ := strconv.Atoi(cfnScalar(args[0]))
		list := e.resolve(args[1]).([]any)
		if i >= len(list) {
			e.t.Fatalf("Fn::Select %d of %v: out of range", i, list)
		}
		return list[i], true
	case "Fn::Sub":
		s, vars := arg, map[string]any{}
		if len(args) == 2 {
			s, vars = args[0], args[1].(map[string]any)
		}
		out := cfnSubVar.ReplaceAllStringFunc(s.(string), func(m string) string {
			n := m[2 : len(m)-1]
			if x, ok := vars[n]; ok {
				return str(x)
			}
			if r, a, ok := strings.Cut(n, "."); ok {
				return fmt.Sprintf("getatt:%s.%s", r, a)
			}
			return fmt.Sprint(e.ref(n))
		})
		return strings.ReplaceAll(out, "${!", "${"), true
	case "Condition":
		return nil, false
	}
	if strings.HasPrefix(f, "Fn::") {
		e.t.Fatalf("the evaluator does not know %s", f)
	}
	return nil, false
}

func (e *cfnEvaluator) ref(n string) any {
	if n == "AWS::NoValue" {
		return cfnNoValue{}
	}
	if v, ok := cfnPseudoParams[n]; ok {
		return v
	}
	if v, ok := e.params[n]; ok {
		if l, ok := v.([]string); ok {
			out := make([]any, len(l))
			for i, s := range l {
				out[i] = s
			}
			return out
		}
		return v
	}
	if _, ok := tmplSection(e.t, e.tmpl, "Resources")[n]; ok {
		return "ref:" + n
	}
	e.t.Fatalf("Ref %s: not declared", n)
	return nil
}
