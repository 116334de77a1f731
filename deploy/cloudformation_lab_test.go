//go:build lab

package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/hack/lab"
	"github.com/spotrescue/spotrescue/state"
)

// The stack deployed into the lab's moto_server (moto 5.2.1 CloudFormation).
//
// What moto does not do, so what this test cannot check (the unit tests check
// the template for them): AWS::SQS::QueuePolicy and AWS::S3::BucketPolicy are
// skipped ("No Moto CloudFormation support"); a bucket gets its encryption
// and tags but not versioning, public access block, ownership controls or
// lifecycle; a table gets no TTL, point-in-time recovery or SSE description;
// RedriveAllowPolicy is dropped; and AWS::NoValue inside a list (the KMS
// statement of the IAM policies when KmsKeyArn is empty) becomes a null
// statement that moto's IAM validator rejects, so only stacks with a KMS key
// deploy. moto accepts any key ARN, so a made-up one is used.

type motoStack struct {
	name    string
	params  map[string]string
	outputs map[string]string
	eval    *stack // the same parameters through the unit tests' evaluator
}

// motoClients are the lab's AWS clients, every one of them on moto (the lab
// points SSM at hack/ssmlocal, which knows no CloudFormation documents).
type motoClients struct {
	cfg aws.Config
	cfn *cloudformation.Client
	sqs *sqs.Client
	ddb *dynamodb.Client
	s3  *s3.Client
	eb  *eventbridge.Client
	iam *iam.Client
}

func newMotoClients(t *testing.T) (*lab.Lab, motoClients) {
	l := lab.Get(t)
	moto := os.Getenv("AWS_ENDPOINT_URL")
	if moto == "" {
		t.Fatal("AWS_ENDPOINT_URL is not set by the lab")
	}
	return l, motoClients{
		cfg: l.AWS,
		cfn: cloudformation.NewFromConfig(l.AWS, func(o *cloudformation.Options) { o.BaseEndpoint = aws.String(moto) }),
		sqs: sqs.NewFromConfig(l.AWS, func(o *sqs.Options) { o.BaseEndpoint = aws.String(moto) }),
		ddb: dynamodb.NewFromConfig(l.AWS, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(moto) }),
		s3:  l.S3(),
		eb:  eventbridge.NewFromConfig(l.AWS, func(o *eventbridge.Options) { o.BaseEndpoint = aws.String(moto) }),
		iam: iam.NewFromConfig(l.AWS, func(o *iam.Options) { o.BaseEndpoint = aws.String(moto) }),
	}
}

// deploy creates the stack and removes it, and what it retains, afterwards.
func deploy(t *testing.T, c motoClients, region string, params map[string]string) *motoStack {
	t.Helper()
	ctx := context.Background()
	body, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	name := "spotrescue-" + params["ClusterName"]
	var ps []cfntypes.Parameter
	for k, v := range params {
		ps = append(ps, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	if _, err := c.cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String(name), TemplateBody: aws.String(string(body)), Parameters: ps}); err != nil {
		t.Fatalf("create stack: %v", err)
	}
	ms := &motoStack{name: name, params: params, outputs: map[string]string{}}
	t.Cleanup(func() { ms.remove(t, c) })
	var st cfntypes.Stack
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, err := c.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		st = out.Stacks[0]
		if !strings.HasSuffix(string(st.StackStatus), "_IN_PROGRESS") || time.Now().After(deadline) {
			break
		}
	}
	if st.StackStatus != cfntypes.StackStatusCreateComplete {
		t.Fatalf("stack %s: %s %s", name, st.StackStatus, aws.ToString(st.StackStatusReason))
	}
	for _, o := range st.Outputs {
		ms.outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	account := strings.Split(ms.outputs["QueueArn"], ":")
	if len(account) != 6 {
		t.Fatalf("QueueArn output %q", ms.outputs["QueueArn"])
	}
	ms.eval, err = evaluateAt(loadTemplate(t), params, place{Region: region, Account: account[4], GeneratedBucket: ms.outputs["BucketName"]})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// remove deletes the stack and what it keeps on purpose (the table, the
// bucket) or what moto leaves behind (the managed policies), so the shared
// lab does not accumulate them.
func (ms *motoStack) remove(t *testing.T, c motoClients) {
	ctx := context.Background()
	if _, err := c.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(ms.name)}); err != nil {
		t.Logf("delete stack %s: %v", ms.name, err)
	}
	if tbl := ms.outputs["StateTable"]; tbl != "" {
		c.ddb.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(tbl), DeletionProtectionEnabled: aws.Bool(false)})
		c.ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(tbl)})
	}
	if b := ms.outputs["BucketName"]; b != "" && ms.params["BucketName"] == "" {
		emptyBucket(ctx, c.s3, b)
		c.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b)})
	}
	for _, k := range []string{"HeadNodePolicyArn", "ComputeNodePolicyArn"} {
		if arn := ms.outputs[k]; arn != "" {
			c.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arn)})
		}
	}
}

