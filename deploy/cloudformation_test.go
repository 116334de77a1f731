package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.yaml.in/yaml/v3"

	"github.com/spotrescue/spotrescue/controller/config"
	"github.com/spotrescue/spotrescue/controller/event"
	"github.com/spotrescue/spotrescue/rescue"
	"github.com/spotrescue/spotrescue/state"
)

// The parameters the issue asks for, with the defaults the binary uses.
func TestTemplateParameters(t *testing.T) {
	tpl := loadTemplate(t)
	params := tpl["Parameters"].(map[string]any)
	for _, name := range []string{"ClusterName", "BucketName", "Prefix", "RetentionDays", "KmsKeyArn", "MaxReceiveCount", "InstallDir", "BucketVersioning"} {
		if params[name] == nil {
			t.Errorf("parameter %s is missing", name)
		}
	}
	def := config.Default()
	if got := str(path(params, "Prefix", "Default")); got != def.Prefix {
		t.Errorf("Prefix default %q, the binary's default prefix is %q", got, def.Prefix)
	}
	if got := str(path(params, "InstallDir", "Default")); got != def.SpoolDir {
		t.Errorf("InstallDir default %q, the binary's default spool_dir is %q", got, def.SpoolDir)
	}
	if got := str(path(params, "BucketName", "Default")); got != "" {
		t.Errorf("BucketName default %q: empty must mean 'create one'", got)
	}
	// Bad values are refused by CloudFormation before anything is created.
	tplBad := map[string]string{"ClusterName": "1-not-a-cluster"}
	if _, err := evaluate(tpl, tplBad); err == nil {
		t.Error("ClusterName 1-not-a-cluster was accepted")
	}
	if _, err := evaluate(tpl, map[string]string{"ClusterName": "hpc", "InstallDir": "/opt/x/"}); err == nil {
		t.Error("an InstallDir with a trailing slash was accepted")
	}
	if _, err := evaluate(tpl, map[string]string{"ClusterName": "hpc", "MaxReceiveCount": "0"}); err == nil {
		t.Error("MaxReceiveCount 0 was accepted")
	}
	if _, err := evaluate(tpl, map[string]string{"ClusterName": "hpc", "BucketVersioning": "On"}); err == nil {
		t.Error("BucketVersioning On was accepted")
	}
	if _, err := evaluate(tpl, map[string]string{"ClusterName": "hpc", "KmsKeyArn": "alias/mine"}); err == nil {
		t.Error("a KMS alias was accepted where IAM needs a key ARN")
	}
}

func TestQueues(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		q := st.Resources["Queue"]
		dlq := st.Resources["DeadLetterQueue"]
		if q == nil || dlq == nil || q.Type != "AWS::SQS::Queue" || dlq.Type != "AWS::SQS::Queue" {
			t.Fatal("want the SQS queues Queue and DeadLetterQueue")
		}
		p := q.Properties
		if str(p["VisibilityTimeout"]) != "30" {
			t.Errorf("VisibilityTimeout %v, want 30", p["VisibilityTimeout"])
		}
		if n, _ := strconv.Atoi(str(p["MessageRetentionPeriod"])); n < 3600 || n > 1209600 {
			t.Errorf("MessageRetentionPeriod %v", p["MessageRetentionPeriod"])
		}
		if got := str(path(p, "RedrivePolicy", "deadLetterTargetArn")); got != st.arn("sqs", "spotrescue-"+st.Params["ClusterName"]+"-dlq") {
			t.Errorf("redrive target %q", got)
		}
		if got := str(path(p, "RedrivePolicy", "maxReceiveCount")); got != st.Params["MaxReceiveCount"] {
			t.Errorf("maxReceiveCount %q, parameter %q", got, st.Params["MaxReceiveCount"])
		}
		if got := sortedStrs(path(dlq.Properties, "RedriveAllowPolicy", "sourceQueueArns")); !slices.Equal(got, []string{st.arn("sqs", "spotrescue-"+st.Params["ClusterName"])}) {
			t.Errorf("the DLQ accepts redrives from %v, want only the queue", got)
		}
		for id, r := range map[string]*resource{"Queue": q, "DeadLetterQueue": dlq} {
			kms, managed := str(r.Properties["KmsMasterKeyId"]), r.Properties["SqsManagedSseEnabled"]
			switch {
			case st.hasKMS() && (kms != st.Params["KmsKeyArn"] || managed != nil):
				t.Errorf("%s: KmsMasterKeyId %q SqsManagedSseEnabled %v, want the given key only", id, kms, managed)
			case !st.hasKMS() && (kms != "" || managed != true):
				t.Errorf("%s: KmsMasterKeyId %q SqsManagedSseEnabled %v, want SQS-managed SSE", id, kms, managed)
			}
		}
	})
}

