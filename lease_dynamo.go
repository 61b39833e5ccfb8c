//go:build !redis

// lease_dynamo.go holds the DynamoDB lease store: one item per key, every
// write an UpdateItem conditional on the epoch (and owner) read.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const storeName = "dynamodb"

// Attribute names of a lease item; "key" is the partition key. Several are
// DynamoDB reserved words, so expressions always name them through #names.
const (
	attrKey           = "key"
	attrOwner         = "owner"
	attrTick          = "tick"
	attrEpoch         = "epoch"
	attrOffset        = "offset"
	attrState         = "state"
	attrSuccessor     = "successor"       // absent when nobody asked
	attrSuccessorTick = "successor_tick"  // absent when nobody asked
	attrSuccessorTo   = "successor_until" // absent when nobody asked (or asked before asks could lapse)
	attrExpiresAt     = "expires_at"
	attrSeek          = "seek"       // absent when no seek is asked (and on older records)
	attrPaused        = "paused"     // absent on records older than baton ctl
	attrGeneration    = "generation" // of the item key+generationSuffix only
)

const (
	// dynamoAttempts caps the SDK's retries so that an unreachable endpoint
	// fails within the store timeout rather than after its own backoff.
	dynamoAttempts = 3
	// tableWait bounds -create-table's wait for a new table to turn ACTIVE.
	tableWait = 2 * time.Minute
)

// dynamoAPI is the part of the DynamoDB client the store uses, so a test can
// put a fault in front of it.
type dynamoAPI interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// dynamoStore is the DynamoDB implementation of store.
//
// baton never deletes an item, but a person, a script or a restore may; a
// record created again must not hand out an epoch an owner held before.
// The item key+generationSuffix counts the record's creations, and the
// epochs of creation g start at (g-1)<<32 + 1: 1 for the first.
type dynamoStore struct {
	db      dynamoAPI
	table   string
	where   string // "at <endpoint>" or "in region <r>", for error messages
	timeout time.Duration
	local   bool // an endpoint override: DynamoDB Local, not an AWS account
}

var _ store = (*dynamoStore)(nil)

// newStore opens the DynamoDB store; the SDK finds the endpoint, including
// AWS_ENDPOINT_URL_DYNAMODB.
func newStore(ctx context.Context, cfg config) (store, error) {
	s, err := openDynamo(ctx, cfg, "")
	if err != nil {
		return nil, err
	}
	return settled{s}, nil
}

// openDynamo opens the store at endpoint, or where the SDK's configuration
// says when endpoint is "".
func openDynamo(ctx context.Context, cfg config, endpoint string, opts ...awsOption) (*dynamoStore, error) {
	if cfg.LeaseTable == "" {
		return nil, errors.New("dynamodb: no lease table given (-lease-table or BATON_LEASE_TABLE)")
	}
	awsCfg, err := loadAWS(ctx, "", "DYNAMODB", opts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("dynamodb: no AWS region configured (set AWS_REGION)")
	}
	s := &dynamoStore{table: cfg.LeaseTable, where: "in region " + awsCfg.Region, timeout: cfg.StoreTimeout}
	if s.timeout <= 0 {
		s.timeout = defaultStoreTimeout
	}
	s.db = dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		o.RetryMaxAttempts = dynamoAttempts
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if o.BaseEndpoint != nil { // set here or by AWS_ENDPOINT_URL(_DYNAMODB)
			s.where = "at " + *o.BaseEndpoint
			s.local = true
			// DynamoDB Local's error responses fail the CRC32 check, and
			// the SDK would log a warning on every failed condition.
			o.DisableValidateResponseChecksum = true
		}
	})
	if cfg.CreateTable {
		if err := s.createTable(ctx, cfg.storeLog); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// createTable creates the table when it is missing and waits until it is
// ACTIVE. An existing table needs only DescribeTable permission. A table
// created in an AWS account is billed and outlives the process, so that is
// said at WARN, with its ARN and how to delete it.
func (s *dynamoStore) createTable(ctx context.Context, log *slog.Logger) error {
	fail := func(err error) error { return fmt.Errorf("dynamodb table %q %s: create: %w", s.table, s.where, err) }
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := s.db.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: &s.table})
	var missing *types.ResourceNotFoundException
	switch {
	case err == nil && out.Table.TableStatus == types.TableStatusActive:
		return nil
	case errors.As(err, &missing):
		var made *dynamodb.CreateTableOutput
		made, err = s.db.CreateTable(cctx, &dynamodb.CreateTableInput{
			TableName:            &s.table,
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrKey), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrKey), KeyType: types.KeyTypeHash}},
		})
		var inUse *types.ResourceInUseException // another process created it first
		if err != nil && !errors.As(err, &inUse) {
			return fail(err)
		}
		if err == nil {
			s.sayCreated(log, made.TableDescription)
		}
	case err != nil:
		return fail(err)
	}
	w := dynamodb.NewTableExistsWaiter(s.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Second, 5*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: &s.table}, tableWait); err != nil {
		return fail(err)
	}
	return nil
}

