// ctl.go holds the operator's commands, `baton ctl status|seek|pause|resume`:
// they act through the lease record, so a running owner obeys within one
// lease check, and each write is conditional like any other.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ctlCommand is one ctl command: its usage line and its own flags.
type ctlCommand struct {
	verb, args, what string
	flags            []string // its own flags, as in parseCtl
}

var ctlCommands = []ctlCommand{
	{"status", "[-partition P|all]", "every partition (or one): owner and its tick, epoch, state, log start, offset, end, lag, expiry, seek, paused, successor and its tick", []string{"partition"}},
	{"seek", "-partition P -offset N|start|end", "read partition P from offset N next; N within the log, start..end", []string{"partition", "offset", "time"}},
	{"seek", "-partition P -time T", "... from the first record at or after T (RFC 3339), which must not be after the newest", nil},
	{"pause", "-partition P|all", "stop reading (the owner keeps the lease and commits)", []string{"partition"}},
	{"resume", "-partition P|all", "read again from where it stopped", []string{"partition"}},
	{"reset", "-partition P|all", "repair a record whose tick is in the future (it makes every real tick stale): released at its offset, ticks cleared", []string{"partition"}},
}

// ctlVerbs are the commands' names, for usage and errors.
var ctlVerbs = []string{"status", "seek", "pause", "resume", "reset"}

// ctlFlagUsage describes ctl's own flags.
var ctlFlagUsage = map[string]string{
	"partition": "a partition number; all (status, pause, resume)",
	"offset":    "seek: an offset from the log's start to its end, or start, or end",
	"time":      "seek: an RFC 3339 time like 2026-01-02T15:04:05Z",
}

// ctlUsage is `baton ctl -h`, or one command's when verb is set.
func ctlUsage(verb string) string {
	var b strings.Builder
	b.WriteString("usage: baton ctl COMMAND [flags] [baton's flags]\n")
	var own []string
	for _, c := range ctlCommands {
		if verb == "" || c.verb == verb {
			fmt.Fprintf(&b, "  %-6s %-33s %s\n", c.verb, c.args, c.what)
			for _, f := range c.flags {
				if !slices.Contains(own, f) {
					own = append(own, f)
				}
			}
		}
	}
	if verb == "" {
		own = []string{"partition", "offset", "time"}
	}
	b.WriteString("Flags:\n")
	for _, f := range own {
		fmt.Fprintf(&b, "  -%-10s %s\n", f, ctlFlagUsage[f])
	}
	b.WriteString("Baton's flags (baton -h) name the brokers, topic, group and lease store: -brokers, -topic and -group,\n" +
		"and -lease-table (DynamoDB) or -redis (the Redis build), or their BATON_* variables.\n" +
		"ctl never creates a lease table. Exit status: 0 done, 1 failed, 2 bad usage.")
	return b.String()
}

// usageError is a command line at fault: exit 2, not 1.
type usageError struct{ error }

