package state

import (
	"context"
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

// maxBatchItems is DynamoDB's limit on items per BatchWriteItem.
const maxBatchItems = 25

// PutInterruptions records (or overwrites) many interruptions with
// BatchWriteItem: in a mass reclaim, one write per 25 instances.
func (s *Store) PutInterruptions(ctx context.Context, ins []*Interruption) error {
	var reqs []types.WriteRequest
	for _, in := range ins {
		av, err := attributevalue.MarshalMap(interruptionItem{
			PK: instancePK(in.Instance), SK: "INTERRUPTION", ExpiresAt: s.now().Add(interruptionTTL).Unix(), Interruption: *in,
		})
		if err != nil {
			return fmt.Errorf("encode interruption of %s: %w", in.Instance, err)
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: av}})
	}
	for len(reqs) > 0 {
		n := min(len(reqs), maxBatchItems)
		if err := s.batchWrite(ctx, reqs[:n]); err != nil {
			return err
		}
		reqs = reqs[n:]
	}
	return nil
}

// batchWrite writes one batch, retrying what DynamoDB left unprocessed
// (throttling shows up there, not as an error).
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	delay := 50 * time.Millisecond
	for attempt := 0; len(reqs) > 0; attempt++ {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{s.table: reqs}})
		if err != nil {
			return fmt.Errorf("record interruptions: %w", err)
		}
		reqs = out.UnprocessedItems[s.table]
		if len(reqs) == 0 {
			return nil
		}
		if attempt == 8 {
			return fmt.Errorf("record interruptions: %d items still unprocessed after %d attempts", len(reqs), attempt+1)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
	return nil
}