// sayCreated logs the table just created: INFO at a local endpoint, WARN in
// an AWS account.
func (s *dynamoStore) sayCreated(log *slog.Logger, t *types.TableDescription) {
	if log == nil {
		return
	}
	arn := ""
	if t != nil {
		arn = aws.ToString(t.TableArn)
	}
	if s.local {
		log.Info("created the lease table", "table", s.table, "where", s.where, "arn", arn)
		return
	}
	log.Warn("created the lease table in your AWS account (-create-table): on-demand billing, kept until you delete it; for a local store set AWS_ENDPOINT_URL_DYNAMODB (./bootstrap.sh local)",
		"table", s.table, "where", s.where, "arn", arn,
		"delete_with", "aws dynamodb delete-table --table-name "+s.table)
}

func (s *dynamoStore) load(ctx context.Context, key string) (lease, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            map[string]types.AttributeValue{attrKey: str(key)},
		ConsistentRead: aws.Bool(true), // a write just made by another invocation must show
	})
	if err != nil {
		return lease{}, s.fail(key, "load", err, nil)
	}
	if len(out.Item) == 0 {
		return lease{}, fmt.Errorf("dynamodb lease %s: %w", key, errNotFound)
	}
	l, err := fromItem(key, out.Item)
	if err != nil {
		return lease{}, fmt.Errorf("dynamodb lease %s: load: %w", key, err)
	}
	return l, nil
}

func (s *dynamoStore) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	if seen.Epoch == 0 {
		return s.create(ctx, key, c, exp)
	}
	e := newExpr()
	// The expiry as read: a renewal since the read means the owner the
	// taker judged dead is alive.
	cond := e.eq(attrEpoch, num(seen.Epoch)) + " AND " + e.eq(attrExpiresAt, num(seen.ExpiresAt)) + " AND " + e.tickFree(c)
	update := e.newOwner(e.eq(attrOwner, str(c.Owner)), e.eq(attrTick, num(c.Tick)), e.eq(attrEpoch, num(seen.Epoch+1)),
		e.eq(attrState, str(stateRunning)), e.eq(attrExpiresAt, num(exp)))
	return s.update(ctx, key, "take", e, cond, update, func(cur lease, exists bool) error {
		return takeVerdict(cur, exists, seen, c)
	})
}

// generationSuffix names the item that counts a record's creations; a key
// ends in a partition number, so no record's key ends so.
const generationSuffix = "#generation"