func emptyBucket(ctx context.Context, c *s3.Client, bucket string) {
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		return
	}
	for _, o := range out.Contents {
		c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
	}
}

func clusterName(tag string) string {
	return fmt.Sprintf("cfn%s%s", tag, strconv.FormatInt(time.Now().UnixNano(), 36))
}

func TestStackInMoto(t *testing.T) {
	l, c := newMotoClients(t)
	ctx := context.Background()
	key := "arn:aws:kms:" + l.AWS.Region + ":123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	given := "given-" + strings.ToLower(clusterName("b"))
	if _, err := c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(given)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(given)}) })

	for name, params := range map[string]map[string]string{
		"created bucket": {"ClusterName": clusterName("c"), "KmsKeyArn": key, "Prefix": "teams/rescue", "InstallDir": "/shared/tools/sr",
			"MaxReceiveCount": "7", "RetentionDays": "3"},
		"given bucket": {"ClusterName": clusterName("g"), "KmsKeyArn": key, "BucketName": given, "CreateNotifyTopic": "true"},
	} {
		t.Run(name, func(t *testing.T) {
			ms := deploy(t, c, l.AWS.Region, params)
			checkMotoOutputs(t, ms)
			checkMotoQueues(t, c, ms)
			checkMotoTable(t, c, ms)
			checkMotoBucket(t, c, ms)
			checkMotoDocument(t, c, ms)
			checkMotoRules(t, c, ms)
			checkMotoPolicies(t, c, ms)
			checkMotoDelivery(t, c, ms)
		})
	}
}

// The outputs are what the unit tests' evaluator computes for the same
// parameters, except the physical ids AWS chooses.
func checkMotoOutputs(t *testing.T, ms *motoStack) {
	for k, want := range ms.eval.Outputs {
		if k == "HeadNodePolicyArn" || k == "ComputeNodePolicyArn" {
			if !strings.HasPrefix(ms.outputs[k], "arn:aws:iam::") {
				t.Errorf("output %s = %q", k, ms.outputs[k])
			}
			continue
		}
		if got := ms.outputs[k]; got != want {
			t.Errorf("output %s = %q, the evaluator says %q", k, got, want)
		}
	}
	if len(ms.outputs) != len(ms.eval.Outputs) {
		t.Errorf("outputs %v, want %d", ms.outputs, len(ms.eval.Outputs))
	}
}

