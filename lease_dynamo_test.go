//go:build !redis

// lease_dynamo_test.go runs the conformance suite against DynamoDB Local
// (BATON_TEST_DYNAMO=http://host:port) and tests what is DynamoDB's own.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// compiledBackend is the DynamoDB backend: one table for the whole run,
// created on first use and deleted when the caller ends.
func compiledBackend(tb testing.TB) backend {
	var once sync.Once
	var table string
	var tableErr error
	tb.Cleanup(func() {
		if table != "" && tableErr == nil {
			dropTable(tb, table)
		}
	})
	shared := func(t testing.TB) *dynamoStore {
		t.Helper()
		url := needServer(t, "BATON_TEST_DYNAMO")
		once.Do(func() {
			table = fmt.Sprintf("baton-test-%d", time.Now().UnixNano())
			_, tableErr = openDynamo(context.Background(), config{LeaseTable: table, CreateTable: true}, url, testAWS()...)
		})
		if tableErr != nil {
			t.Fatal(tableErr)
		}
		return testDynamo(t, url, table)
	}
	return backend{
		name: storeName,
		open: func(t testing.TB) store { return shared(t) },
		corrupt: func(t testing.TB, key, field string, remove bool) {
			t.Helper()
			e := newExpr()
			update := "REMOVE " + e.name(field)
			if !remove {
				bad := str("x")
				switch field {
				case attrOwner, attrState, attrSuccessor:
					bad = num(7)
				case attrExpiresAt:
					bad = &types.AttributeValueMemberBOOL{Value: true}
				}
				update = "SET " + e.name(field) + " = " + e.value(bad)
			}
			in := &dynamodb.UpdateItemInput{
				TableName:                aws.String(table),
				Key:                      map[string]types.AttributeValue{attrKey: str(key)},
				UpdateExpression:         &update,
				ExpressionAttributeNames: e.names,
			}
			if len(e.values) > 0 { // DynamoDB refuses an empty map
				in.ExpressionAttributeValues = e.values
			}
			_, err := shared(t).db.UpdateItem(ctxT(t), in)
			if err != nil {
				t.Fatalf("corrupt %s of %s: %v", field, key, err)
			}
		},
		remove: func(t testing.TB, s store, key string) {
			d := s.(*dynamoStore)
			_, err := d.db.(*dynamodb.Client).DeleteItem(ctxT(t), &dynamodb.DeleteItemInput{
				TableName: &d.table, Key: map[string]types.AttributeValue{attrKey: str(key)},
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		unreachable: func(t testing.TB) (store, string) {
			const nobody = "http://127.0.0.1:1"
			return testDynamo(t, nobody, "baton-test-unreachable"), nobody
		},
		missing: func(t testing.TB) (store, string) {
			table := fmt.Sprintf("baton-test-missing-%d", time.Now().UnixNano())
			return testDynamo(t, needServer(t, "BATON_TEST_DYNAMO"), table), table
		},
	}
}

// testDynamo opens the store on an existing table (or none) at url.
func testDynamo(t testing.TB, url, table string) *dynamoStore {
	t.Helper()
	s, err := openDynamo(ctxT(t), config{LeaseTable: table}, url, testAWS()...)
	must(t, err)
	return s
}

func dropTable(t testing.TB, table string) {
	s := testDynamo(t, os.Getenv("BATON_TEST_DYNAMO"), table)
	_, err := s.db.(*dynamodb.Client).DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
	if err != nil {
		t.Errorf("delete test table %s: %v", table, err)
	}
}

func TestDynamo_create_table_is_idempotent(t *testing.T) {
	url := needServer(t, "BATON_TEST_DYNAMO")
	cfg := config{LeaseTable: fmt.Sprintf("baton-test-create-%d", time.Now().UnixNano())}
	_, err := testDynamo(t, url, cfg.LeaseTable).load(ctxT(t), "k")
	if err == nil || !errContains(err, cfg.LeaseTable, "-create-table") {
		t.Fatalf("load before the table exists: got %v, want an error naming the table and -create-table", err)
	}
	cfg.CreateTable = true
	for range 2 {
		_, err := openDynamo(ctxT(t), cfg, url, testAWS()...)
		must(t, err)
	}
	t.Cleanup(func() { dropTable(t, cfg.LeaseTable) })
	s := testDynamo(t, url, cfg.LeaseTable)
	out, err := s.db.DescribeTable(ctxT(t), &dynamodb.DescribeTableInput{TableName: &cfg.LeaseTable})
	must(t, err)
	if ks := out.Table.KeySchema; len(ks) != 1 || *ks[0].AttributeName != attrKey || ks[0].KeyType != types.KeyTypeHash {
		t.Fatalf("key schema %+v, want hash key %q only", ks, attrKey)
	}
	mustTake(t, s, "k", lease{}, claim{Owner: "a", Tick: 1})
}

// countingDB counts the reads of lease records that reach DynamoDB (a
// creation's read of the creation count is not one).
type countingDB struct {
	dynamoAPI
	gets atomic.Int32
}

func (c *countingDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if k, ok := in.Key[attrKey].(*types.AttributeValueMemberS); !ok || !strings.HasSuffix(k.Value, generationSuffix) {
		c.gets.Add(1)
	}
	return c.dynamoAPI.GetItem(ctx, in, opts...)
}

// A refused write is classified from the item DynamoDB returns with the
// failed condition, not from a second read that could see a later state.
func TestDynamo_refusal_classified_without_a_read(t *testing.T) {
	s := compiledBackend(t).open(t).(*dynamoStore)
	db := &countingDB{dynamoAPI: s.db}
	s.db = db
	key := testKey(t)
	a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
	_, err := s.take(ctxT(t), key, lease{}, claim{Owner: "b", Tick: 200}, in(time.Minute))
	wantErr(t, "take of a taken key", err, errTaken)
	_, err = s.take(ctxT(t), key, a, claim{Owner: "a2", Tick: 100}, in(time.Minute))
	wantErr(t, "take with the owner's tick", err, errDuplicate)
	wantErr(t, "ask with an older tick", s.ask(ctxT(t), key, a.Epoch, claim{Owner: "old", Tick: 99}, in(time.Minute)), errStale)
	b, err := s.take(ctxT(t), key, a, claim{Owner: "b", Tick: 200}, in(time.Minute))
	must(t, err)
	_, err = s.commit(ctxT(t), a, 5, in(time.Minute))
	wantErr(t, "commit by a fenced owner", err, errFenced)
	_, err = s.handOver(ctxT(t), a, 5, in(time.Minute))
	wantErr(t, "hand over by a fenced owner", err, errFenced)
	_, err = s.control(ctxT(t), a, 5, true)
	wantErr(t, "control under an old epoch", err, errFenced)
	_, err = s.control(ctxT(t), lease{Key: testKey(t)}, 5, true)
	wantErr(t, "control of a missing record", err, errNotFound)
	_, err = s.control(ctxT(t), b, 9, false)
	must(t, err)
	b.Seek = 8 // a seek it saw, since replaced by 9
	_, err = s.commit(ctxT(t), b, 8, in(time.Minute))
	wantErr(t, "commit applying a seek that a newer one replaced", err, errTaken)
	_, err = s.withdraw(ctxT(t), testKey(t), claim{Owner: "c", Tick: 300})
	wantErr(t, "withdraw on a missing record", err, errNotFound)
	if got, err := s.withdraw(ctxT(t), key, claim{Owner: "c", Tick: 300}); err != nil || got.Owner != "b" || got.Epoch != b.Epoch {
		t.Fatalf("withdraw by a stranger must answer with the record as it is: %+v, %v", got, err)
	}
	if n := db.gets.Load(); n != 0 {
		t.Fatalf("%d reads to classify refusals, want 0", n)
	}
}

// seek and paused are optional, for records written before baton ctl, and
// strict on type when present.
func TestDynamo_seek_and_paused_optional_and_strict(t *testing.T) {
	b := compiledBackend(t)
	s := b.open(t).(*dynamoStore)
	raw := func(key string) map[string]types.AttributeValue {
		t.Helper()
		out, err := s.db.GetItem(ctxT(t), &dynamodb.GetItemInput{
			TableName: &s.table, Key: map[string]types.AttributeValue{attrKey: str(key)}, ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	key := testKey(t)
	a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
	for _, f := range []string{attrSeek, attrPaused} {
		if item := raw(key); item[f] != nil {
			t.Fatalf("a new record has a %s attribute: %v", f, item)
		}
	}
	if a.Seek != noOffset || a.Paused {
		t.Fatalf("a record without seek and paused reads as %+v, want no seek, not paused", a)
	}
	got, err := s.control(ctxT(t), a, 42, true)
	if err != nil || got.Seek != 42 || !got.Paused {
		t.Fatalf("control: %+v, %v", got, err)
	}
	item := raw(key)
	if v, ok := item[attrSeek].(*types.AttributeValueMemberN); !ok || v.Value != "42" {
		t.Fatalf("seek stored as %#v, want N 42", item[attrSeek])
	}
	if v, ok := item[attrPaused].(*types.AttributeValueMemberBOOL); !ok || !v.Value {
		t.Fatalf("paused stored as %#v, want BOOL true", item[attrPaused])
	}
	got, err = s.commit(ctxT(t), got, 42, in(time.Minute))
	if err != nil || got.Seek != noOffset || !got.Paused {
		t.Fatalf("commit applying the seek: %+v, %v", got, err)
	}
	if _, ok := raw(key)[attrSeek]; ok {
		t.Fatalf("the applied seek is still stored: %v", raw(key))
	}
	for _, field := range []string{attrSeek, attrPaused} {
		key := testKey(t)
		mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		b.corrupt(t, key, field, false)
		_, err := s.load(ctxT(t), key)
		if err == nil || !errContains(err, key, strconv.Quote(field)) {
			t.Errorf("load of a record with %s mistyped: error %v must name key %s and field %s", field, err, key, field)
		}
	}
}

func errContains(err error, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			return false
		}
	}
	return true
}

// The DynamoDB store gives the memory store's answers: the same random steps,
// from stale and current views, with zero, negative, shared and empty
// claims, live and dead owners and asks, operators' seeks and pauses, commits applying seeks seen or
// replaced, and withdrawals by the successor or anybody else, leave the
// same records and the same verdicts.
func TestDynamo_matches_memory_store(t *testing.T) {
	d, m := compiledBackend(t).open(t), newMemStore()
	ctx := ctxT(t)
	rng := rand.New(rand.NewPCG(1, 2))
	claims := []claim{{Owner: "a", Tick: 1}, {Owner: "b", Tick: 2}, {Owner: "c", Tick: 2}, {Owner: "d", Tick: 0}, {Owner: "e", Tick: -1}, {Owner: "f", Tick: 0}, {Owner: "", Tick: 3}}
	seeks := []int64{noOffset, noOffset, 0, 7, -5}
	key := testKey(t)
	seen := []lease{{}}
	for i := range 500 {
		op, delta, n := rng.IntN(7), int64(rng.IntN(3)-1), int64(i)
		seek, paused := seeks[rng.IntN(len(seeks))], rng.IntN(2) == 0
		c, l := claims[rng.IntN(len(claims))], seen[rng.IntN(len(seen))]
		// Leases and asks end at step numbers: a cutoff around now makes
		// some of them dead.
		c.Cutoff = max(0, n-int64(rng.IntN(60)))
		until := n + int64(rng.IntN(60)-20)
		if (op == 3 || op == 4) && rng.IntN(2) == 0 {
			l = seen[len(seen)-1] // the current record, so seeks get obeyed too
		}
		l.Key = key // a view of the record before it existed too
		if op == 3 && rng.IntN(4) == 0 {
			l.Seek = seek // a commit applying a seek the record may not hold
		}
		if op == 5 && rng.IntN(2) == 0 {
			c.Owner = seen[len(seen)-1].Successor // the asker itself, or nobody's
		}
		step := func(s store) (lease, error) {
			switch op {
			case 0:
				return s.take(ctx, key, l, c, n)
			case 1:
				return lease{}, s.ask(ctx, key, l.Epoch+delta, c, until)
			case 2:
				return s.handOver(ctx, l, n, n)
			case 3:
				return s.commit(ctx, l, n, n)
			case 4:
				return s.control(ctx, l, seek, paused)
			case 5:
				return s.withdraw(ctx, key, c)
			}
			return lease{}, s.release(ctx, l, n)
		}
		want, memErr := step(m)
		got, err := step(d)
		if sentinel(err) != sentinel(memErr) || got != want {
			t.Fatalf("step %d, op %d by %+v from %+v: dynamodb gave %+v, %v; memory %+v, %v", i, op, c, l, got, err, want, memErr)
		}
		want, _ = m.load(ctx, key)
		if got, _ = d.load(ctx, key); got != want {
			t.Fatalf("step %d, op %d by %+v from %+v: dynamodb holds %+v, memory %+v", i, op, c, l, got, want)
		}
		seen = append(seen, want)
	}
}

// sentinel is the package error err is, or err itself.
func sentinel(err error) error {
	for _, e := range []error{errNotFound, errDuplicate, errStale, errTaken, errFenced} {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

// A missing table is the configuration's: no retry mends it, so process
// mode ends with its error instead of trying forever.
func TestDynamo_missing_table_is_a_configuration_error(t *testing.T) {
	s, table := compiledBackend(t).missing(t)
	_, err := s.load(ctxT(t), testKey(t))
	if !errors.As(err, new(configError)) || !strings.Contains(fmt.Sprint(err), table) || !lasting(err, 1) {
		t.Fatalf("load from a missing table: %v; want a configError naming %s", err, table)
	}
}

// TestDynamo_create_table_in_aws_account_warns_with_arn: -create-table
// against an AWS account (no endpoint override) makes a billed table that
// outlives the process, so baton says so at WARN with the table's ARN; at
// a local endpoint an INFO line; a table already there, nothing.
func TestDynamo_create_table_in_aws_account_warns_with_arn(t *testing.T) {
	url := needServer(t, "BATON_TEST_DYNAMO")
	for _, tc := range []struct {
		name  string
		local bool
		want  string
	}{{"aws account", false, "level=WARN"}, {"local endpoint", true, "level=INFO"}} {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("baton-test-warn-%d", time.Now().UnixNano())
			s := testDynamo(t, url, table)
			s.local = tc.local // DynamoDB Local standing in for an AWS account
			var buf strings.Builder
			log := slog.New(slog.NewTextHandler(&buf, nil))
			must(t, s.createTable(ctxT(t), log))
			t.Cleanup(func() { dropTable(t, table) })
			got := buf.String()
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "arn=arn:aws:dynamodb:") || !strings.Contains(got, "table="+table) {
				t.Fatalf("log after creating %s: %q, want %s naming the table and its ARN", table, got, tc.want)
			}
			if !tc.local && !strings.Contains(got, "delete-table --table-name "+table) {
				t.Errorf("WARN does not say how to delete the table: %q", got)
			}
			buf.Reset()
			must(t, s.createTable(ctxT(t), log))
			if buf.Len() != 0 {
				t.Errorf("the table existed, yet baton logged: %q", buf.String())
			}
		})
	}
}