// create is take of a missing record. The record and the count of its
// creations are written in one transaction, and the epochs of creation g
// start at (g-1)<<32 + 1 (1 for the first): a record deleted by a person,
// a script or a restore, and created again, never hands out an epoch an
// owner held before.
func (s *dynamoStore) create(ctx context.Context, key string, c claim, exp int64) (lease, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	gen, err := s.generation(ctx, key)
	if err != nil {
		return lease{}, err
	}
	l := lease{Key: key, Owner: c.Owner, Tick: c.Tick, Epoch: gen<<32 + 1, Offset: noOffset, State: stateRunning, ExpiresAt: exp, Seek: noOffset}
	e := newExpr()
	update := "SET " + strings.Join([]string{e.eq(attrOwner, str(l.Owner)), e.eq(attrTick, num(l.Tick)), e.eq(attrEpoch, num(l.Epoch)),
		e.eq(attrState, str(l.State)), e.eq(attrExpiresAt, num(l.ExpiresAt)), e.eq(attrOffset, num(l.Offset))}, ", ")
	g := newExpr()
	counted := "attribute_not_exists(" + g.name(attrGeneration) + ")"
	if gen > 0 {
		counted = g.eq(attrGeneration, num(gen))
	}
	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: &types.Update{TableName: &s.table, Key: map[string]types.AttributeValue{attrKey: str(key)},
			ConditionExpression: aws.String("attribute_not_exists(" + e.name(attrKey) + ")"), UpdateExpression: &update,
			ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}},
		{Update: &types.Update{TableName: &s.table, Key: map[string]types.AttributeValue{attrKey: str(key + generationSuffix)},
			ConditionExpression: &counted, UpdateExpression: aws.String("SET " + g.eq(attrGeneration, num(gen+1))),
			ExpressionAttributeNames: g.names, ExpressionAttributeValues: g.values}},
	}})
	var canceled *types.TransactionCanceledException
	switch {
	case errors.As(err, &canceled) && len(canceled.CancellationReasons) == 2 && aws.ToString(canceled.CancellationReasons[0].Code) == "ConditionalCheckFailed":
		err = verdict(key, canceled.CancellationReasons[0].Item, func(cur lease, exists bool) error {
			return takeVerdict(cur, exists, lease{}, c)
		})
		return lease{}, fmt.Errorf("dynamodb lease %s: take: %w", key, err)
	case errors.As(err, &canceled):
		// Another invocation counted a creation meanwhile: it made the record.
		return lease{}, fmt.Errorf("dynamodb lease %s: take: created meanwhile: %w", key, errTaken)
	case err != nil:
		return lease{}, s.fail(key, "take", err, nil)
	}
	return l, nil
}

// generation is how many times key's record was created.
func (s *dynamoStore) generation(ctx context.Context, key string) (int64, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            map[string]types.AttributeValue{attrKey: str(key + generationSuffix)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, s.fail(key, "take", err, nil)
	}
	p := itemParser{item: out.Item}
	g := p.num(attrGeneration, false)
	if p.err != nil {
		return 0, fmt.Errorf("dynamodb lease %s: take: %w", key, p.err)
	}
	return g, nil
}

func (s *dynamoStore) ask(ctx context.Context, key string, epoch int64, c claim, until int64) error {
	e := newExpr()
	cond := e.eq(attrEpoch, num(epoch)) + " AND " + e.tickFree(c)
	update := "SET " + e.eq(attrSuccessor, str(c.Owner)) + ", " + e.eq(attrSuccessorTick, num(c.Tick)) + ", " + e.eq(attrSuccessorTo, num(until))
	_, err := s.update(ctx, key, "ask", e, cond, update, func(cur lease, exists bool) error {
		return askVerdict(cur, exists, epoch, c)
	})
	return err
}

func (s *dynamoStore) handOver(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	e := newExpr()
	cond := e.eq(attrEpoch, num(l.Epoch)) + " AND " + e.eq(attrOwner, str(l.Owner)) + " AND " + e.eq(attrSuccessor, str(l.Successor))
	if l.Successor == "" {
		// Nobody to hand over to: the write must fail, and the check says why.
		cond += " AND attribute_not_exists(" + e.name(attrKey) + ")"
	}
	successorTick := e.name(attrTick) + " = " + e.name(attrSuccessorTick) // as the record has it
	update := e.newOwner(e.eq(attrOwner, str(l.Successor)), successorTick,
		e.eq(attrEpoch, num(l.Epoch+1)), e.eq(attrOffset, num(offset)), e.eq(attrState, str(stateRunning)),
		e.eq(attrExpiresAt, num(exp)))
	return s.update(ctx, l.Key, "hand over", e, cond, update, func(cur lease, exists bool) error {
		if !exists || cur.Epoch != l.Epoch || cur.Owner != l.Owner {
			return errFenced
		}
		if cur.Successor != l.Successor || l.Successor == "" {
			return errTaken
		}
		return nil
	})
}

