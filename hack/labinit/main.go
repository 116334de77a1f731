// Command labinit creates the lab's AWS resources in moto_server: the
// interruption queue and its DLQ, the spotrescue state table, a
// ParallelCluster-shaped node table mapping one fake instance per lab node,
// and the rescue bucket. It is idempotent, so `make lab-up` can run twice.
//
// It prints KEY=value lines (queue URLs) for hack/lab/up.sh to add to lab.env.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/state"
)

func main() {
	var (
		cluster    = flag.String("cluster", "lab", "cluster name")
		queue      = flag.String("queue", "spotrescue-lab", "interruption queue name (the DLQ is <queue>-dlq)")
		receives   = flag.Int("max-receive-count", 3, "receives before a message moves to the DLQ")
		visibility = flag.Int("visibility-timeout", 30, "queue visibility timeout in seconds")
		table      = flag.String("state-table", "spotrescue-lab", "spotrescue state table")
		bucket     = flag.String("bucket", "spotrescue-lab", "rescue bucket")
		nodes      = flag.String("nodes", "", "comma-separated node=instance pairs for the node table")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail(err)
	}
	urls, err := createQueues(ctx, sqs.NewFromConfig(cfg), *queue, *receives, *visibility)
	if err != nil {
		fail(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	if err := state.CreateTable(ctx, db, *table); err != nil {
		fail(err)
	}
	if err := createNodeTable(ctx, db, "parallelcluster-slurm-"+*cluster, *nodes); err != nil {
		fail(err)
	}
	if err := createBucket(ctx, s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), *bucket); err != nil {
		fail(err)
	}
	fmt.Printf("LAB_QUEUE_URL=%s\nLAB_DLQ_URL=%s\n", urls[0], urls[1])
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "labinit:", err)
	os.Exit(1)
}

// createQueues returns the queue URL and the DLQ URL.
func createQueues(ctx context.Context, c *sqs.Client, name string, receives, visibility int) ([2]string, error) {
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		return [2]string{}, fmt.Errorf("create DLQ: %w", err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		return [2]string{}, fmt.Errorf("DLQ arn: %w", err)
	}
	redrive := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, attrs.Attributes["QueueArn"], receives)
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(name),
		Attributes: map[string]string{
			"RedrivePolicy":                 redrive,
			"VisibilityTimeout":             fmt.Sprint(visibility),
			"ReceiveMessageWaitTimeSeconds": "0",
		},
	})
	if err != nil {
		return [2]string{}, fmt.Errorf("create queue: %w", err)
	}
	return [2]string{aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl)}, nil
}

// createNodeTable mimics ParallelCluster's parallelcluster-slurm-<cluster>
// table: HASH Id (node name), attribute InstanceId, GSI InstanceId.
func createNodeTable(ctx context.Context, db *dynamodb.Client, name, nodes string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: dbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []dbtypes.AttributeDefinition{
			{AttributeName: aws.String("Id"), AttributeType: dbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("InstanceId"), AttributeType: dbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []dbtypes.KeySchemaElement{{AttributeName: aws.String("Id"), KeyType: dbtypes.KeyTypeHash}},
		GlobalSecondaryIndexes: []dbtypes.GlobalSecondaryIndex{{
			IndexName:  aws.String("InstanceId"),
			KeySchema:  []dbtypes.KeySchemaElement{{AttributeName: aws.String("InstanceId"), KeyType: dbtypes.KeyTypeHash}},
			Projection: &dbtypes.Projection{ProjectionType: dbtypes.ProjectionTypeAll},
		}},
	})
	var inUse *dbtypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create node table: %w", err)
	}
	for _, pair := range strings.Split(nodes, ",") {
		node, instance, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(name),
			Item: map[string]dbtypes.AttributeValue{
				"Id":         &dbtypes.AttributeValueMemberS{Value: node},
				"InstanceId": &dbtypes.AttributeValueMemberS{Value: instance},
				"Hostname":   &dbtypes.AttributeValueMemberS{Value: node},
			},
		})
		if err != nil {
			return fmt.Errorf("map %s to %s: %w", node, instance, err)
		}
	}
	return nil
}

func createBucket(ctx context.Context, c *s3.Client, name string) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}