func checkMotoQueues(t *testing.T, c motoClients, ms *motoStack) {
	ctx := context.Background()
	attrs := func(u string) map[string]string {
		out, err := c.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(u), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			t.Fatalf("queue %s: %v", u, err)
		}
		return out.Attributes
	}
	q, dlq := attrs(ms.outputs["QueueUrl"]), attrs(ms.outputs["DlqUrl"])
	for k, want := range map[string]string{"VisibilityTimeout": "30", "MessageRetentionPeriod": "86400", "ReceiveMessageWaitTimeSeconds": "20", "KmsMasterKeyId": ms.params["KmsKeyArn"]} {
		if q[k] != want {
			t.Errorf("queue %s = %q, want %q", k, q[k], want)
		}
	}
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     any    `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(q["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", q["RedrivePolicy"], err)
	}
	if redrive.DeadLetterTargetArn != dlq["QueueArn"] || fmt.Sprint(redrive.MaxReceiveCount) != ms.eval.Params["MaxReceiveCount"] {
		t.Errorf("RedrivePolicy %+v, want the DLQ %s after %s receives", redrive, dlq["QueueArn"], ms.eval.Params["MaxReceiveCount"])
	}
	if dlq["MessageRetentionPeriod"] != "1209600" || dlq["KmsMasterKeyId"] != ms.params["KmsKeyArn"] {
		t.Errorf("DLQ retention %s key %s", dlq["MessageRetentionPeriod"], dlq["KmsMasterKeyId"])
	}
}

func checkMotoTable(t *testing.T, c motoClients, ms *motoStack) {
	out, err := c.ddb.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(ms.outputs["StateTable"])})
	if err != nil {
		t.Fatal(err)
	}
	tbl, want := out.Table, state.TableSchema(ms.outputs["StateTable"])
	if tbl.BillingModeSummary == nil || tbl.BillingModeSummary.BillingMode != want.BillingMode {
		t.Errorf("billing %+v", tbl.BillingModeSummary)
	}
	if !aws.ToBool(tbl.DeletionProtectionEnabled) {
		t.Error("deletion protection is off")
	}
	var gotAttrs, wantAttrs []string
	for _, a := range tbl.AttributeDefinitions {
		gotAttrs = append(gotAttrs, aws.ToString(a.AttributeName)+":"+string(a.AttributeType))
	}
	for _, a := range want.AttributeDefinitions {
		wantAttrs = append(wantAttrs, aws.ToString(a.AttributeName)+":"+string(a.AttributeType))
	}
	sort.Strings(gotAttrs)
	sort.Strings(wantAttrs)
	if !slices.Equal(gotAttrs, wantAttrs) {
		t.Errorf("attributes %v, want %v", gotAttrs, wantAttrs)
	}
	if fmt.Sprint(keysOf(tbl.KeySchema)) != fmt.Sprint(keysOf(want.KeySchema)) {
		t.Errorf("key schema %v, want %v", keysOf(tbl.KeySchema), keysOf(want.KeySchema))
	}
	got := map[string]string{}
	for _, g := range tbl.GlobalSecondaryIndexes {
		got[aws.ToString(g.IndexName)] = fmt.Sprint(keysOf(g.KeySchema), g.Projection.ProjectionType)
	}
	wantIdx := map[string]string{}
	for _, g := range want.GlobalSecondaryIndexes {
		wantIdx[aws.ToString(g.IndexName)] = fmt.Sprint(keysOf(g.KeySchema), g.Projection.ProjectionType)
	}
	if fmt.Sprint(got) != fmt.Sprint(wantIdx) {
		t.Errorf("indexes %v, want %v", got, wantIdx)
	}
	// The store works on it: a record goes in and comes back by its index.
	s := state.New(c.ddb, ms.outputs["StateTable"])
	r := &state.Record{Key: state.Key{Cluster: ms.params["ClusterName"], JobID: "7", Run: 0}, Phase: state.Detected, Times: state.Times{Detected: time.Now().UTC()}}
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatalf("create a record in the stack's table: %v", err)
	}
	if keys, err := s.Active(context.Background(), ms.params["ClusterName"]); err != nil || len(keys) != 1 {
		t.Errorf("Active index: %v %v", keys, err)
	}
}

func keysOf(ks []ddbtypes.KeySchemaElement) []string {
	var out []string
	for _, k := range ks {
		out = append(out, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
	}
	return out
}

func checkMotoBucket(t *testing.T, c motoClients, ms *motoStack) {
	ctx := context.Background()
	b := ms.outputs["BucketName"]
	if ms.params["BucketName"] != "" {
		if b != ms.params["BucketName"] {
			t.Errorf("BucketName output %q, want the given %q", b, ms.params["BucketName"])
		}
		res, err := c.cfn.ListStackResources(ctx, &cloudformation.ListStackResourcesInput{StackName: aws.String(ms.name)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.StackResourceSummaries {
			if aws.ToString(r.ResourceType) == "AWS::S3::Bucket" {
				t.Errorf("a bucket was named, yet the stack created %s", aws.ToString(r.PhysicalResourceId))
			}
		}
		return
	}
	if _, err := c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatalf("the created bucket %s: %v", b, err)
	}
	enc, err := c.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)})
	if err != nil {
		t.Fatal(err)
	}
	rules := enc.ServerSideEncryptionConfiguration.Rules
	if len(rules) != 1 || rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm != s3types.ServerSideEncryptionAwsKms ||
		aws.ToString(rules[0].ApplyServerSideEncryptionByDefault.KMSMasterKeyID) != ms.params["KmsKeyArn"] {
		t.Errorf("bucket encryption %+v, want SSE-KMS with the given key", rules)
	}
}

// checkMotoDocument reads the document with a signed GetDocument of its own:
// moto returns the Content of a document CloudFormation created from an
// object as a JSON object, not the string SSM returns, and the SDK refuses it.
func checkMotoDocument(t *testing.T, c motoClients, ms *motoStack) {
	ctx := context.Background()
	body, _ := json.Marshal(map[string]string{"Name": ms.outputs["DocumentName"]})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, os.Getenv("AWS_ENDPOINT_URL")+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonSSM.GetDocument")
	creds, err := c.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ssm", c.cfg.Region, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		DocumentType string
		Content      json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GetDocument %s: %s %v", ms.outputs["DocumentName"], resp.Status, err)
	}
	if out.DocumentType != "Command" {
		t.Errorf("DocumentType %q", out.DocumentType)
	}
	content := []byte(out.Content)
	var asString string
	if json.Unmarshal(content, &asString) == nil {
		content = []byte(asString) // what SSM itself returns
	}
	var got any
	if err := json.Unmarshal(content, &got); err != nil {
		t.Fatalf("document content %s: %v", content, err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(renderDocFile(t, ms.eval.Params["InstallDir"]))
	if string(g) != string(w) {
		t.Errorf("deployed document:\n%s\nwant deploy/ssm/spotrescue-rescue.yaml for %s:\n%s", g, ms.eval.Params["InstallDir"], w)
	}
}

func checkMotoRules(t *testing.T, c motoClients, ms *motoStack) {
	ctx := context.Background()
	rules := ms.eval.ofType("AWS::Events::Rule")
	if len(rules) != 5 {
		t.Fatalf("%d rules", len(rules))
	}
	for id, r := range rules {
		name := str(r.Properties["Name"])
		out, err := c.eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(name)})
		if err != nil {
			t.Errorf("%s (%s): %v", id, name, err)
			continue
		}
		var got any
		json.Unmarshal([]byte(aws.ToString(out.EventPattern)), &got)
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(r.Properties["EventPattern"])
		if string(g) != string(w) || out.State != ebtypes.RuleStateEnabled {
			t.Errorf("%s: %s pattern %s, want %s", id, out.State, g, w)
		}
		tg, err := c.eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(name)})
		if err != nil || len(tg.Targets) != 1 || aws.ToString(tg.Targets[0].Arn) != ms.outputs["QueueArn"] {
			t.Errorf("%s targets %+v %v, want the queue", id, tg, err)
		}
	}
}

// The policies as moto's CloudFormation rendered them pass the unit tests'
// least-privilege check.
func checkMotoPolicies(t *testing.T, c motoClients, ms *motoStack) {
	ctx := context.Background()
	for out, role := range map[string]string{"HeadNodePolicyArn": "head", "ComputeNodePolicyArn": "compute"} {
		pol, err := c.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(ms.outputs[out])})
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		v, err := c.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(ms.outputs[out]), VersionId: pol.Policy.DefaultVersionId})
		if err != nil {
			t.Fatal(err)
		}
		text := aws.ToString(v.PolicyVersion.Document)
		if u, err := url.QueryUnescape(text); err == nil && strings.HasPrefix(text, "%7B") {
			text = u // IAM returns the document URL-encoded
		}
		var doc any
		if err := json.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatalf("%s document %q: %v", out, text, err)
		}
		for _, p := range policyProblems(ms.eval, role, doc) {
			t.Errorf("%s as deployed: %s", out, p)
		}
		id := map[string]string{"head": "HeadNodePolicy", "compute": "ComputeNodePolicy"}[role]
		var want, got []string
		for _, s := range statements(ms.eval.Resources[id].Properties["PolicyDocument"]) {
			want = append(want, s.Sid)
		}
		for _, s := range statements(doc) {
			got = append(got, s.Sid)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s statements %v, want %v", out, got, want)
		}
	}
}

// Events put on the default bus reach the queue through the rules' patterns,
// and arrive as envelopes controller/event parses: one of each kind, and
// nothing the patterns exclude.
func checkMotoDelivery(t *testing.T, c motoClients, ms *motoStack) {
	ctx := context.Background()
	entry := func(f string, mutate func(detail map[string]any)) ebtypes.PutEventsRequestEntry {
		ev := readFixture(t, f)
		d := ev["detail"].(map[string]any)
		if mutate != nil {
			mutate(d)
		}
		b, _ := json.Marshal(d)
		return ebtypes.PutEventsRequestEntry{Source: aws.String(str(ev["source"])), DetailType: aws.String(str(ev["detail-type"])), Detail: aws.String(string(b)), Resources: strs(ev["resources"])}
	}
	ours := func(d map[string]any) { d["document-name"] = ms.outputs["DocumentName"] }
	entries := []ebtypes.PutEventsRequestEntry{
		entry("spot-interruption-warning.json", nil),
		entry("rebalance-recommendation.json", nil),
		entry("instance-state-change-terminated.json", nil),
		entry("ssm-command-invocation-status.json", ours),
		entry("health-scheduled-change.json", nil),
		// Filtered out by the patterns:
		entry("health-scheduled-change.json", func(d map[string]any) { d["eventTypeCategory"] = "issue" }),
		entry("instance-state-change-terminated.json", func(d map[string]any) { d["state"] = "running" }),
		entry("ssm-command-invocation-status.json", func(d map[string]any) { d["document-name"] = "AWS-RunShellScript" }),
	}
	out, err := c.eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
	if err != nil || out.FailedEntryCount != 0 {
		t.Fatalf("put events: %v %+v", err, out)
	}
	kinds := map[event.Kind]int{}
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 8 && time.Now().Before(deadline); {
		msgs, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(ms.outputs["QueueUrl"]), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs.Messages {
			n++
			e, err := event.Parse([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Errorf("delivered message does not parse: %v\n%s", err, aws.ToString(m.Body))
				continue
			}
			kinds[e.Kind]++
			if e.Kind == event.StateChange && !e.Gone() || e.Kind == event.CommandStatus && e.Document != ms.outputs["DocumentName"] {
				t.Errorf("the rules let through %+v", e)
			}
		}
		if len(msgs.Messages) == 0 && len(kinds) == 5 {
			break
		}
	}
	want := map[event.Kind]int{event.SpotInterruption: 1, event.Rebalance: 1, event.StateChange: 1, event.CommandStatus: 1, event.ScheduledChange: 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v", kinds, want)
	}
}