func (s *dynamoStore) commit(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	e := newExpr()
	cond := e.eq(attrEpoch, num(l.Epoch)) + " AND " + e.eq(attrOwner, str(l.Owner)) + " AND " + e.eq(attrState, str(stateRunning))
	update := "SET " + e.eq(attrOffset, num(offset)) + ", " + e.eq(attrExpiresAt, num(exp))
	if l.Seek != noOffset {
		// The owner applies the seek it saw: only if no newer one came,
		// and it is cleared in the same write.
		cond += " AND " + e.eq(attrSeek, num(l.Seek))
		update += " REMOVE " + e.name(attrSeek)
	}
	return s.update(ctx, l.Key, "commit", e, cond, update, func(cur lease, exists bool) error {
		if !exists || cur.Epoch != l.Epoch || cur.Owner != l.Owner || cur.State != stateRunning {
			return errFenced
		}
		if l.Seek != noOffset && cur.Seek != l.Seek {
			return fmt.Errorf("seek changed: %w", errTaken)
		}
		return nil
	})
}

func (s *dynamoStore) release(ctx context.Context, l lease, offset int64) error {
	e := newExpr()
	cond := e.eq(attrEpoch, num(l.Epoch)) + " AND " + e.eq(attrOwner, str(l.Owner))
	update := "SET " + e.eq(attrOffset, num(offset)) + ", " + e.eq(attrState, str(stateReleased))
	_, err := s.update(ctx, l.Key, "release", e, cond, update, fencedVerdict)
	return err
}

// control sets the operator's seek and pause, if both are still as the
// operator read them. No seek is stored as no seek attribute, as on a
// record written before there were seeks; no pause may be no attribute too.
func (s *dynamoStore) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	e := newExpr()
	cond := e.held(l) + " AND " + e.asRead(attrSeek, num(l.Seek), l.Seek == noOffset) +
		" AND " + e.asRead(attrPaused, &types.AttributeValueMemberBOOL{Value: l.Paused}, !l.Paused)
	update := "SET " + e.eq(attrPaused, &types.AttributeValueMemberBOOL{Value: paused})
	if seek == noOffset {
		update += " REMOVE " + e.name(attrSeek)
	} else {
		update += ", " + e.eq(attrSeek, num(seek))
	}
	return s.update(ctx, l.Key, "control", e, cond, update, func(cur lease, exists bool) error {
		return controlVerdict(cur, exists, l)
	})
}

func (s *dynamoStore) reset(ctx context.Context, l lease) (lease, error) {
	e := newExpr()
	update := e.newOwner(e.eq(attrTick, num(0)))
	return s.update(ctx, l.Key, "reset", e, e.held(l), update, func(cur lease, exists bool) error {
		return heldVerdict(cur, exists, l)
	})
}

// held is "the record exists and l.Owner holds l.Epoch".
func (e *expr) held(l lease) string {
	return "attribute_exists(" + e.name(attrKey) + ") AND " + e.eq(attrEpoch, num(l.Epoch)) + " AND " + e.eq(attrOwner, str(l.Owner))
}

// asRead is an optional attribute as it was read, v; when v is its
// "none" (no seek, not paused), an absent attribute reads as v too.
func (e *expr) asRead(attr string, v types.AttributeValue, none bool) string {
	if !none {
		return e.eq(attr, v)
	}
	return "(attribute_not_exists(" + e.name(attr) + ") OR " + e.eq(attr, v) + ")"
}

// withdraw takes back c's ask in one write. A failed condition is no
// refusal: the successor is somebody else (or nobody), nothing changed, and
// the record DynamoDB returns with the failure is the answer.
func (s *dynamoStore) withdraw(ctx context.Context, key string, c claim) (lease, error) {
	e := newExpr()
	cond := "attribute_exists(" + e.name(attrKey) + ") AND " + e.eq(attrSuccessor, str(c.Owner))
	update := "REMOVE " + e.name(attrSuccessor) + ", " + e.name(attrSuccessorTick) + ", " + e.name(attrSuccessorTo)
	var old lease
	l, err := s.update(ctx, key, "withdraw", e, cond, update, func(cur lease, exists bool) error {
		if !exists {
			return errNotFound
		}
		old = cur
		return errUnchanged
	})
	if errors.Is(err, errUnchanged) {
		return old, nil
	}
	return l, err
}

