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

// Schedule is an AWS Health scheduled change of one instance (a
// retirement, stop or maintenance), kept until its time: the controller
// then rescues the jobs still running there as if EC2 had warned.
type Schedule struct {
	Instance string
	Event    string    // the Health event's id
	Code     string    // its type code
	Due      time.Time // when the change happens
}

type scheduleItem struct {
	PK, SK    string
	ExpiresAt int64
	Schedule
}

func schedulePK(cluster string) string { return "SCHEDULE#" + cluster }

// scheduleTTL keeps a fired or stale schedule a day past its time.
const scheduleTTL = 24 * time.Hour

// PutSchedule records (or moves) an instance's scheduled change.
func (s *Store) PutSchedule(ctx context.Context, cluster string, sc Schedule) error {
	av, err := attributevalue.MarshalMap(scheduleItem{PK: schedulePK(cluster), SK: sc.Instance, ExpiresAt: sc.Due.Add(scheduleTTL).Unix(), Schedule: sc})
	if err != nil {
		return fmt.Errorf("encode schedule of %s: %w", sc.Instance, err)
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: av}); err != nil {
		return fmt.Errorf("put schedule of %s: %w", sc.Instance, err)
	}
	return nil
}

// Schedules returns the cluster's scheduled changes.
func (s *Store) Schedules(ctx context.Context, cluster string) ([]Schedule, error) {
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String("PK = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: schedulePK(cluster)}},
		ConsistentRead:            aws.Bool(true),
	})
	var out []Schedule
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		for _, item := range page.Items {
			var it scheduleItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return nil, fmt.Errorf("decode schedule: %w", err)
			}
			out = append(out, it.Schedule)
		}
	}
	return out, nil
}

// DeleteSchedule forgets an instance's scheduled change.
func (s *Store) DeleteSchedule(ctx context.Context, cluster, instance string) error {
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(s.table), Key: keyOf(schedulePK(cluster), instance)}); err != nil {
		return fmt.Errorf("delete schedule of %s: %w", instance, err)
	}
	return nil
}

// PutSchedule records (or moves) an instance's scheduled change.
func (m *Memory) PutSchedule(_ context.Context, cluster string, sc Schedule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.schedules[schedulePK(cluster)+"/"+sc.Instance] = sc
	return nil
}

// Schedules returns the cluster's scheduled changes.
func (m *Memory) Schedules(_ context.Context, cluster string) ([]Schedule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Schedule
	for k, sc := range m.schedules {
		if k == schedulePK(cluster)+"/"+sc.Instance {
			out = append(out, sc)
		}
	}
	return out, nil
}

// DeleteSchedule forgets an instance's scheduled change.
func (m *Memory) DeleteSchedule(_ context.Context, cluster, instance string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.schedules, schedulePK(cluster)+"/"+instance)
	return nil
}