// ruleARNs are the ARNs of the stack's rules that target the queue.
func ruleARNs(st *stack) []string {
	queue := st.arn("sqs", "spotrescue-"+st.Params["ClusterName"])
	var arns []string
	for _, r := range st.ofType("AWS::Events::Rule") {
		for _, tg := range r.Properties["Targets"].([]any) {
			if str(path(tg, "Arn")) == queue {
				arns = append(arns, st.arn("events", "rule/"+str(r.Properties["Name"])))
			}
		}
	}
	sort.Strings(arns)
	return arns
}

// queuePolicyProblems checks the interruption queue's resource policy.
func queuePolicyProblems(st *stack, rules []string) []string {
	var probs []string
	queue := st.arn("sqs", "spotrescue-"+st.Params["ClusterName"])
	var pol *resource
	for _, r := range st.ofType("AWS::SQS::QueuePolicy") {
		if slices.Contains(strs(r.Properties["Queues"]), st.Outputs["QueueUrl"]) {
			pol = r
		}
	}
	if pol == nil {
		return []string{"no AWS::SQS::QueuePolicy for the queue"}
	}
	allows, tls, others := 0, false, false
	for _, s := range path(pol.Properties, "PolicyDocument", "Statement").([]any) {
		switch str(path(s, "Effect")) {
		case "Allow":
			allows++
			if got := str(path(s, "Principal", "Service")); got != "events.amazonaws.com" {
				probs = append(probs, fmt.Sprintf("Allow for principal %v, want only events.amazonaws.com", path(s, "Principal")))
			}
			if got := strs(path(s, "Action")); !slices.Equal(got, []string{"sqs:SendMessage"}) {
				probs = append(probs, fmt.Sprintf("Allow of %v, want only sqs:SendMessage", got))
			}
			if got := strs(path(s, "Resource")); !slices.Equal(got, []string{queue}) {
				probs = append(probs, fmt.Sprintf("Allow on %v, want the queue", got))
			}
			cond := path(s, "Condition").(map[string]any)
			if len(cond) != 1 || !slices.Equal(sortedStrs(path(cond, "ArnEquals", "aws:SourceArn")), rules) {
				probs = append(probs, fmt.Sprintf("Allow condition %v, want ArnEquals aws:SourceArn %v", cond, rules))
			}
		case "Deny":
			if str(path(s, "Principal")) == "*" && str(path(s, "Condition", "Bool", "aws:SecureTransport")) == "false" &&
				slices.Equal(strs(path(s, "Resource")), []string{queue}) && slices.Equal(strs(path(s, "Action")), []string{"sqs:*"}) {
				tls = true
			}
			others = others || denyOthers(st, s, queue, rules)
		}
	}
	if !others {
		probs = append(probs, "no explicit Deny of sqs:SendMessage to every principal but the rules (and the drill sender): an IAM user with sqs:* could forge warnings")
	}
	if allows != 1 {
		probs = append(probs, fmt.Sprintf("%d Allow statements, want exactly the EventBridge one", allows))
	}
	if !tls {
		probs = append(probs, "no Deny of sqs:* when aws:SecureTransport is false")
	}
	return probs
}

