//go:build !redis

// template_dynamo_test.go checks template.json's DynamoDB grants against the
// DynamoDB calls the code makes (dynamoAPI exists in the default build only).

package main

import (
	"cmp"
	"go/ast"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// notCalledInLambda are dynamoAPI methods the function never calls under
// the template, each with the function that alone may call it and why.
var notCalledInLambda = map[string]struct{ onlyIn, reason string }{
	"CreateTable":   {"createTable", "only with -create-table, which the template never sets (it makes the table)"},
	"DescribeTable": {"createTable", "only with -create-table, which the template never sets (it makes the table)"},
}

// grantedAs are dynamoAPI methods that IAM authorizes as other actions: a
// transaction as the writes it holds.
var grantedAs = map[string]string{"TransactWriteItems": "UpdateItem"}

// TestTemplate_dynamodb checks that the function may make exactly the
// DynamoDB calls the code makes at run time, on the lease table alone: the
// methods of dynamoAPI less those only -create-table calls.
func TestTemplate_dynamodb(t *testing.T) {
	api := reflect.TypeFor[dynamoAPI]()
	var methods []string
	for m := range api.Methods() {
		methods = append(methods, m.Name)
	}
	// Where each method is called (s.db.Method(...)), by enclosing function.
	callers := map[string][]string{}
	createGuarded := false
	for _, f := range codeFiles(t) {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					if sel, ok := n.Fun.(*ast.SelectorExpr); ok && slices.Contains(methods, sel.Sel.Name) {
						if x, ok := sel.X.(*ast.SelectorExpr); ok && x.Sel.Name == "db" {
							callers[sel.Sel.Name] = append(callers[sel.Sel.Name], fd.Name.Name)
						}
					}
				case *ast.IfStmt:
					// createTable runs only under `if cfg.CreateTable`.
					if sel, ok := n.Cond.(*ast.SelectorExpr); ok && sel.Sel.Name == "CreateTable" {
						ast.Inspect(n.Body, func(m ast.Node) bool {
							if c, ok := m.(*ast.CallExpr); ok {
								if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "createTable" {
									createGuarded = true
								}
							}
							return true
						})
					}
				}
				return true
			})
		}
	}
	if !createGuarded {
		t.Errorf("no `if cfg.CreateTable { ... createTable(...) }` found: the template's grants assume createTable runs only with -create-table")
	}
	var want []string
	for _, m := range methods {
		if ex, ok := notCalledInLambda[m]; ok {
			for _, fn := range callers[m] {
				if fn != ex.onlyIn {
					t.Errorf("%s calls DynamoDB %s: the template does not grant it (%s); grant it or keep the call in %s", fn, m, ex.reason, ex.onlyIn)
				}
			}
			continue
		}
		if len(callers[m]) == 0 {
			t.Errorf("dynamoAPI has %s, but nothing calls it: drop it from the interface", m)
		}
		want = append(want, "dynamodb:"+cmp.Or(grantedAs[m], m))
	}
	slices.Sort(want)
	want = slices.Compact(want)
	var excluded []string
	for m := range notCalledInLambda {
		excluded = append(excluded, m)
	}
	slices.Sort(excluded)

	tmpl := loadTemplate(t)
	if got, want := tmplDig(t, tmplResource(t, tmpl, "LeaseTable", "AWS::DynamoDB::Table"), "Properties", "KeySchema").([]any)[0].(map[string]any)["AttributeName"], attrKey; got != want {
		t.Errorf("LeaseTable key = %v, want %s (attrKey)", got, want)
	}
	for _, params := range []map[string]any{sampleParams, sampleMSKParams, sampleTxnParams, withParams(sampleParams, map[string]any{"SubnetIds": "subnet-1", "SecurityGroupIds": "sg-1"})} {
		var got []string
		for _, s := range iamStatements(t, newCfnEvaluator(t, tmpl, params).props("FunctionRole", "AWS::IAM::Role")) {
			var ddb []string
			for _, a := range s.Actions {
				if strings.HasPrefix(a, "dynamodb:") {
					ddb = append(ddb, a)
				}
			}
			if len(ddb) == 0 {
				continue
			}
			if len(ddb) != len(s.Actions) || !slices.Equal(s.Resources, []string{"getatt:LeaseTable.Arn"}) || s.Condition != "" {
				t.Errorf("statement %+v: want DynamoDB actions alone, on the lease table's ARN alone", s)
			}
			got = append(got, ddb...)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("FunctionRole grants %v on the lease table; the code calls %v (dynamoAPI less %v)", got, want, excluded)
		}
	}
}