// errUnchanged is withdraw's check saying the record stands as it was; it
// never leaves withdraw.
var errUnchanged = errors.New("nothing to withdraw")

// fencedVerdict is release's: its condition is only that the owner still
// holds its epoch, so any failure means it was fenced.
func fencedVerdict(lease, bool) error { return errFenced }

// update runs one conditional UpdateItem and returns the item as written.
// check tells, from the item as it was when the condition failed, which of
// the package's errors the failure is.
func (s *dynamoStore) update(ctx context.Context, key, step string, e *expr, cond, update string, check func(cur lease, exists bool) error) (lease, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           &s.table,
		Key:                                 map[string]types.AttributeValue{attrKey: str(key)},
		ConditionExpression:                 &cond,
		UpdateExpression:                    &update,
		ExpressionAttributeNames:            e.names,
		ExpressionAttributeValues:           e.values,
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err != nil {
		return lease{}, s.fail(key, step, err, check)
	}
	l, err := fromItem(key, out.Attributes)
	if err != nil {
		return lease{}, fmt.Errorf("dynamodb lease %s: %s: wrote, but %w", key, step, err)
	}
	return l, nil
}

// fail turns an SDK error into the package's: a failed condition becomes the
// verdict check gives for the old item DynamoDB returned with it (no second
// read, which could see a later state); a missing table and an unreachable
// endpoint are named.
func (s *dynamoStore) fail(key, step string, err error, check func(cur lease, exists bool) error) error {
	var (
		failed  *types.ConditionalCheckFailedException
		missing *types.ResourceNotFoundException
		conn    *net.OpError
	)
	switch {
	case errors.As(err, &failed) && check != nil:
		err = verdict(key, failed.Item, check)
	case errors.As(err, &missing):
		err = configError{fmt.Errorf("dynamodb table %q not found %s (create it, or run with -create-table)", s.table, s.where)}
	case errors.As(err, &conn):
		err = fmt.Errorf("no connection to dynamodb %s (table %q): %w", s.where, s.table, conn)
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no answer in time from dynamodb %s (table %q): %w", s.where, s.table, err)
	default:
		err = fmt.Errorf("dynamodb %s (table %q): %w", s.where, s.table, err)
	}
	return fmt.Errorf("dynamodb lease %s: %s: %w", key, step, err)
}

// verdict is check's answer for the item as it was when a condition failed.
func verdict(key string, item map[string]types.AttributeValue, check func(cur lease, exists bool) error) error {
	var cur lease
	if len(item) > 0 {
		var err error
		if cur, err = fromItem(key, item); err != nil {
			return err
		}
	}
	if err := check(cur, len(item) > 0); err != nil {
		return err
	}
	return fmt.Errorf("condition failed on a record that meets it (a bug in baton): %+v", cur)
}

// fromItem parses an item strictly: a missing or mistyped attribute is an
// error naming it. Only the successor attributes and the operator's seek
// and pause are optional; records written before seek and pause existed
// read as no seek, not paused.
func fromItem(key string, item map[string]types.AttributeValue) (lease, error) {
	p := itemParser{item: item}
	l := lease{
		Key:            key,
		Owner:          p.str(attrOwner, true),
		Tick:           p.num(attrTick, true),
		Epoch:          p.num(attrEpoch, true),
		Offset:         p.num(attrOffset, true),
		State:          p.str(attrState, true),
		Successor:      p.str(attrSuccessor, false),
		SuccessorTick:  p.num(attrSuccessorTick, false),
		SuccessorUntil: p.num(attrSuccessorTo, false),
		ExpiresAt:      p.num(attrExpiresAt, true),
		Seek:           noOffset,
		Paused:         p.bool(attrPaused, false),
	}
	if _, ok := item[attrSeek]; ok {
		l.Seek = p.num(attrSeek, true)
	}
	return l, p.err
}