// denyOthers reports a statement that denies SendMessage on the queue to
// everyone whose request is not from one of the rules, except, when the
// stack names one, the drill sender: a Deny whose conditions are exactly
// ArnNotEquals aws:SourceArn <the rules> and ArnNotLike aws:PrincipalArn
// <the drill sender>.
func denyOthers(st *stack, s any, queue string, rules []string) bool {
	if str(path(s, "Principal")) != "*" || !slices.Equal(strs(path(s, "Resource")), []string{queue}) ||
		!slices.Equal(strs(path(s, "Action")), []string{"sqs:SendMessage"}) {
		return false
	}
	cond, _ := path(s, "Condition").(map[string]any)
	want := 1
	if drill := st.Params["DrillSenderArn"]; drill != "" {
		want = 2
		if str(path(cond, "ArnNotLike", "aws:PrincipalArn")) != drill {
			return false
		}
	}
	return len(cond) == want && slices.Equal(sortedStrs(path(cond, "ArnNotEquals", "aws:SourceArn")), rules)
}

func TestQueuePolicyTrustsOnlyTheStacksRules(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		rules := ruleARNs(st)
		if len(rules) != 5 {
			t.Fatalf("%d rules target the queue, want 5: %v", len(rules), rules)
		}
		for _, p := range queuePolicyProblems(st, rules) {
			t.Error(p)
		}
		dlqTLS := false
		for _, r := range st.ofType("AWS::SQS::QueuePolicy") {
			if slices.Contains(strs(r.Properties["Queues"]), st.Outputs["DlqUrl"]) {
				for _, s := range path(r.Properties, "PolicyDocument", "Statement").([]any) {
					if str(path(s, "Effect")) == "Allow" {
						t.Errorf("the DLQ policy allows %v", path(s, "Action"))
					}
					dlqTLS = dlqTLS || str(path(s, "Condition", "Bool", "aws:SecureTransport")) == "false"
				}
			}
		}
		if !dlqTLS {
			t.Error("the DLQ does not deny insecure transport")
		}
	})
}

// The checks above can fail: a policy that trusts a foreign rule, drops
// one of ours, or allows more than SendMessage is caught.
func TestQueuePolicyCheckCatchesMistakes(t *testing.T) {
	tpl := loadTemplate(t)
	st, err := evaluate(tpl, map[string]string{"ClusterName": "hpc"})
	if err != nil {
		t.Fatal(err)
	}
	rules := ruleARNs(st)
	stmts := path(st.Resources["QueuePolicy"].Properties, "PolicyDocument", "Statement").([]any)
	allow := stmts[0].(map[string]any)
	cond := path(allow, "Condition", "ArnEquals").(map[string]any)
	orig := cond["aws:SourceArn"]

	cond["aws:SourceArn"] = append(append([]any{}, orig.([]any)[1:]...), "arn:aws:events:eu-west-1:999999999999:rule/other")
	if len(queuePolicyProblems(st, rules)) == 0 {
		t.Error("a foreign rule in aws:SourceArn went unnoticed")
	}
	cond["aws:SourceArn"] = orig
	allow["Action"] = "sqs:*"
	if len(queuePolicyProblems(st, rules)) == 0 {
		t.Error("an Allow of sqs:* went unnoticed")
	}
	allow["Action"] = "sqs:SendMessage"
	st.Resources["QueuePolicy"].Properties["PolicyDocument"].(map[string]any)["Statement"] = []any{stmts[0], stmts[2]}
	if probs := queuePolicyProblems(st, rules); len(probs) != 1 || !strings.Contains(probs[0], "forge") {
		t.Errorf("a missing Deny of other senders: %v", probs)
	}
	deny := stmts[1].(map[string]any)
	denyCond := path(deny, "Condition", "ArnNotEquals").(map[string]any)
	denyCond["aws:SourceArn"] = append(append([]any{}, orig.([]any)...), "arn:aws:events:eu-west-1:999999999999:rule/other")
	st.Resources["QueuePolicy"].Properties["PolicyDocument"].(map[string]any)["Statement"] = stmts
	if len(queuePolicyProblems(st, rules)) == 0 {
		t.Error("a Deny that spares a foreign rule went unnoticed")
	}
	denyCond["aws:SourceArn"] = orig
	st.Resources["QueuePolicy"].Properties["PolicyDocument"].(map[string]any)["Statement"] = stmts[:2]
	if len(queuePolicyProblems(st, rules)) == 0 {
		t.Error("a missing TLS deny went unnoticed")
	}
}

