package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// cluster is one burst's world: its nodes and instances, jobs, queue, tables.
type cluster struct {
	name      string
	nodes     []string
	instances map[string]string // node -> instance
	jobs      int
	queueURL  string
	stateTbl  string
	nodeTbl   string
	document  string
	binDir    string // Slurm commands
	dir       string
}

func instanceID(i int) string { return fmt.Sprintf("i-0b0b%013x", i) }

// newQueue creates a queue with a DLQ, shaped like the stack's.
func newQueue(ctx context.Context, q *sqs.Client, name string) (string, error) {
	dlq, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		return "", err
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		return "", err
	}
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, attrs.Attributes["QueueArn"]),
		"VisibilityTimeout": "30",
	}})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.QueueUrl), nil
}

// nodeTable creates a ParallelCluster-shaped node table for the nodes.
func nodeTable(ctx context.Context, db *dynamodb.Client, name string, instances map[string]string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(name), BillingMode: dbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []dbtypes.AttributeDefinition{
			{AttributeName: aws.String("Id"), AttributeType: dbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("InstanceId"), AttributeType: dbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []dbtypes.KeySchemaElement{{AttributeName: aws.String("Id"), KeyType: dbtypes.KeyTypeHash}},
		GlobalSecondaryIndexes: []dbtypes.GlobalSecondaryIndex{{
			IndexName: aws.String("InstanceId"), Projection: &dbtypes.Projection{ProjectionType: dbtypes.ProjectionTypeAll},
			KeySchema: []dbtypes.KeySchemaElement{{AttributeName: aws.String("InstanceId"), KeyType: dbtypes.KeyTypeHash}},
		}},
	})
	if err != nil {
		return fmt.Errorf("node table: %w", err)
	}
	var batch []dbtypes.WriteRequest
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]dbtypes.WriteRequest{name: batch}})
		batch = nil
		return err
	}
	for node, inst := range instances {
		batch = append(batch, dbtypes.WriteRequest{PutRequest: &dbtypes.PutRequest{Item: map[string]dbtypes.AttributeValue{
			"Id": &dbtypes.AttributeValueMemberS{Value: node}, "InstanceId": &dbtypes.AttributeValueMemberS{Value: inst},
		}}})
		if len(batch) == 25 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// document registers the spotrescue SSM document (moto's SSM in replay mode).
func document(ctx context.Context, c *ssm.Client, name, repo string) error {
	body, err := os.ReadFile(filepath.Join(repo, "deploy", "ssm", "spotrescue-rescue.yaml"))
	if err != nil {
		return err
	}
	content := strings.NewReplacer("@SPOTRESCUE_BIN@", "/bin/true", "@SPOTRESCUE_CONFIG@", "/dev/null").Replace(string(body))
	_, err = c.CreateDocument(ctx, &ssm.CreateDocumentInput{Name: aws.String(name), Content: aws.String(content),
		DocumentType: ssmtypes.DocumentTypeCommand, DocumentFormat: ssmtypes.DocumentFormatYaml})
	return err
}

// createBucket makes the rescue bucket in a private moto.
func createBucket(ctx context.Context, ep *endpoints) error {
	_, err := s3.NewFromConfig(ep.cfg, func(o *s3.Options) { o.UsePathStyle = true }).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("spotrescue-lab")})
	return err
}

// replayState writes a recorded Slurm state for the nodes: the real 22.05
// squeue --json capture's running job, cloned jobsPerNode times per node.
func replayState(repo, dir string, nodes []string, jobsPerNode int) (int, error) {
	var capture struct {
		Meta   json.RawMessage   `json:"meta"`
		Errors json.RawMessage   `json:"errors"`
		Jobs   []json.RawMessage `json:"jobs"`
	}
	b, err := os.ReadFile(filepath.Join(repo, "controller/slurm/testdata/22.05/squeue.json"))
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(b, &capture); err != nil {
		return 0, err
	}
	var template map[string]any
	for _, raw := range capture.Jobs {
		var j map[string]any
		json.Unmarshal(raw, &j)
		if j["job_state"] == "RUNNING" && j["batch_flag"] == true && j["nodes"] == "compute-1" {
			template = j
			break
		}
	}
	if template == nil {
		return 0, fmt.Errorf("no single-node running batch job in the capture")
	}
	var jobs []map[string]any
	id := 100
	for _, n := range nodes {
		for range jobsPerNode {
			j := map[string]any{}
			for k, v := range template {
				j[k] = v
			}
			id++
			j["job_id"], j["nodes"], j["batch_host"], j["name"] = id, n, n, fmt.Sprintf("sim-%d", id)
			j["job_resources"] = map[string]any{"nodes": n, "allocated_hosts": 1}
			jobs = append(jobs, j)
		}
	}
	out, err := json.Marshal(map[string]any{"meta": capture.Meta, "errors": []any{}, "jobs": jobs})
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "squeue.json"), out, 0o644); err != nil {
		return 0, err
	}
	return len(jobs), os.WriteFile(filepath.Join(dir, "version.txt"), []byte("slurm-wlm 22.05.8\n"), 0o644)
}
