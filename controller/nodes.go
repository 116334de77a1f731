package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// NodeTable reads ParallelCluster's parallelcluster-slurm-<cluster> table:
// HASH Id is the Slurm node name, InstanceId its current instance, and the
// InstanceId GSI maps back.
//
// It keeps what it read. An instance backs one node for its whole life, so
// instance -> node never goes stale; node -> instance changes when
// ParallelCluster replaces an instance, so it is trusted for a minute. Load
// reads the whole (small) table at once, so that a mass reclaim costs no
// lookup per instance.
type NodeTable struct {
	DB    *dynamodb.Client
	Table string
	Now   func() time.Time

	mu         sync.Mutex
	byInstance map[string]string
	byNode     map[string]nodeEntry
}

type nodeEntry struct {
	instance string
	read     time.Time
}

// nodeTTL is how long a node's instance is trusted without re-reading it.
const nodeTTL = time.Minute

func (t *NodeTable) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *NodeTable) remember(node, instance string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byInstance == nil {
		t.byInstance, t.byNode = map[string]string{}, map[string]nodeEntry{}
	}
	t.byInstance[instance] = node
	t.byNode[node] = nodeEntry{instance, t.now()}
}

// Load reads the whole node table (thousands of small items: a page or two).
func (t *NodeTable) Load(ctx context.Context) (int, error) {
	p := dynamodb.NewScanPaginator(t.DB, &dynamodb.ScanInput{
		TableName:            aws.String(t.Table),
		ProjectionExpression: aws.String("Id, InstanceId"),
	})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("read node table %s: %w", t.Table, err)
		}
		for _, item := range page.Items {
			node, inst := str(item["Id"]), str(item["InstanceId"])
			if node != "" && inst != "" {
				t.remember(node, inst)
				n++
			}
		}
	}
	return n, nil
}

// NodeOf returns the Slurm node an instance backs, or errNotOurs.
func (t *NodeTable) NodeOf(ctx context.Context, instance string) (string, error) {
	t.mu.Lock()
	node, ok := t.byInstance[instance]
	t.mu.Unlock()
	if ok {
		return node, nil
	}
	out, err := t.DB.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(t.Table),
		IndexName:                 aws.String("InstanceId"),
		KeyConditionExpression:    aws.String("InstanceId = :i"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":i": &types.AttributeValueMemberS{Value: instance}},
	})
	if err != nil {
		return "", fmt.Errorf("look up %s in %s: %w", instance, t.Table, err)
	}
	for _, item := range out.Items {
		if node := str(item["Id"]); node != "" {
			t.remember(node, instance)
			return node, nil
		}
	}
	return "", errNotOurs
}

// InstanceOf returns the instance currently backing node.
func (t *NodeTable) InstanceOf(ctx context.Context, node string) (string, error) {
	t.mu.Lock()
	e, ok := t.byNode[node]
	t.mu.Unlock()
	if ok && t.now().Sub(e.read) < nodeTTL {
		return e.instance, nil
	}
	out, err := t.DB.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(t.Table),
		Key:       map[string]types.AttributeValue{"Id": &types.AttributeValueMemberS{Value: node}},
	})
	if err != nil {
		return "", fmt.Errorf("look up node %s in %s: %w", node, t.Table, err)
	}
	if inst := str(out.Item["InstanceId"]); inst != "" {
		t.remember(node, inst)
		return inst, nil
	}
	return "", fmt.Errorf("node %s has no instance in %s", node, t.Table)
}

func str(av types.AttributeValue) string {
	if s, ok := av.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}