// matches implements the EventBridge pattern subset the rules use: every
// pattern key must be present in the event, and a list matches when the
// event's value is one of its strings.
func matches(pattern, ev map[string]any) bool {
	for k, want := range pattern {
		got, ok := ev[k]
		if !ok {
			return false
		}
		switch w := want.(type) {
		case map[string]any:
			sub, ok := got.(map[string]any)
			if !ok || !matches(w, sub) {
				return false
			}
		case []any:
			if !slices.Contains(strs(w), str(got)) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func readFixture(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../controller/event/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestRulesDeliverWhatTheControllerParses(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		doc := st.Outputs["DocumentName"]
		rules := st.ofType("AWS::Events::Rule")
		matchedBy := func(ev map[string]any) []string {
			var ids []string
			for id, r := range rules {
				if matches(r.Properties["EventPattern"].(map[string]any), ev) {
					ids = append(ids, id)
				}
			}
			return ids
		}
		// Every rule passes only envelopes the controller has a parser for.
		for id, r := range rules {
			if str(r.Properties["State"]) != "ENABLED" {
				t.Errorf("%s is not ENABLED", id)
			}
			if tg := r.Properties["Targets"].([]any); len(tg) != 1 || path(tg[0], "InputTransformer") != nil || path(tg[0], "Input") != nil {
				t.Errorf("%s: want one target receiving the raw envelope, got %v", id, tg)
			}
			pat := r.Properties["EventPattern"].(map[string]any)
			// The detail the pattern requires, as the least the rule passes.
			detail := map[string]any{}
			if dp, ok := pat["detail"].(map[string]any); ok {
				for k, v := range dp {
					if vs := strs(v); len(vs) > 0 {
						detail[k] = vs[0]
					}
				}
			}
			d, _ := json.Marshal(detail)
			for _, src := range strs(pat["source"]) {
				for _, dt := range strs(pat["detail-type"]) {
					_, err := event.Parse(fmt.Appendf(nil, `{"id":"x","source":%q,"detail-type":%q,"time":"2026-11-20T05:13:40Z","detail":%s}`, src, dt, d))
					if errors.Is(err, event.ErrUnsupported) {
						t.Errorf("%s forwards %s/%q, which controller/event does not parse", id, src, dt)
					}
				}
			}
		}
		// Every kind the controller acts on has a rule: each fixture (the
		// SSM one addressed to this stack's document) is delivered by
		// exactly one rule and parses.
		kinds := map[event.Kind]bool{}
		for _, f := range []string{"spot-interruption-warning.json", "rebalance-recommendation.json", "instance-state-change-terminated.json", "ssm-command-invocation-status.json", "health-scheduled-change.json"} {
			ev := readFixture(t, f)
			if ev["source"] == "aws.ssm" {
				ev["detail"].(map[string]any)["document-name"] = doc
			}
			if got := matchedBy(ev); len(got) != 1 {
				t.Errorf("%s is delivered by %v, want exactly one rule", f, got)
			}
			b, _ := json.Marshal(ev)
			e, err := event.Parse(b)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			kinds[e.Kind] = true
		}
		if len(kinds) != 5 {
			t.Errorf("fixtures cover kinds %v, want all five", kinds)
		}
		// AWS Health events of other services and categories stay out.
		for field, value := range map[string]string{"service": "RDS", "eventTypeCategory": "issue"} {
			ev := readFixture(t, "health-scheduled-change.json")
			ev["detail"].(map[string]any)[field] = value
			if got := matchedBy(ev); len(got) != 0 {
				t.Errorf("a Health event with %s %s is delivered by %v", field, value, got)
			}
		}
		// What the rules filter out: instance states that do not end the
		// instance store, and other documents' command events.
		for _, state := range []string{"pending", "running", "shutting-down", "terminated", "stopping", "stopped"} {
			ev := readFixture(t, "instance-state-change-terminated.json")
			ev["detail"].(map[string]any)["state"] = state
			delivered := len(matchedBy(ev)) > 0
			b, _ := json.Marshal(ev)
			e, err := event.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if delivered != e.Gone() {
				t.Errorf("state %s: delivered %v, but the controller's Gone() is %v", state, delivered, e.Gone())
			}
		}
		other := readFixture(t, "ssm-command-invocation-status.json")
		other["detail"].(map[string]any)["document-name"] = "AWS-RunShellScript"
		if got := matchedBy(other); len(got) != 0 {
			t.Errorf("command events of another document are delivered by %v", got)
		}
	})
}

// The table is state.TableSchema, attribute for attribute.
func TestStateTableIsTheStoreSchema(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		_, tbl := st.only(t, "AWS::DynamoDB::Table")
		p := tbl.Properties
		want := state.TableSchema(st.Outputs["StateTable"])
		if got := str(p["TableName"]); got != aws.ToString(want.TableName) || got != "spotrescue-"+st.Params["ClusterName"] {
			t.Errorf("TableName %q", got)
		}
		if str(p["BillingMode"]) != string(want.BillingMode) {
			t.Errorf("BillingMode %v, want %s", p["BillingMode"], want.BillingMode)
		}
		var gotAttrs, wantAttrs []string
		for _, a := range p["AttributeDefinitions"].([]any) {
			gotAttrs = append(gotAttrs, str(path(a, "AttributeName"))+":"+str(path(a, "AttributeType")))
		}
		for _, a := range want.AttributeDefinitions {
			wantAttrs = append(wantAttrs, aws.ToString(a.AttributeName)+":"+string(a.AttributeType))
		}
		sort.Strings(gotAttrs)
		sort.Strings(wantAttrs)
		if !slices.Equal(gotAttrs, wantAttrs) {
			t.Errorf("AttributeDefinitions %v, want %v", gotAttrs, wantAttrs)
		}
		keys := func(v any) []string {
			var out []string
			for _, k := range v.([]any) {
				out = append(out, str(path(k, "AttributeName"))+":"+str(path(k, "KeyType")))
			}
			return out
		}
		var wantKeys []string
		for _, k := range want.KeySchema {
			wantKeys = append(wantKeys, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
		}
		if got := keys(p["KeySchema"]); !slices.Equal(got, wantKeys) {
			t.Errorf("KeySchema %v, want %v", got, wantKeys)
		}
		gotIdx := map[string]string{}
		for _, g := range p["GlobalSecondaryIndexes"].([]any) {
			gotIdx[str(path(g, "IndexName"))] = strings.Join(keys(path(g, "KeySchema")), ",") + " " + str(path(g, "Projection", "ProjectionType"))
		}
		wantIdx := map[string]string{}
		for _, g := range want.GlobalSecondaryIndexes {
			var ks []string
			for _, k := range g.KeySchema {
				ks = append(ks, aws.ToString(k.AttributeName)+":"+string(k.KeyType))
			}
			wantIdx[aws.ToString(g.IndexName)] = strings.Join(ks, ",") + " " + string(g.Projection.ProjectionType)
		}
		if !reflect.DeepEqual(gotIdx, wantIdx) {
			t.Errorf("GlobalSecondaryIndexes %v, want %v", gotIdx, wantIdx)
		}
		if p["LocalSecondaryIndexes"] != nil || p["ProvisionedThroughput"] != nil {
			t.Error("the table has settings TableSchema does not")
		}
		if str(path(p, "TimeToLiveSpecification", "AttributeName")) != state.AttrTTL || path(p, "TimeToLiveSpecification", "Enabled") != true {
			t.Errorf("TTL %v, want %s enabled", p["TimeToLiveSpecification"], state.AttrTTL)
		}
		if path(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true {
			t.Error("point-in-time recovery is off")
		}
		if p["DeletionProtectionEnabled"] != true || tbl.DeletionPolicy != "Retain" || tbl.UpdateReplacePolicy != "Retain" {
			t.Errorf("the table can be lost: protection %v, DeletionPolicy %q, UpdateReplacePolicy %q", p["DeletionProtectionEnabled"], tbl.DeletionPolicy, tbl.UpdateReplacePolicy)
		}
		sse := p["SSESpecification"]
		if st.hasKMS() {
			if path(sse, "SSEEnabled") != true || str(path(sse, "SSEType")) != "KMS" || str(path(sse, "KMSMasterKeyId")) != st.Params["KmsKeyArn"] {
				t.Errorf("SSESpecification %v, want the given key", sse)
			}
		} else if sse == nil || path(sse, "KMSMasterKeyId") != nil {
			t.Errorf("SSESpecification %v, want DynamoDB's own key", sse)
		}
	})
}

func TestBucket(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		buckets := st.ofType("AWS::S3::Bucket")
		policies := st.ofType("AWS::S3::BucketPolicy")
		if st.Params["BucketName"] != "" {
			if len(buckets) != 0 || len(policies) != 0 {
				t.Fatalf("a bucket was named, yet the stack creates %d bucket(s) and %d policies", len(buckets), len(policies))
			}
			if st.Outputs["BucketName"] != st.Params["BucketName"] {
				t.Errorf("BucketName output %q, want the given bucket", st.Outputs["BucketName"])
			}
			return
		}
		_, b := st.only(t, "AWS::S3::Bucket")
		if st.Outputs["BucketName"] != testGeneratedBucket {
			t.Errorf("BucketName output %q, want the created bucket", st.Outputs["BucketName"])
		}
		if b.DeletionPolicy != "Retain" || b.UpdateReplacePolicy != "Retain" {
			t.Errorf("DeletionPolicy %q UpdateReplacePolicy %q, want Retain", b.DeletionPolicy, b.UpdateReplacePolicy)
		}
		p := b.Properties
		for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
			if path(p, "PublicAccessBlockConfiguration", k) != true {
				t.Errorf("PublicAccessBlockConfiguration.%s is not true", k)
			}
		}
		if got := str(path(p, "VersioningConfiguration", "Status")); got != st.Params["BucketVersioning"] {
			t.Errorf("versioning %q, parameter %q", got, st.Params["BucketVersioning"])
		}
		rules := path(p, "BucketEncryption", "ServerSideEncryptionConfiguration").([]any)
		def := path(rules[0], "ServerSideEncryptionByDefault")
		if st.hasKMS() {
			if str(path(def, "SSEAlgorithm")) != "aws:kms" || str(path(def, "KMSMasterKeyID")) != st.Params["KmsKeyArn"] || path(rules[0], "BucketKeyEnabled") != true {
				t.Errorf("encryption %v, want SSE-KMS with the given key and a bucket key", rules[0])
			}
		} else if str(path(def, "SSEAlgorithm")) != "AES256" {
			t.Errorf("encryption %v, want SSE-S3", rules[0])
		}
		abort, expire := false, false
		for _, r := range path(p, "LifecycleConfiguration", "Rules").([]any) {
			if str(path(r, "Status")) != "Enabled" {
				continue
			}
			if str(path(r, "AbortIncompleteMultipartUpload", "DaysAfterInitiation")) == "1" && path(r, "Prefix") == nil && path(r, "Filter") == nil {
				abort = true
			}
			if str(path(r, "Prefix")) == st.Params["Prefix"]+"/" && str(path(r, "ExpirationInDays")) == st.Params["RetentionDays"] {
				expire = true
			}
		}
		if !abort || !expire {
			t.Errorf("lifecycle: abort incomplete uploads after 1 day %v, expire %s/ after %s days %v", abort, st.Params["Prefix"], st.Params["RetentionDays"], expire)
		}
		_, pol := st.only(t, "AWS::S3::BucketPolicy")
		tls := false
		for _, s := range path(pol.Properties, "PolicyDocument", "Statement").([]any) {
			if str(path(s, "Effect")) == "Allow" {
				t.Errorf("the bucket policy allows %v", path(s, "Action"))
			}
			if str(path(s, "Effect")) == "Deny" && str(path(s, "Condition", "Bool", "aws:SecureTransport")) == "false" &&
				slices.Equal(sortedStrs(path(s, "Resource")), []string{"arn:aws:s3:::" + testGeneratedBucket, "arn:aws:s3:::" + testGeneratedBucket + "/*"}) {
				tls = true
			}
		}
		if !tls {
			t.Error("the bucket policy does not deny insecure transport to the bucket and its objects")
		}
	})
}

