package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute and index names of the table; deploy/cloudformation uses the same.
const (
	AttrPK       = "PK"
	AttrSK       = "SK"
	AttrGSI1PK   = "GSI1PK"
	AttrGSI1SK   = "GSI1SK"
	AttrActivePK = "ActivePK"
	AttrTTL      = "ExpiresAt"

	// IndexByCluster lists a cluster's records newest first.
	IndexByCluster = "ByCluster"
	// IndexActive is sparse: only records that are not Done carry ActivePK,
	// so resuming after a restart reads exactly the unfinished work.
	IndexActive = "Active"
)

// TableSchema is the table definition: on-demand, string keys, two GSIs.
func TableSchema(name string) *dynamodb.CreateTableInput {
	str := func(n string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: types.ScalarAttributeTypeS}
	}
	key := func(hash, rng string) []types.KeySchemaElement {
		return []types.KeySchemaElement{
			{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange},
		}
	}
	all := &types.Projection{ProjectionType: types.ProjectionTypeAll}
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{str(AttrPK), str(AttrSK), str(AttrGSI1PK), str(AttrGSI1SK), str(AttrActivePK)},
		KeySchema:            key(AttrPK, AttrSK),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String(IndexByCluster), KeySchema: key(AttrGSI1PK, AttrGSI1SK), Projection: all},
			{IndexName: aws.String(IndexActive), KeySchema: key(AttrActivePK, AttrGSI1SK), Projection: all},
		},
	}
}

// CreateTable creates the table and enables TTL, tolerating a table that
// already exists. Production tables come from CloudFormation; the lab and
// tests use this.
func CreateTable(ctx context.Context, db *dynamodb.Client, name string) error {
	_, err := db.CreateTable(ctx, TableSchema(name))
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	waiter := dynamodb.NewTableExistsWaiter(db)
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		return fmt.Errorf("wait for table %s: %w", name, err)
	}
	_, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(AttrTTL), Enabled: aws.Bool(true)},
	})
	if err != nil && !isTTLAlreadyEnabled(err) {
		return fmt.Errorf("enable TTL on %s: %w", name, err)
	}
	return nil
}

func isTTLAlreadyEnabled(err error) bool {
	var ve interface{ ErrorMessage() string }
	return errors.As(err, &ve) && containsAny(ve.ErrorMessage(), "already enabled", "TimeToLive is already")
}
