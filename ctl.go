// ctl.go holds the operator's commands, `baton ctl status|seek|pause|resume`:
// they act through the lease record, so a running owner obeys within one
// lease check, and each write is conditional like any other.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const ctlUsage = `usage: baton ctl status|seek|pause|resume [flags]
  status                         every partition: owner, epoch, offset, lag, expiry
  seek   -partition P -offset N  read partition P from offset N next
  seek   -partition P -time T    ... from the first record at or after T (RFC 3339)
  pause  -partition P|all        stop reading (the owner keeps the lease and commits)
  resume -partition P|all        read again from where it stopped
The usual flags name the topic, group, brokers and lease store (baton -h).`

// ctlArgs are the ctl command's own flags.
type ctlArgs struct {
	verb      string
	partition string
	offset    int64
	at        string
}

// runCtl runs one ctl command; out gets what a person reads.
func runCtl(ctx context.Context, cfg *config, d *deps, a ctlArgs, out io.Writer) error {
	if cfg.Topic == "" {
		return optionErr("topic", "ctl needs the topic")
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
		offset := a.offset
		if a.at != "" {
			if offset, err = k.offsetAt(ctx, cfg, cfg.Topic, parts[0], a.at); err != nil {
				return err
			}
		}
		return ctlWrite(ctx, cfg, d, parts, out, func(l lease) (int64, bool) { return offset, l.Paused })
	case "pause", "resume":
		paused := a.verb == "pause"
		return ctlWrite(ctx, cfg, d, parts, out, func(l lease) (int64, bool) { return l.Seek, paused })
	}
	return fmt.Errorf("ctl: unknown command %q\n%s", a.verb, ctlUsage)
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
		return nil, fmt.Errorf("ctl %s: -partition: want 0..%d%s, got %q", a.verb, n-1, map[bool]string{true: "", false: " or all"}[a.verb == "seek"], a.partition)
	}
	if a.verb == "seek" && (a.offset < 0) == (a.at == "") {
		return nil, errors.New("ctl seek: give exactly one of -offset N (0 or more) and -time T")
	}
	return []int32{int32(p)}, nil
}

// ctlWrite sets seek and pause on each partition's record, conditional on
// the epoch it read: when an owner changes meanwhile, it reads again.
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
			if !errors.Is(err, errFenced) {
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

func offsetText(o int64) string {
	if o == noOffset {
		return "-"
	}
	return strconv.FormatInt(o, 10)
}

// ctlStatus prints a line a partition.
func ctlStatus(ctx context.Context, cfg *config, d *deps, k *kafka, parts []int32, out io.Writer) error {
	hw, err := k.listOffsets(ctx, cfg, cfg.Topic, parts, -1)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tEPOCH\tSTATE\tOFFSET\tEND\tLAG\tEXPIRES\tSEEK\tPAUSED\tSUCCESSOR")
	now := d.now()
	for _, p := range parts {
		l, err := d.store.load(ctx, leaseKey(cfg.Group, cfg.Topic, p))
		if errors.Is(err, errNotFound) {
			fmt.Fprintf(tw, "%d\t-\t0\tnone\t-\t%d\t-\t-\t-\t-\t-\n", p, hw[p])
			continue
		}
		if err != nil {
			return err
		}
		lag := "-"
		if l.Offset >= 0 {
			lag = strconv.FormatInt(max(0, hw[p]-l.Offset), 10)
		}
		expires := time.UnixMilli(l.ExpiresAt).Sub(now).Round(time.Second).String()
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%v\t%s\n", p, l.Owner, l.Epoch, l.State,
			offsetText(l.Offset), hw[p], lag, expires, offsetText(l.Seek), l.Paused, orDash(l.Successor))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// offsetAt finds the first offset at or after an RFC 3339 time.
func (k *kafka) offsetAt(ctx context.Context, cfg *config, topic string, p int32, at string) (int64, error) {
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return 0, fmt.Errorf("ctl seek: -time: want an RFC 3339 time like 2026-01-02T15:04:05Z, got %q", at)
	}
	o, err := k.listOffsets(ctx, cfg, topic, []int32{p}, t.UnixMilli())
	return o[p], err
}

// listOffsets asks the partitions' leaders for an offset by timestamp
// (-1: the end of the log).
func (k *kafka) listOffsets(ctx context.Context, cfg *config, topic string, parts []int32, ts int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	lctx, cancel := context.WithTimeout(ctx, cfg.KafkaTimeout)
	defer cancel()
	offsets := map[int32]int64{}
	for _, sh := range k.cl.RequestSharded(lctx, req) {
		if sh.Err != nil {
			return nil, fmt.Errorf("kafka %v: list offsets: %w", cfg.Brokers, sh.Err)
		}
		for _, t := range sh.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("kafka topic %q partition %d: list offsets: %w", topic, p.Partition, err)
				}
				offsets[p.Partition] = p.Offset
			}
		}
	}
	return offsets, nil
}

// parseCtl splits `ctl VERB [flags]` into the ctl's own flags and the rest,
// which are baton's usual flags.
func parseCtl(args []string) (ctlArgs, []string, error) {
	a := ctlArgs{offset: -1}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return a, nil, errors.New(ctlUsage)
	}
	a.verb = args[0]
	var rest []string
	for i := 1; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		switch name {
		case "partition", "offset", "time":
		default:
			rest = append(rest, args[i])
			continue
		}
		if !hasVal {
			if i+1 == len(args) {
				return a, nil, fmt.Errorf("ctl: -%s needs a value", name)
			}
			i++
			val = args[i]
		}
		switch name {
		case "partition":
			a.partition = val
		case "time":
			a.at = val
		case "offset":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return a, nil, fmt.Errorf("ctl: -offset: want an offset of 0 or more, got %q", val)
			}
			a.offset = n
		}
	}
	return a, rest, nil
}