// renderDocFile is deploy/ssm/spotrescue-rescue.yaml with its placeholders
// filled in for installDir, as install-headnode.sh lays the files out.
func renderDocFile(t *testing.T, installDir string) map[string]any {
	var doc map[string]any
	text := render(t, "ssm/spotrescue-rescue.yaml", map[string]string{
		"SPOTRESCUE_BIN": installDir + "/bin/spotrescue", "SPOTRESCUE_CONFIG": installDir + "/config.yaml",
	})
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestDocumentIsTheSSMFile(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		_, d := st.only(t, "AWS::SSM::Document")
		p := d.Properties
		if str(p["DocumentType"]) != "Command" || str(p["UpdateMethod"]) != "NewVersion" {
			t.Errorf("DocumentType %v UpdateMethod %v", p["DocumentType"], p["UpdateMethod"])
		}
		if got := str(p["Name"]); got != st.Outputs["DocumentName"] || !regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,128}$`).MatchString(got) {
			t.Errorf("Name %q (output %q)", got, st.Outputs["DocumentName"])
		}
		want := renderDocFile(t, st.Params["InstallDir"])
		// Compare as JSON: numbers and strings as SSM will see them.
		g, _ := json.Marshal(p["Content"])
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("document content differs from deploy/ssm/spotrescue-rescue.yaml:\n got %s\nwant %s", g, w)
		}
		for _, prob := range documentParameterProblems(p["Content"].(map[string]any)) {
			t.Error(prob)
		}
	})
}

// documentParameterProblems: every parameter is constrained, and the
// constraint admits what the controller sends and nothing a shell would act on.
func documentParameterProblems(content map[string]any) []string {
	params, _ := content["parameters"].(map[string]any)
	if len(params) == 0 {
		return []string{"the document has no parameters"}
	}
	var probs []string
	for name, p := range params {
		pat := str(path(p, "allowedPattern"))
		if pat == "" {
			probs = append(probs, fmt.Sprintf("parameter %s has no allowedPattern", name))
			continue
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			probs = append(probs, fmt.Sprintf("parameter %s: %v", name, err))
			continue
		}
		if !strings.HasPrefix(pat, "^") || !strings.HasSuffix(pat, "$") {
			probs = append(probs, fmt.Sprintf("parameter %s: pattern %q is not anchored", name, pat))
		}
		for _, bad := range []string{"", "a'; rm -rf / #", "$(id)", "a b", "../x", "a\nb"} {
			if re.MatchString(bad) {
				probs = append(probs, fmt.Sprintf("parameter %s admits %q", name, bad))
			}
		}
	}
	if plan, ok := params["Plan"]; !ok {
		probs = append(probs, "no Plan parameter: the controller sends {\"Plan\": [id]}")
	} else if re, err := regexp.Compile(str(path(plan, "allowedPattern"))); err == nil {
		for range 100 {
			if id := rescue.NewPlanID(); !re.MatchString(id) {
				probs = append(probs, fmt.Sprintf("the Plan pattern refuses the controller's plan id %q", id))
				break
			}
		}
	}
	return probs
}

func TestDocumentParameterCheckCatchesMistakes(t *testing.T) {
	for pat, why := range map[string]string{"^.*$": "admits anything", "[a-z0-9-]+": "is not anchored", "^[a-f]{4}$": "refuses real plan ids", "": "is missing"} {
		doc := renderDocFile(t, "/x")
		path(doc, "parameters", "Plan").(map[string]any)["allowedPattern"] = pat
		if len(documentParameterProblems(doc)) == 0 {
			t.Errorf("a Plan pattern that %s went unnoticed", why)
		}
	}
	if probs := documentParameterProblems(renderDocFile(t, "/x")); len(probs) > 0 {
		t.Errorf("deploy/ssm/spotrescue-rescue.yaml: %v", probs)
	}
}

func TestOutputs(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		c := st.Params["ClusterName"]
		want := map[string]string{
			"ClusterName":          c,
			"Region":               testRegion,
			"QueueUrl":             fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/spotrescue-%s", testRegion, testAccount, c),
			"QueueArn":             st.arn("sqs", "spotrescue-"+c),
			"DlqUrl":               fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/spotrescue-%s-dlq", testRegion, testAccount, c),
			"StateTable":           "spotrescue-" + c,
			"BucketName":           bucketOf(st),
			"Prefix":               st.Params["Prefix"],
			"DocumentName":         "SpotRescue-Rescue-" + c,
			"InstallDir":           st.Params["InstallDir"],
			"TaskProlog":           st.Params["InstallDir"] + "/taskprolog.sh",
			"HeadNodePolicyArn":    fmt.Sprintf("arn:aws:iam::%s:policy/%s-HeadNodePolicy-ABCDEF", testAccount, testStackName),
			"ComputeNodePolicyArn": fmt.Sprintf("arn:aws:iam::%s:policy/%s-ComputeNodePolicy-ABCDEF", testAccount, testStackName),
		}
		for k, v := range want {
			if st.Outputs[k] != v {
				t.Errorf("output %s = %q, want %q", k, st.Outputs[k], v)
			}
		}
		// The outputs make a configuration the binary accepts.
		cfg := config.Default()
		cfg.Cluster, cfg.Region, cfg.QueueURL, cfg.StateTable = st.Outputs["ClusterName"], st.Outputs["Region"], st.Outputs["QueueUrl"], st.Outputs["StateTable"]
		cfg.Bucket, cfg.Prefix, cfg.SSM.Document, cfg.SpoolDir = st.Outputs["BucketName"], st.Outputs["Prefix"], st.Outputs["DocumentName"], st.Outputs["InstallDir"]
		if probs := cfg.Validate(config.RoleController); len(probs) > 0 {
			t.Errorf("the outputs do not make a valid configuration: %v", probs)
		}
		wantArgs := fmt.Sprintf("--queue-url %s --state-table %s --bucket %s --prefix %s --document %s --install-dir %s",
			want["QueueUrl"], want["StateTable"], want["BucketName"], want["Prefix"], want["DocumentName"], want["InstallDir"])
		if st.Outputs["InstallerArgs"] != wantArgs {
			t.Errorf("InstallerArgs %q, want %q", st.Outputs["InstallerArgs"], wantArgs)
		}
	})
}
