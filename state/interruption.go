package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Interruption is what the controller learned from one instance's
// interruption warning. It de-duplicates redelivered and repeated warnings
// (an instance is interrupted once in its life) and maps later events about
// the instance to the records they affect. It expires with the table's TTL.
type Interruption struct {
	Instance string
	Node     string
	Event    string
	Time     time.Time
	Jobs     []Key
}

// interruptionTTL keeps items long enough to outlast any redelivery.
const interruptionTTL = 7 * 24 * time.Hour

type interruptionItem struct {
	PK, SK    string
	ExpiresAt int64
	Interruption
}

func instancePK(instance string) string { return "INSTANCE#" + instance }

// PutInterruption records (or overwrites) an instance's interruption.
func (s *Store) PutInterruption(ctx context.Context, in *Interruption) error {
	av, err := attributevalue.MarshalMap(interruptionItem{
		PK: instancePK(in.Instance), SK: "INTERRUPTION",
		ExpiresAt:    s.now().Add(interruptionTTL).Unix(),
		Interruption: *in,
	})
	if err != nil {
		return fmt.Errorf("encode interruption of %s: %w", in.Instance, err)
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: av}); err != nil {
		return fmt.Errorf("record interruption of %s: %w", in.Instance, err)
	}
	return nil
}

// GetInterruption returns an instance's interruption, or ErrNotFound.
func (s *Store) GetInterruption(ctx context.Context, instance string) (*Interruption, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            keyOf(instancePK(instance), "INTERRUPTION"),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get interruption of %s: %w", instance, err)
	}
	if out.Item == nil {
		return nil, ErrNotFound
	}
	var it interruptionItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return nil, fmt.Errorf("decode interruption of %s: %w", instance, err)
	}
	return &it.Interruption, nil
}

// ExpiryOf returns the TTL attribute of an interruption item, for tests:
// no emulator expires items, so tests check the attribute instead.
func (s *Store) ExpiryOf(ctx context.Context, instance string) (time.Time, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: keyOf(instancePK(instance), "INTERRUPTION")})
	if err != nil || out.Item == nil {
		return time.Time{}, fmt.Errorf("get interruption of %s: %v", instance, err)
	}
	var it interruptionItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return time.Time{}, err
	}
	return time.Unix(it.ExpiresAt, 0), nil
}

// maxTransactItems is DynamoDB's limit on items per TransactWriteItems.
const maxTransactItems = 100

// CreateAll records an interruption and the records of its jobs in one
// transaction (more than 99 jobs take more): in a mass reclaim that is one
// write per interrupted node instead of one per item. Every item must be
// new; if any exists (a redelivered warning, a second node of a known
// job) nothing is written and ErrExists says to go item by item.
func (s *Store) CreateAll(ctx context.Context, in *Interruption, recs []*Record) error {
	iav, err := attributevalue.MarshalMap(interruptionItem{
		PK: instancePK(in.Instance), SK: "INTERRUPTION", ExpiresAt: s.now().Add(interruptionTTL).Unix(), Interruption: *in,
	})
	if err != nil {
		return fmt.Errorf("encode interruption of %s: %w", in.Instance, err)
	}
	items := []types.TransactWriteItem{{Put: &types.Put{TableName: aws.String(s.table), Item: iav, ConditionExpression: aws.String("attribute_not_exists(PK)")}}}
	for _, r := range recs {
		r.Version = 1
		av, err := toItem(r)
		if err != nil {
			return err
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.table), Item: av, ConditionExpression: aws.String("attribute_not_exists(PK)")}})
	}
	for len(items) > 0 {
		n := min(len(items), maxTransactItems)
		_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items[:n]})
		var canceled *types.TransactionCanceledException
		if errors.As(err, &canceled) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("record interruption of %s: %w", in.Instance, err)
		}
		items = items[n:]
	}
	return nil
}
