// template.go generates the CloudFormation template ./bootstrap.sh deploy
// deploys, for any partition count: baton template -partition-count N
// -partitions-per-invocation K writes it to stdout. The source is
// template.json, embedded, whose one schedule, Schedule0, is the model of
// every schedule: one per group of K partitions, S = ceil(N/K) of them,
// named Schedule0, Schedule1, ... Schedule g names slot g of S, the
// partitions p of the topic with p mod S = g, whatever their count when it
// fires (partitions.go): a partition added to the topic is read by the next
// tick, and a redeploy with the new count only spreads the partitions over
// more schedules. Each input also says K ("sized"), so an invocation that
// owns more warns. template.json is itself the output for 1 partition, 1
// per invocation (TestTemplate_generated holds it to that), so it stays
// deployable and is the only copy.

package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

//go:embed template.json
var templateJSON []byte

// CloudFormation's limits on one template: resources, and the body's bytes
// when it comes from S3 (./bootstrap.sh deploy uploads it; 51,200 inline).
const (
	cfnMaxResources     = 500
	cfnMaxTemplateBytes = 1_000_000
	scheduleType        = "AWS::Scheduler::Schedule"
)

// templateMain is baton template (not in baton -h: ./bootstrap.sh deploy
// runs it). Exit 2 for a bad flag, the message naming it. stdout is the
// template alone, so the estimate of its cost goes to stderr.
func templateMain(args []string, sys sysio) int {
	fs := flag.NewFlagSet("baton template", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	n := fs.Int("partition-count", 1, "partitions 0..N-1 of the topic, one schedule per group")
	k := fs.Int("partitions-per-invocation", 1, "partitions per group: each schedule's invocation reads K")
	mb := fs.Int("memory-size", 0, fmt.Sprintf("the function's MemorySize default and the estimate's, %d to %d MB (default: %d for groups of up to %d partitions, %d more for each %d more)",
		memMin, memMax, memoryDefaultMB(1), benchGroup, memoryDefaultMB(1), benchGroup))
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(sys.stdout)
		fmt.Fprintln(sys.stdout, "usage: baton template [-partition-count N] [-partitions-per-invocation K] [-memory-size MB] > template.json")
		fs.PrintDefaults()
		return 0
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err == nil && !flagSet(fs, "memory-size") {
		*mb = memoryDefaultMB(min(*k, *n))
	}
	var out []byte
	if err == nil {
		out, err = renderTemplate(*n, *k, *mb)
	}
	if err != nil {
		fmt.Fprintf(sys.stderr, "baton template: %v\n", err)
		return 2
	}
	_, _ = sys.stdout.Write(out)
	estimateMonth(*n, *k, *mb).print(sys.stderr)
	return 0
}

// flagSet is whether the command line gave the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// renderTemplate is the template for n partitions in groups of k, each
// group a function of mb MB unless the deploy says otherwise: the
// embedded one with one copy of its model schedule per group, each naming
// its slot of the topic, and its
// PartitionCount, PartitionsPerInvocation and MemorySize parameters set to
// say so (the first two allow only the generated values; MemorySize's is
// its default). k above n makes one group of all n.
func renderTemplate(n, k, mb int) ([]byte, error) {
	if n < 1 || n > cfnMaxTemplateBytes/2 {
		// Each partition takes two bytes of some input at least.
		return nil, fmt.Errorf("-partition-count %d: want 1 to %d (no template could name more)", n, cfnMaxTemplateBytes/2)
	}
	if k < 1 {
		return nil, fmt.Errorf("-partitions-per-invocation %d: want 1 or more", k)
	}
	if err := checkMemory(mb); err != nil {
		return nil, err
	}
	v, err := decodeOrdered(json.NewDecoder(bytes.NewReader(templateJSON)))
	if err != nil {
		return nil, fmt.Errorf("template.json: %w", err)
	}
	tmpl := v.(*jsonObject)
	res, params := tmpl.obj("Resources"), tmpl.obj("Parameters")
	model := res.obj("Schedule0")
	if model == nil || model.vals["Type"] != scheduleType {
		return nil, errors.New("template.json: no " + scheduleType + " Schedule0, the model of every schedule")
	}
	others := &jsonObject{vals: map[string]any{}}
	for _, name := range res.keys {
		if r := res.obj(name); r == nil || r.vals["Type"] != scheduleType {
			others.set(name, res.vals[name])
		}
	}
	groups := (n + k - 1) / k
	if most := cfnMaxResources - len(others.keys); groups > most {
		return nil, fmt.Errorf("-partition-count %d: %d schedules (-partitions-per-invocation %d) and the stack's %d other resources pass CloudFormation's %d resources a template: at most %d partitions at %d per invocation: raise -partitions-per-invocation",
			n, groups, k, len(others.keys), cfnMaxResources, most*k, k)
	}
	// The model is slot 0 of 1, sized for 1.
	const modelDesc, modelInput = "slot 0 of 1 (partitions p with p mod 1 = 0)", `"slot":0,"slots":1,"sized":1`
	sized := min(k, n) // what MemorySize is set for
	for g := range groups {
		desc := fmt.Sprintf("slot %d of %d (partitions p with p mod %d = %d)", g, groups, groups, g)
		input := fmt.Sprintf(`"slot":%d,"slots":%d,"sized":%d`, g, groups, sized)
		s := cloneJSON(model).(*jsonObject)
		props := s.obj("Properties")
		for _, r := range []struct{ where, old, new string }{{"Description", modelDesc, desc}, {"Target.Input", modelInput, input}} {
			if err := replaceSub(props, r.where, r.old, r.new); err != nil {
				return nil, fmt.Errorf("template.json: Schedule0 Properties.%s: %w", r.where, err)
			}
		}
		others.set("Schedule"+strconv.Itoa(g), s)
	}
	tmpl.set("Resources", others)
	for name, value := range map[string]string{"PartitionCount": strconv.Itoa(n), "PartitionsPerInvocation": strconv.Itoa(k)} {
		p := params.obj(name)
		if p == nil {
			return nil, fmt.Errorf("template.json: no parameter %s", name)
		}
		p.set("Default", value)
		p.set("AllowedValues", []any{value})
	}
	if p := params.obj("MemorySize"); p != nil {
		p.set("Default", json.Number(strconv.Itoa(mb)))
	}
	var b bytes.Buffer
	writeJSON(&b, tmpl, "")
	b.WriteByte('\n')
	if b.Len() > cfnMaxTemplateBytes {
		return nil, fmt.Errorf("-partition-count %d: the template is %d bytes, over CloudFormation's %d", n, b.Len(), cfnMaxTemplateBytes)
	}
	return b.Bytes(), nil
}

// replaceSub replaces old, which must be there once, with new in the
// Fn::Sub string at the dotted path under props.
func replaceSub(props *jsonObject, path, old, new string) error {
	o := props
	for _, k := range strings.Split(path, ".") {
		if o = o.obj(k); o == nil {
			return errors.New("missing")
		}
	}
	s, _ := o.vals["Fn::Sub"].(string)
	if strings.Count(s, old) != 1 {
		return fmt.Errorf("want an Fn::Sub string naming %s once, got %q", old, s)
	}
	o.set("Fn::Sub", strings.Replace(s, old, new, 1))
	return nil
}

// jsonObject is a JSON object that keeps its keys' order, so that the
// generated template reads like its source.
type jsonObject struct {
	keys []string
	vals map[string]any
}

func (o *jsonObject) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// obj is the object at key k, or nil.
func (o *jsonObject) obj(k string) *jsonObject {
	if o == nil {
		return nil
	}
	v, _ := o.vals[k].(*jsonObject)
	return v
}

// decodeOrdered reads one JSON value: objects as *jsonObject, numbers as
// json.Number. A key twice in one object is an error.
func decodeOrdered(d *json.Decoder) (any, error) {
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		o := &jsonObject{vals: map[string]any{}}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeOrdered(d)
			if err != nil {
				return nil, err
			}
			if _, dup := o.vals[k.(string)]; dup {
				return nil, fmt.Errorf("key %q twice in one object", k)
			}
			o.set(k.(string), v)
		}
		_, err = d.Token()
		return o, err
	case json.Delim('['):
		a := []any{}
		for d.More() {
			v, err := decodeOrdered(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err = d.Token()
		return a, err
	}
	return tok, nil
}

func cloneJSON(v any) any {
	switch v := v.(type) {
	case *jsonObject:
		o := &jsonObject{vals: map[string]any{}}
		for _, k := range v.keys {
			o.set(k, cloneJSON(v.vals[k]))
		}
		return o
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = cloneJSON(x)
		}
		return a
	}
	return v
}

// writeJSON writes v indented by two spaces a level, as json.MarshalIndent
// would but in the objects' own key order and with <, > and & as they are.
func writeJSON(b *bytes.Buffer, v any, indent string) {
	inner := indent + "  "
	switch v := v.(type) {
	case *jsonObject:
		if len(v.keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("\n" + inner)
			writeJSON(b, k, inner)
			b.WriteString(": ")
			writeJSON(b, v.vals[k], inner)
		}
		b.WriteString("\n" + indent + "}")
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("\n" + inner)
			writeJSON(b, x, inner)
		}
		b.WriteString("\n" + indent + "]")
	default:
		e := json.NewEncoder(b)
		e.SetEscapeHTML(false)
		_ = e.Encode(v) // a string, json.Number, bool or nil
		b.Truncate(b.Len() - 1)
	}
}
