// template_eval_test.go is a small CloudFormation evaluator for the template
// tests: it resolves a template's conditions and intrinsic functions (Ref,
// Fn::GetAtt, Fn::If, Fn::Join, Fn::Split, Fn::Select, Fn::Sub, and the
// condition functions) for given parameters, as CloudFormation would, and
// fails the test on a function it does not know.

package main

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var cfnPseudoParams = map[string]string{
	"AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::Region": "eu-west-1",
	"AWS::StackName": "baton-test", "AWS::StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/baton-test/1",
	"AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": "",
}

// cfnSubVar is a ${name} or ${resource.attribute} in an Fn::Sub string; ${!x}
// is a literal.
var cfnSubVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// cfnEvaluator resolves a template's intrinsic functions for given parameters,
// the way CloudFormation would: a resource's Ref is "ref:Name", its GetAtt
// "getatt:Name.Attr", AWS::NoValue removes what it stands in.
type cfnEvaluator struct {
	t      *testing.T
	tmpl   map[string]any
	params map[string]any // string, or []any of strings for a CommaDelimitedList
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
		e.params[n] = s
		if pm["Type"] == "CommaDelimitedList" {
			var list []any
			for _, x := range strings.Split(s, ",") {
				list = append(list, x)
			}
			e.params[n] = list
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

// props is the Properties of resource name, which must be of type typ,
// resolved.
func (e *cfnEvaluator) props(name, typ string) map[string]any {
	e.t.Helper()
	return e.resolve(tmplResource(e.t, e.tmpl, name, typ)["Properties"]).(map[string]any)
}

// env is the function's resolved environment.
func (e *cfnEvaluator) env() map[string]any {
	e.t.Helper()
	return tmplDig(e.t, e.props("Function", "AWS::Lambda::Function"), "Environment", "Variables").(map[string]any)
}

// grants is every action the role grants, with the resources it grants it on.
func (e *cfnEvaluator) grants(role string) map[string][]string {
	e.t.Helper()
	granted := map[string][]string{}
	for _, s := range iamStatements(e.t, e.props(role, "AWS::IAM::Role")) {
		for _, a := range s.Actions {
			granted[a] = append(granted[a], s.Resources...)
		}
	}
	return granted
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
		return v
	}
	if _, ok := tmplSection(e.t, e.tmpl, "Resources")[n]; ok {
		return "ref:" + n
	}
	e.t.Fatalf("Ref %s: not declared", n)
	return nil
}
