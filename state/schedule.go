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

// Schedule is something the controller does at a time days or minutes
// ahead, kept in the table so that it outlives restarts and failovers:
// either an AWS Health scheduled change of one instance (a retirement,
// stop or maintenance), whose jobs are then rescued as if EC2 had warned,
// or, with Lift set, the end of a requeued job's steering.
type Schedule struct {
	Instance string    // the instance of a scheduled change
	Event    string    // the Health event's id
	Code     string    // its type code
	Due      time.Time // when the change happens, or the lift is due
	Lift     *Lift     `dynamodbav:",omitempty"`
}

// Lift gives a steered job back the exclusions its user had.
type Lift struct {
	Key       // the record of the run that was steered
	Set, Kept string
}

// ID names the schedule in its cluster: the instance of a scheduled
// change, "lift/<job>" for a lift (a job has one steering at a time).
func (sc Schedule) ID() string {
	if sc.Lift != nil {
		return "lift/" + sc.Lift.JobID
	}
	return sc.Instance
}

type scheduleItem struct {
	PK, SK    string
	ExpiresAt int64
	Schedule
}

func schedulePK(cluster string) string { return "SCHEDULE#" + cluster }

// scheduleTTL keeps a fired or stale schedule a day past its time.
const scheduleTTL = 24 * time.Hour

// PutSchedule records (or moves) a schedule.
func (s *Store) PutSchedule(ctx context.Context, cluster string, sc Schedule) error {
	av, err := attributevalue.MarshalMap(scheduleItem{PK: schedulePK(cluster), SK: sc.ID(), ExpiresAt: sc.Due.Add(scheduleTTL).Unix(), Schedule: sc})
	if err != nil {
		return fmt.Errorf("encode schedule %s: %w", sc.ID(), err)
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: av}); err != nil {
		return fmt.Errorf("put schedule %s: %w", sc.ID(), err)
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

// DeleteSchedule forgets a schedule, by its ID.
func (s *Store) DeleteSchedule(ctx context.Context, cluster, id string) error {
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(s.table), Key: keyOf(schedulePK(cluster), id)}); err != nil {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	return nil
}

// PutSchedule records (or moves) a schedule.
func (m *Memory) PutSchedule(_ context.Context, cluster string, sc Schedule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.schedules[schedulePK(cluster)+"/"+sc.ID()] = sc
	return nil
}

// Schedules returns the cluster's scheduled changes.
func (m *Memory) Schedules(_ context.Context, cluster string) ([]Schedule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Schedule
	for k, sc := range m.schedules {
		if k == schedulePK(cluster)+"/"+sc.ID() {
			out = append(out, sc)
		}
	}
	return out, nil
}

// DeleteSchedule forgets a schedule, by its ID.
func (m *Memory) DeleteSchedule(_ context.Context, cluster, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.schedules, schedulePK(cluster)+"/"+id)
	return nil
}