// itemParser reads attributes of one item and keeps the first error.
type itemParser struct {
	item map[string]types.AttributeValue
	err  error
}

func (p *itemParser) str(name string, required bool) string {
	switch v := p.item[name].(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case nil:
		if required {
			p.fault(name, "missing")
		}
	default:
		p.fault(name, "want a string, got "+typeName(v))
	}
	return ""
}

func (p *itemParser) num(name string, required bool) int64 {
	switch v := p.item[name].(type) {
	case *types.AttributeValueMemberN:
		n, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			p.fault(name, fmt.Sprintf("want an integer, got %q", v.Value))
		}
		return n
	case nil:
		if required {
			p.fault(name, "missing")
		}
	default:
		p.fault(name, "want a number, got "+typeName(v))
	}
	return 0
}

func (p *itemParser) bool(name string, required bool) bool {
	switch v := p.item[name].(type) {
	case *types.AttributeValueMemberBOOL:
		return v.Value
	case nil:
		if required {
			p.fault(name, "missing")
		}
	default:
		p.fault(name, "want a boolean, got "+typeName(v))
	}
	return false
}

func (p *itemParser) fault(name, why string) {
	if p.err == nil {
		p.err = fmt.Errorf("field %q: %s", name, why)
	}
}

// typeName is DynamoDB's name for an attribute's type: S, N, BOOL, M, ...
func typeName(v types.AttributeValue) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*types.AttributeValueMember")
}

func str(s string) types.AttributeValue {
	return &types.AttributeValueMemberS{Value: s}
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// expr collects the #names and :values of one request's expressions;
// DynamoDB refuses any that an expression does not use.
type expr struct {
	names  map[string]string
	values map[string]types.AttributeValue
}

func newExpr() *expr {
	return &expr{names: map[string]string{}, values: map[string]types.AttributeValue{}}
}

func (e *expr) name(attr string) string {
	e.names["#"+attr] = attr
	return "#" + attr
}

func (e *expr) value(v types.AttributeValue) string {
	p := ":v" + strconv.Itoa(len(e.values))
	e.values[p] = v
	return p
}

// eq is "attr = value": a condition, or an assignment in SET.
func (e *expr) eq(attr string, v types.AttributeValue) string {
	return e.name(attr) + " = " + e.value(v)
}

// newOwner is the update of a write that sets the owner: the assignments,
// and the successor removed, since nobody is asking the new owner yet.
func (e *expr) newOwner(assign ...string) string {
	return "SET " + strings.Join(assign, ", ") + " REMOVE " + e.name(attrSuccessor) + ", " + e.name(attrSuccessorTick) + ", " + e.name(attrSuccessorTo)
}

// tickFree is tickVerdict as a condition: c is the owner or the successor; or
// the owner's tick is older than c's, or equal to it with the owner dead;
// and the ask is absent, dead, or older than c's. A zero tick is no tick,
// so two zeros are not duplicates. A missing attribute fails every
// comparison, so an ask without an end reads as dead.
func (e *expr) tickFree(c claim) string {
	tick, cutoff := e.value(num(c.Tick)), e.value(num(c.Cutoff))
	owner := e.name(attrTick) + " < " + tick
	if c.Tick == 0 {
		owner = e.name(attrTick) + " <= " + tick
	} else {
		ownerLive := e.eq(attrState, str(stateRunning)) + " AND " + e.name(attrExpiresAt) + " >= " + cutoff
		owner = "(" + owner + " OR (" + e.name(attrTick) + " = " + tick + " AND NOT (" + ownerLive + ")))"
	}
	op := " < "
	if c.Tick == 0 {
		op = " <= "
	}
	ask := "(attribute_not_exists(" + e.name(attrSuccessorTick) + ") OR NOT (" + e.name(attrSuccessorTo) + " >= " + cutoff +
		") OR " + e.name(attrSuccessorTick) + op + tick + ")"
	me := e.value(str(c.Owner))
	mine := e.name(attrOwner) + " = " + me
	if c.Owner != "" {
		mine += " OR " + e.name(attrSuccessor) + " = " + me
	}
	return "(" + mine + " OR (" + owner + " AND " + ask + "))"
}
