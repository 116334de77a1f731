package controller

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// NodeTable reads ParallelCluster's parallelcluster-slurm-<cluster> table:
// HASH Id is the Slurm node name, InstanceId its current instance, and the
// InstanceId GSI maps back.
type NodeTable struct {
	DB    *dynamodb.Client
	Table string
}

// NodeOf returns the Slurm node an instance backs, or errNotOurs.
func (t NodeTable) NodeOf(ctx context.Context, instance string) (string, error) {
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
		if id, ok := item["Id"].(*types.AttributeValueMemberS); ok && id.Value != "" {
			return id.Value, nil
		}
	}
	return "", errNotOurs
}

// InstanceOf returns the instance currently backing node.
func (t NodeTable) InstanceOf(ctx context.Context, node string) (string, error) {
	out, err := t.DB.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(t.Table),
		Key:       map[string]types.AttributeValue{"Id": &types.AttributeValueMemberS{Value: node}},
	})
	if err != nil {
		return "", fmt.Errorf("look up node %s in %s: %w", node, t.Table, err)
	}
	if v, ok := out.Item["InstanceId"].(*types.AttributeValueMemberS); ok && v.Value != "" {
		return v.Value, nil
	}
	return "", fmt.Errorf("node %s has no instance in %s", node, t.Table)
}
