package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrLeaseHeld is returned by Acquire while another holder's lease runs.
var ErrLeaseHeld = errors.New("lease held by another controller")

// ErrLeaseLost is returned by Renew when the lease is no longer ours.
var ErrLeaseLost = errors.New("lease lost")

// The lease item: one per cluster, in the state table. Its Version is the
// fencing token: it grows with every new holder, and Fence on the records
// written under it keeps a deposed holder from overwriting them.
func leaseKey(cluster string) map[string]types.AttributeValue {
	return keyOf("LEASE#"+cluster, "LEASE")
}

// A Term is one holder's tenure of the cluster's lease, from Acquire until
// it is lost or released. Records written under it go through its Records
// store, which a controller can only get by taking the lease: each write
// carries the term's version as its fence, and fails on a record written
// under a later term. So a holder that was deposed while it slept (a GC
// pause, a frozen VM, a partition) and wakes up still thinking it leads
// can write nothing over its successor's records.
type Term struct {
	lease           *Store
	cluster, holder string
	version         int64
}

// Version is the term's fencing token: it grows with every new holder.
func (t *Term) Version() int64 { return t.version }

// Records is the record store of this term: the table's, fenced with the
// term's version.
func (t *Term) Records() *Store {
	fenced := *t.lease
	fenced.fence = t.version
	return &fenced
}

// Renew extends the term by ttl from now; ErrLeaseLost once another holder
// has the lease.
func (t *Term) Renew(ctx context.Context, ttl time.Duration) error {
	return t.lease.renew(ctx, t.cluster, t.holder, t.version, ttl)
}

// Release ends the term at once, so a standby need not wait for it to
// expire. A lease that is no longer ours is left alone.
func (t *Term) Release(ctx context.Context) error {
	return t.lease.release(ctx, t.cluster, t.holder, t.version)
}

// Acquire takes the cluster's lease for ttl if nobody holds it, its holder
// let it expire, or holder holds it already, and returns the new term.
func (s *Store) Acquire(ctx context.Context, cluster, holder string, ttl time.Duration) (*Term, error) {
	version, err := s.acquire(ctx, cluster, holder, ttl)
	if err != nil {
		return nil, err
	}
	unfenced := *s
	unfenced.fence = 0
	return &Term{lease: &unfenced, cluster: cluster, holder: holder, version: version}, nil
}

func (s *Store) acquire(ctx context.Context, cluster, holder string, ttl time.Duration) (int64, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: leaseKey(cluster), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return 0, fmt.Errorf("read the lease: %w", err)
	}
	now := s.now()
	cond := "attribute_not_exists(PK)"
	values := map[string]types.AttributeValue{}
	var version int64
	if out.Item != nil {
		version, _ = strconv.ParseInt(num(out.Item["Version"]), 10, 64)
		until, _ := strconv.ParseInt(num(out.Item["Until"]), 10, 64)
		if str(out.Item["Holder"]) != holder && now.UnixMilli() <= until {
			return 0, fmt.Errorf("%w: %s until %s", ErrLeaseHeld, str(out.Item["Holder"]), time.UnixMilli(until).UTC().Format(time.RFC3339))
		}
		// Taken only if nobody took it since we read it.
		cond, values[":v"] = "Version = :v", nval(version)
	}
	version++
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: leaseItem(cluster, holder, version, now.Add(ttl)),
		ConditionExpression: aws.String(cond), ExpressionAttributeValues: nilIfEmpty(values),
	})
	if isConditionFailed(err) {
		return 0, fmt.Errorf("%w: taken meanwhile", ErrLeaseHeld)
	}
	if err != nil {
		return 0, fmt.Errorf("take the lease: %w", err)
	}
	return version, nil
}

func (s *Store) renew(ctx context.Context, cluster, holder string, version int64, ttl time.Duration) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: leaseItem(cluster, holder, version, s.now().Add(ttl)),
		ConditionExpression:       aws.String("Holder = :h AND Version = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": &types.AttributeValueMemberS{Value: holder}, ":v": nval(version)},
	})
	if isConditionFailed(err) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("renew the lease: %w", err)
	}
	return nil
}

func (s *Store) release(ctx context.Context, cluster, holder string, version int64) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: leaseItem(cluster, "(released)", version, time.UnixMilli(0)),
		ConditionExpression:       aws.String("Holder = :h AND Version = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": &types.AttributeValueMemberS{Value: holder}, ":v": nval(version)},
	})
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("release the lease: %w", err)
	}
	return nil
}

func leaseItem(cluster, holder string, version int64, until time.Time) map[string]types.AttributeValue {
	item := leaseKey(cluster)
	item["Holder"] = &types.AttributeValueMemberS{Value: holder}
	item["Version"] = nval(version)
	item["Until"] = nval(until.UnixMilli())
	// DynamoDB's TTL removes a lease abandoned for a day.
	item[AttrTTL] = nval(until.Add(24 * time.Hour).Unix())
	return item
}

func nval(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func num(av types.AttributeValue) string {
	if n, ok := av.(*types.AttributeValueMemberN); ok {
		return n.Value
	}
	return "0"
}

func str(av types.AttributeValue) string {
	if s, ok := av.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func nilIfEmpty(m map[string]types.AttributeValue) map[string]types.AttributeValue {
	if len(m) == 0 {
		return nil
	}
	return m
}