func badUsage(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// ctlMain runs `baton ctl ...`: exit 2 for a usage error, 1 for a failure.
func ctlMain(ctx context.Context, args []string, sys sysio) int {
	a, rest, err := parseCtl(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(sys.stdout, ctlUsage(a.verb))
		return 0
	}
	if err == nil {
		for _, r := range rest {
			if name, _, _ := strings.Cut(strings.TrimLeft(r, "-"), "="); name == "create-table" && strings.HasPrefix(r, "-") {
				err = badUsage("ctl %s: -create-table: ctl never creates the lease table; run baton itself with -create-table once", a.verb)
			}
		}
	}
	var cfg *config
	if err == nil {
		if cfg, err = parseConfig(append([]string{"-mode", "process"}, rest...), sys.getenv); err != nil {
			err = usageError{err}
		}
	}
	if err == nil {
		// A BATON_CREATE_TABLE shared with the running service does not
		// make a read-only command create anything.
		cfg.CreateTable = false
		var st store
		if st, err = newStore(ctx, *cfg); err == nil {
			d := &deps{store: st, kafka: kgo.NewClient, now: time.Now, log: newLogger("process", sys.stderr, sys.getenv)}
			err = runCtl(ctx, cfg, d, a, sys.stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(sys.stderr, "baton ctl: %v\n", err)
		if errors.As(err, new(usageError)) {
			fmt.Fprintln(sys.stderr, "(baton ctl -h lists the commands and flags)")
			return 2
		}
		return 1
	}
	return 0
}

// ctlArgs are the ctl command's own flags.
type ctlArgs struct {
	verb      string
	partition string
	offset    string // a number, start or end; "" for none
	at        string
}

// runCtl runs one ctl command; out gets what a person reads.
func runCtl(ctx context.Context, cfg *config, d *deps, a ctlArgs, out io.Writer) error {
	if cfg.Topic == "" {
		return usageError{optionErr("topic", "ctl needs the topic")}
	}
	k, err := connect(ctx, cfg, d, invocation{Topic: cfg.Topic})
	if err != nil {
		return err
	}
	defer k.close()
	n, err := k.partitions(ctx, cfg, cfg.Topic)
	if err != nil {
		return err
	}
	parts, err := ctlPartitions(a, n)
	if err != nil {
		return err
	}
	switch a.verb {
	case "status":
		return ctlStatus(ctx, cfg, d, k, parts, out)
	case "seek":
		offset, err := k.seekTarget(ctx, cfg, parts[0], a)
		if err != nil {
			return err
		}
		return ctlWrite(ctx, cfg, d, parts, out, func(l lease) (int64, bool) { return offset, l.Paused })
	case "pause", "resume":
		paused := a.verb == "pause"
		return ctlWrite(ctx, cfg, d, parts, out, func(l lease) (int64, bool) { return l.Seek, paused })
	case "reset":
		return ctlReset(ctx, cfg, d, parts, out)
	}
	return badUsage("unknown command %q: want %s", a.verb, strings.Join(ctlVerbs, ", "))
}

// ctlPartitions checks -partition against the topic: status defaults to
// all, seek needs exactly one.
func ctlPartitions(a ctlArgs, n int) ([]int32, error) {
	if a.partition == "" && a.verb == "status" || a.partition == "all" && a.verb != "seek" {
		ps := make([]int32, n)
		for i := range ps {
			ps[i] = int32(i)
		}
		return ps, nil
	}
	p, err := strconv.Atoi(a.partition)
	if err != nil || p < 0 || p >= n {
		return nil, badUsage("ctl %s: -partition: want 0..%d%s, got %q", a.verb, n-1, map[bool]string{true: "", false: " or all"}[a.verb == "seek"], a.partition)
	}
	return []int32{int32(p)}, nil
}

// seekTarget is the offset a seek asks for, within the partition's log: a
// seek past its end once skipped every record produced until the owner's
// offset caught up, with a lag of 0 shown meanwhile.
func (k *kafka) seekTarget(ctx context.Context, cfg *config, p int32, a ctlArgs) (int64, error) {
	lo, _, err := k.offsetAt(ctx, cfg, p, -2)
	if err != nil {
		return 0, err
	}
	hi, _, err := k.offsetAt(ctx, cfg, p, -1)
	if err != nil {
		return 0, err
	}
	switch a.offset {
	case "start":
		return lo, nil
	case "end":
		return hi, nil
	case "":
	default:
		o, _ := strconv.ParseInt(a.offset, 10, 64) // checked by parseCtl
		if o < lo || o > hi {
			return 0, badUsage("ctl seek: -offset %d is outside partition %d's log: want %d (start) to %d (end), or start or end", o, p, lo, hi)
		}
		return o, nil
	}
	t, _ := time.Parse(time.RFC3339, a.at) // checked by parseCtl
	o, _, err := k.offsetAt(ctx, cfg, p, t.UnixMilli())
	if err != nil || o >= 0 {
		return o, err
	}
	// No record at or after t: the answer is -1, which would clear a
	// pending seek rather than make one.
	if hi == lo {
		return 0, badUsage("ctl seek: -time %s: partition %d has no records; its end is offset %d (-offset end)", a.at, p, hi)
	}
	_, ts, err := k.offsetAt(ctx, cfg, p, -3)
	if err != nil {
		return 0, err
	}
	return 0, badUsage("ctl seek: -time %s is after the newest record in partition %d (written at %s); its end is offset %d (-offset end)",
		a.at, p, time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), hi)
}

// ctlWrite sets seek and pause on each partition's record, conditional on
// the epoch, seek and pause it read: when an owner changes meanwhile, or
// applies a seek, it reads again, so it never writes back a field as it was.
func ctlWrite(ctx context.Context, cfg *config, d *deps, parts []int32, out io.Writer, want func(lease) (int64, bool)) error {
	for _, p := range parts {
		key := leaseKey(cfg.Group, cfg.Topic, p)
		var err error
		for range 5 {
			var l, got lease
			if l, err = d.store.load(ctx, key); err != nil {
				break
			}
			seek, paused := want(l)
			if got, err = d.store.control(ctx, l, seek, paused); err == nil {
				fmt.Fprintf(out, "partition %d: seek=%s paused=%v (owner %q, epoch %d): the owner obeys at its next lease check\n",
					p, offsetText(got.Seek), got.Paused, got.Owner, got.Epoch)
				break
			}
			if !errors.Is(err, errFenced) && !errors.Is(err, errTaken) {
				break
			}
		}
		if errors.Is(err, errNotFound) {
			return fmt.Errorf("partition %d: no lease yet (key %s): run baton on it once first", p, key)
		}
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
	}
	return nil
}

// ctlReset repairs each record that holds a tick after the clock plus the
// skew allowance (the rule that refuses such ticks, and that status marks
// FUTURE by): it clears the ticks and keeps the rest. It never releases, so
// an operator whose clock lags cannot cut off a live owner: a live owner
// goes on and hands over to the next real tick; a dead one's lease expires.
func ctlReset(ctx context.Context, cfg *config, d *deps, parts []int32, out io.Writer) error {
	for _, p := range parts {
		key := leaseKey(cfg.Group, cfg.Topic, p)
		l, err := d.store.load(ctx, key)
		now := d.now()
		switch {
		case errors.Is(err, errNotFound):
			fmt.Fprintf(out, "partition %d: no lease record: nothing to reset\n", p)
			continue
		case err != nil:
			return fmt.Errorf("partition %d: %w", p, err)
		case !future(l.Tick, now, cfg.Skew) && !future(l.SuccessorTick, now, cfg.Skew):
			fmt.Fprintf(out, "partition %d: no tick in the future (tick %s): left alone\n", p, tickText(l.Tick, now, cfg.Skew))
			continue
		}
		if _, err := d.store.reset(ctx, l); err != nil {
			return fmt.Errorf("partition %d: reset (the record changed since it was read; run it again): %w", p, err)
		}
		next := "takes it"
		if l.State == stateRunning {
			next = "asks the owner for it, or takes it once the owner's lease ends"
		}
		fmt.Fprintf(out, "partition %d: reset: tick %s cleared, %s at offset %s; the next tick %s\n",
			p, tickText(max(l.Tick, l.SuccessorTick), now, cfg.Skew), l.State, offsetText(l.Offset), next)
	}
	return nil
}

// future is the rule for a tick from the future, as futureTick refuses one.
func future(tick int64, now time.Time, skew time.Duration) bool {
	return futureTick(tick, now, skew) != nil
}

func offsetText(o int64) string {
	if o == noOffset {
		return "-"
	}
	return strconv.FormatInt(o, 10)
}

// tickText shows a tick as the schedule time it is. One in the future is
// marked: it makes every real tick look stale to the lease.
func tickText(tick int64, now time.Time, skew time.Duration) string {
	if tick == 0 {
		return "-"
	}
	t := time.UnixMilli(tick).UTC()
	if future(tick, now, skew) {
		return t.Format(time.RFC3339) + "(FUTURE)"
	}
	return t.Format(time.RFC3339)
}

// ctlStatus prints a line a partition. START, the log's start beside the
// offset, shows how close retention is to records not read yet.
func ctlStatus(ctx context.Context, cfg *config, d *deps, k *kafka, parts []int32, out io.Writer) error {
	lo, err := k.listOffsets(ctx, cfg, cfg.Topic, parts, -2)
	if err != nil {
		return err
	}
	hw, err := k.listOffsets(ctx, cfg, cfg.Topic, parts, -1)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tTICK\tEPOCH\tSTATE\tSTART\tOFFSET\tEND\tLAG\tEXPIRES\tSEEK\tPAUSED\tSUCCESSOR\tSUCCESSOR TICK")
	now := d.now()
	found := 0
	owns := map[string]int{} // live leases by process (fleet.go)
	for _, p := range parts {
		l, err := d.store.load(ctx, leaseKey(cfg.Group, cfg.Topic, p))
		if errors.Is(err, errNotFound) {
			fmt.Fprintf(tw, "%d\t-\t-\t0\tnone\t%d\t-\t%d\t-\t-\t-\t-\t-\t-\n", p, lo[p], hw[p])
			continue
		}
		if err != nil {
			return err
		}
		found++
		if l.State == stateRunning && !l.expired(now, cfg.Skew) {
			owns[processOf(l.Owner)]++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%v\t%s\t%s\n", p, l.Owner, tickText(l.Tick, now, cfg.Skew), l.Epoch, l.State,
			lo[p], offsetText(l.Offset), hw[p], lagText(l.Offset, hw[p]), expiresText(l, now), offsetText(l.Seek), l.Paused, orDash(l.Successor), tickText(l.SuccessorTick, now, cfg.Skew))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if found > 0 {
		return processTable(out, owns)
	}
	// Nothing at all is more often a mistyped group than a pipeline that
	// never ran.
	_, err = fmt.Fprintf(out, "no lease record for topic %q in group %q: check -group (BATON_GROUP) names the group baton runs with (default %q); "+
		"a partition gets its record when baton first runs it\n", cfg.Topic, cfg.Group, defaultGroup)
	return err
}

// processTable says how many partitions each owner (a process, or a
// Lambda invocation of a group) holds a live lease for: a fleet's balance
// at a glance.
func processTable(out io.Writer, owns map[string]int) error {
	if len(owns) == 0 {
		return nil
	}
	who := slices.Sorted(maps.Keys(owns))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPROCESS\tPARTITIONS")
	for _, w := range who {
		fmt.Fprintf(tw, "%s\t%d\n", w, owns[w])
	}
	return tw.Flush()
}

// expiresText is the time left on a lease; a released one has none: the
// next owner takes it at once.
func expiresText(l lease, now time.Time) string {
	if l.State == stateReleased {
		return "-"
	}
	return time.UnixMilli(l.ExpiresAt).Sub(now).Round(time.Second).String()
}

// lagText is how far offset is behind the log's end: an offset past the
// end is no lag of 0 but a position the log may never reach (the topic
// created again, a lease restored from a backup); its owner starts again
// by -start when it takes the lease.
func lagText(offset, end int64) string {
	switch {
	case offset < 0:
		return "-"
	case offset > end:
		return "beyond end"
	}
	return strconv.FormatInt(end-offset, 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseCtl splits `ctl VERB [flags]` into the ctl's own flags and the rest,
// which are baton's usual flags. -h anywhere asks for the usage.
func parseCtl(args []string) (ctlArgs, []string, error) {
	a := ctlArgs{}
	if len(args) == 0 {
		return a, nil, badUsage("no command: want %s", strings.Join(ctlVerbs, ", "))
	}
	if isHelp(args[0]) || args[0] == "help" {
		return a, nil, flag.ErrHelp
	}
	if strings.HasPrefix(args[0], "-") {
		return a, nil, badUsage("the command comes first, before %s: want %s", args[0], strings.Join(ctlVerbs, ", "))
	}
	if !slices.Contains(ctlVerbs, args[0]) {
		return a, nil, badUsage("unknown command %q: want %s", args[0], strings.Join(ctlVerbs, ", "))
	}
	a.verb = args[0]
	var own []string
	for _, c := range ctlCommands {
		if c.verb == a.verb {
			own = append(own, c.flags...)
		}
	}
	var rest []string
	for i := 1; i < len(args); i++ {
		if isHelp(args[i]) {
			return a, nil, flag.ErrHelp
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch {
		case !strings.HasPrefix(args[i], "-"):
			rest = append(rest, args[i]) // a value of baton's flags; parseConfig judges
			continue
		case slices.Contains(own, name):
		case ctlFlagUsage[name] != "":
			return a, nil, badUsage("ctl %s takes no -%s", a.verb, name)
		default:
			rest = append(rest, args[i])
			continue
		}
		if !hasVal {
			if i+1 == len(args) {
				return a, nil, badUsage("ctl %s: -%s needs a value", a.verb, name)
			}
			i++
			val = args[i]
		}
		switch name {
		case "partition":
			a.partition = val
		case "time":
			if _, err := time.Parse(time.RFC3339, val); err != nil {
				return a, nil, badUsage("ctl seek: -time: want an RFC 3339 time like 2026-01-02T15:04:05Z, got %q", val)
			}
			a.at = val
		case "offset":
			if n, err := strconv.ParseInt(val, 10, 64); (err != nil || n < 0) && val != "start" && val != "end" {
				return a, nil, badUsage("ctl seek: -offset: want an offset of 0 or more, start or end, got %q", val)
			}
			a.offset = val
		}
	}
	switch {
	case a.verb == "seek" && a.partition == "":
		return a, nil, badUsage("ctl seek: -partition: required, one partition")
	case a.verb == "seek" && (a.offset == "") == (a.at == ""):
		return a, nil, badUsage("ctl seek: give exactly one of -offset N|start|end and -time T")
	case (a.verb == "pause" || a.verb == "resume") && a.partition == "":
		return a, nil, badUsage("ctl %s: -partition: required, a partition or all", a.verb)
	}
	return a, rest, nil
}

// isHelp is -h, -help or --help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}
