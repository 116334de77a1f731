package deploy

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The IAM policies grant what the code calls, on this stack's and the
// cluster's resources, and nothing else. The actions are derived from the
// AWS SDK calls in the source, so a new call without a grant (or a grant
// without a call) fails here rather than at the first Spot interruption.

// sdkToIAM maps an SDK operation (package.Operation, from its *Input type)
// to the IAM actions that authorize it. Operations that are not here fail
// TestPoliciesCoverTheCode until someone maps them.
var sdkToIAM = map[string][]string{
	"sqs.ReceiveMessage":               {"sqs:ReceiveMessage"},
	"sqs.DeleteMessage":                {"sqs:DeleteMessage"},
	"sqs.DeleteMessageBatch":           {"sqs:DeleteMessage"}, // batch calls are authorized as the single action
	"sqs.ChangeMessageVisibility":      {"sqs:ChangeMessageVisibility"},
	"sqs.ChangeMessageVisibilityBatch": {"sqs:ChangeMessageVisibility"},
	"sqs.SendMessage":                  {"sqs:SendMessage"},
	"sqs.SendMessageBatch":             {"sqs:SendMessage"},
	"sqs.GetQueueAttributes":           {"sqs:GetQueueAttributes"},
	"sqs.GetQueueUrl":                  {"sqs:GetQueueUrl"},
	"dynamodb.GetItem":                 {"dynamodb:GetItem"},
	"dynamodb.PutItem":                 {"dynamodb:PutItem"},
	"dynamodb.UpdateItem":              {"dynamodb:UpdateItem"},
	"dynamodb.DeleteItem":              {"dynamodb:DeleteItem"},
	"dynamodb.Query":                   {"dynamodb:Query"},
	"dynamodb.Scan":                    {"dynamodb:Scan"},
	"dynamodb.BatchGetItem":            {"dynamodb:BatchGetItem"},
	"dynamodb.BatchWriteItem":          {"dynamodb:BatchWriteItem"},
	"ssm.SendCommand":                  {"ssm:SendCommand"},
	"ssm.GetCommandInvocation":         {"ssm:GetCommandInvocation"},
	"ssm.ListCommandInvocations":       {"ssm:ListCommandInvocations"},
	"ssm.ListCommands":                 {"ssm:ListCommands"},
	"ssm.CancelCommand":                {"ssm:CancelCommand"},
	"s3.PutObject":                     {"s3:PutObject"},
	"s3.CreateMultipartUpload":         {"s3:PutObject"}, // the multipart calls are authorized as s3:PutObject
	"s3.UploadPart":                    {"s3:PutObject"},
	"s3.CompleteMultipartUpload":       {"s3:PutObject"},
	"s3.AbortMultipartUpload":          {"s3:AbortMultipartUpload"},
	"s3.ListParts":                     {"s3:ListMultipartUploadParts"},
	"s3.ListMultipartUploads":          {"s3:ListBucketMultipartUploads"},
	"s3.GetObject":                     {"s3:GetObject"},
	"s3.HeadObject":                    {"s3:GetObject"},
	"s3.DeleteObject":                  {"s3:DeleteObject"},
	"s3.DeleteObjects":                 {"s3:DeleteObject"}, // authorized per key
	"s3.ListObjectsV2":                 {"s3:ListBucket"},
	"sns.Publish":                      {"sns:Publish"},
}

// Operations that only the lab and the tests use: production tables come
// from the stack. Allowed only in the files named.
var labOnly = map[string]string{
	"dynamodb.CreateTable":      "state/table.go",
	"dynamodb.DescribeTable":    "state/table.go",
	"dynamodb.UpdateTimeToLive": "state/table.go",
}

// Where code runs: the agent and the Slurm hooks run on compute nodes,
// everything else on the head node.
func roleOf(file string) string {
	switch {
	case strings.HasPrefix(file, "rescue/") && file != "rescue/dispatch.go":
		return "compute"
	case file == "controller/cmd/spotrescue/agentcmd.go", file == "controller/cmd/spotrescue/taskprologcmd.go":
		return "compute"
	}
	return "head"
}

var (
	sdkInput = regexp.MustCompile(`\b(sqs|dynamodb|ssm|s3|sns)\.([A-Z][A-Za-z0-9]*)Input\b`)
	// The item kinds of a TransactWriteItems, as dynamodb/types literals.
	transactItem = regexp.MustCompile(`\b(?:types|ddbtypes|dynamodbtypes)\.(Put|Update|Delete|ConditionCheck)\{`)
	sdkImport    = regexp.MustCompile(`"github\.com/aws/aws-sdk-go-v2/service/([a-z0-9]+)(/[a-z0-9/]+)?"`)
)

// codeActions scans the non-test Go files of the packages that ship in the
// binary and returns, per role, the IAM actions their SDK calls need, with
// the file that needs each.
func codeActions(t *testing.T) (map[string]map[string]string, []string) {
	t.Helper()
	need := map[string]map[string]string{"head": {}, "compute": {}}
	var probs []string
	for _, dir := range []string{"controller", "state", "rescue"} {
		err := filepath.WalkDir(filepath.Join("..", dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			file := filepath.ToSlash(strings.TrimPrefix(p, ".."+string(filepath.Separator)))
			for _, m := range sdkImport.FindAllStringSubmatch(string(b), -1) {
				if !slices.Contains([]string{"sqs", "dynamodb", "ssm", "s3", "sns"}, m[1]) {
					probs = append(probs, fmt.Sprintf("%s uses the AWS service %s: grant it in deploy/cloudformation/spotrescue.yaml and map it here", file, m[1]))
				}
			}
			for _, m := range sdkInput.FindAllStringSubmatch(string(b), -1) {
				op := m[1] + "." + m[2]
				if where, ok := labOnly[op]; ok {
					if where != file {
						probs = append(probs, fmt.Sprintf("%s calls %s, which the stack does not grant (only %s may, for the lab)", file, op, where))
					}
					continue
				}
				actions, ok := sdkToIAM[op]
				if op == "dynamodb.TransactWriteItems" {
					// No IAM action of its own: each item is authorized as
					// the single-item action of its kind.
					actions, ok = nil, true
					for _, k := range transactItem.FindAllStringSubmatch(string(b), -1) {
						actions = append(actions, "dynamodb:"+map[string]string{"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}[k[1]])
					}
				}
				if !ok || len(actions) == 0 {
					probs = append(probs, fmt.Sprintf("%s calls %s: add its IAM actions to sdkToIAM and to the stack's policies", file, op))
					continue
				}
				for _, a := range actions {
					need[roleOf(file)][a] = file
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return need, probs
}

// IAM actions this test knows to exist (checked against the Service
// Authorization Reference); a policy naming another fails, so a typo such as
// sqs:DeleteMessageBatch (an API, not an IAM action) cannot slip through.
var knownActions = map[string]bool{
	"sqs:ReceiveMessage": true, "sqs:DeleteMessage": true, "sqs:ChangeMessageVisibility": true, "sqs:SendMessage": true,
	"sqs:GetQueueAttributes": true, "sqs:GetQueueUrl": true,
	"dynamodb:GetItem": true, "dynamodb:PutItem": true, "dynamodb:UpdateItem": true, "dynamodb:DeleteItem": true,
	"dynamodb:Query": true, "dynamodb:Scan": true, "dynamodb:BatchGetItem": true, "dynamodb:BatchWriteItem": true,
	"dynamodb:ConditionCheckItem": true,
	"ssm:SendCommand":             true, "ssm:GetCommandInvocation": true, "ssm:ListCommandInvocations": true, "ssm:ListCommands": true,
	"ssm:CancelCommand": true,
	"s3:PutObject":      true, "s3:GetObject": true, "s3:DeleteObject": true, "s3:AbortMultipartUpload": true,
	"s3:ListBucket": true, "s3:ListBucketMultipartUploads": true, "s3:ListMultipartUploadParts": true,
	"kms:Decrypt": true, "kms:GenerateDataKey": true,
	"sns:Publish": true,
}

// Grants beyond the code's calls, each with its reason (and the template
// says the same next to the statement).
var extraGrants = map[string]map[string]string{
	"head": {
		"s3:GetObject":        "the controller reads manifests through rescue.ReadManifest, and resumed runs' words through rescue.ReadResumed (rescue/ is counted as the agent's)",
		"s3:ListBucket":       "S3 answers 404 rather than 403 for a missing manifest only to callers that may list the bucket; rescue.ReadResumed lists resumed runs' words",
		"kms:Decrypt":         "SSE-KMS queue, table and bucket",
		"kms:GenerateDataKey": "SSE-KMS queue (drills send) and table",
	},
	"compute": {
		"s3:ListBucket":       "S3 answers 404 rather than 403 for a missing manifest only to callers that may list the bucket",
		"kms:Decrypt":         "SSE-KMS bucket: GetObject and multipart uploads",
		"kms:GenerateDataKey": "SSE-KMS bucket: PutObject",
	},
}

type statement struct {
	Sid       string
	Effect    string
	Actions   []string
	Resources []string
	Condition map[string]any
}

func statements(doc any) []statement {
	var out []statement
	for _, s := range path(doc, "Statement").([]any) {
		c, _ := path(s, "Condition").(map[string]any)
		out = append(out, statement{Sid: str(path(s, "Sid")), Effect: str(path(s, "Effect")), Actions: strs(path(s, "Action")), Resources: strs(path(s, "Resource")), Condition: c})
	}
	return out
}

// policyProblems checks one evaluated policy document for role: every
// action is known and Allowed only on the resources it is meant for.
func policyProblems(st *stack, role string, doc any) []string {
	var probs []string
	c, bucket, prefix := st.Params["ClusterName"], bucketOf(st), st.Params["Prefix"]
	table := st.arn("dynamodb", "table/spotrescue-"+c)
	nodeTable := st.arn("dynamodb", "table/parallelcluster-slurm-"+c)
	// Where each action may be allowed, per role.
	allowed := map[string]map[string][]string{
		"head": {
			"sqs:ReceiveMessage":          {st.arn("sqs", "spotrescue-"+c)},
			"sqs:DeleteMessage":           {st.arn("sqs", "spotrescue-"+c)},
			"sqs:ChangeMessageVisibility": {st.arn("sqs", "spotrescue-"+c)},
			"sqs:SendMessage":             {st.arn("sqs", "spotrescue-"+c)},
			"dynamodb:GetItem":            {table, nodeTable},
			"dynamodb:PutItem":            {table},
			"dynamodb:DeleteItem":         {table},
			"dynamodb:BatchGetItem":       {table},
			"dynamodb:BatchWriteItem":     {table},
			"dynamodb:Scan":               {nodeTable},
			"dynamodb:Query":              {table, table + "/index/ByCluster", table + "/index/Active", nodeTable + "/index/InstanceId"},
			"ssm:SendCommand":             {st.arn("ssm", "document/SpotRescue-Rescue-"+c), st.arn("ec2", "instance/*")},
			"ssm:GetCommandInvocation":    {"*"},
			"ssm:CancelCommand":           {"*"},
			"s3:GetObject":                {fmt.Sprintf("arn:aws:s3:::%s/%s/%s/*", bucket, prefix, c)},
			"s3:ListBucket":               {"arn:aws:s3:::" + bucket},
			"kms:Decrypt":                 {st.Params["KmsKeyArn"]},
			"kms:GenerateDataKey":         {st.Params["KmsKeyArn"]},
			"sns:Publish":                 {st.arn("sns", "spotrescue-notices-"+c)},
		},
		"compute": {
			"s3:PutObject":                  {fmt.Sprintf("arn:aws:s3:::%s/%s/%s/*", bucket, prefix, c)},
			"s3:GetObject":                  {fmt.Sprintf("arn:aws:s3:::%s/%s/%s/*", bucket, prefix, c)},
			"s3:AbortMultipartUpload":       {fmt.Sprintf("arn:aws:s3:::%s/%s/%s/*", bucket, prefix, c)},
			"s3:DeleteObject":               {fmt.Sprintf("arn:aws:s3:::%s/%s/%s/*", bucket, prefix, c)},
			"s3:ListBucket":                 {"arn:aws:s3:::" + bucket},
			"s3:ListBucketMultipartUploads": {"arn:aws:s3:::" + bucket},
			"kms:Decrypt":                   {st.Params["KmsKeyArn"]},
			"kms:GenerateDataKey":           {st.Params["KmsKeyArn"]},
		},
	}[role]
	if str(path(doc, "Version")) != "2012-10-17" {
		probs = append(probs, "Version is not 2012-10-17")
	}
	for _, s := range statements(doc) {
		if s.Effect != "Allow" {
			probs = append(probs, fmt.Sprintf("%s: Effect %q in an identity policy", s.Sid, s.Effect))
			continue
		}
		if len(s.Actions) == 0 || len(s.Resources) == 0 {
			probs = append(probs, fmt.Sprintf("%s: no actions or no resources", s.Sid))
		}
		for _, a := range s.Actions {
			if strings.Contains(a, "*") || !knownActions[a] {
				probs = append(probs, fmt.Sprintf("%s: action %q is a wildcard or not a known IAM action", s.Sid, a))
				continue
			}
			for _, r := range s.Resources {
				if !slices.Contains(allowed[a], r) {
					probs = append(probs, fmt.Sprintf("%s: %s on %q, want only %v", s.Sid, a, r, allowed[a]))
				}
			}
		}
		for _, r := range s.Resources {
			switch {
			case r == "*":
				// Only an action without a resource known in advance may use "*".
				if !slices.Equal(s.Actions, []string{"ssm:GetCommandInvocation"}) && !slices.Equal(s.Actions, []string{"ssm:CancelCommand"}) {
					probs = append(probs, fmt.Sprintf("%s: Resource \"*\" for %v", s.Sid, s.Actions))
				}
			case strings.HasSuffix(r, ":instance/*"):
				// Instances are not known in advance: only the cluster's, by tag.
				if got := str(path(s.Condition, "StringEquals", "aws:ResourceTag/parallelcluster:cluster-name")); got != c || len(s.Condition) != 1 {
					probs = append(probs, fmt.Sprintf("%s: %s without the condition aws:ResourceTag/parallelcluster:cluster-name = %s", s.Sid, r, c))
				}
			case strings.HasPrefix(r, "arn:aws:kms:"):
				if len(strs(path(s.Condition, "StringEquals", "kms:ViaService"))) == 0 {
					probs = append(probs, fmt.Sprintf("%s: the key may be used outside SQS, DynamoDB and S3", s.Sid))
				}
			case strings.Contains(r, "*") && !strings.HasSuffix(r, fmt.Sprintf("/%s/%s/*", prefix, c)):
				probs = append(probs, fmt.Sprintf("%s: wildcard resource %q", s.Sid, r))
			}
		}
	}
	return probs
}

// grantedActions lists the Allowed actions of an evaluated policy.
func grantedActions(doc any) map[string]bool {
	out := map[string]bool{}
	for _, s := range statements(doc) {
		if s.Effect == "Allow" {
			for _, a := range s.Actions {
				out[a] = true
			}
		}
	}
	return out
}

func policyDoc(t *testing.T, st *stack, id string) any {
	t.Helper()
	r := st.Resources[id]
	if r == nil || r.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("no managed policy %s", id)
	}
	return r.Properties["PolicyDocument"]
}

func TestPoliciesAreLeastPrivilege(t *testing.T) {
	eachVariant(t, func(t *testing.T, st *stack) {
		for id, role := range map[string]string{"HeadNodePolicy": "head", "ComputeNodePolicy": "compute"} {
			for _, p := range policyProblems(st, role, policyDoc(t, st, id)) {
				t.Errorf("%s: %s", id, p)
			}
		}
		head, compute := grantedActions(policyDoc(t, st, "HeadNodePolicy")), grantedActions(policyDoc(t, st, "ComputeNodePolicy"))
		// The grants that make the controller work at all, spelled out.
		for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "ssm:SendCommand", "ssm:GetCommandInvocation", "s3:GetObject"} {
			if !head[a] {
				t.Errorf("the head node policy lacks %s", a)
			}
		}
		for _, a := range []string{"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"} {
			if !compute[a] {
				t.Errorf("the compute node policy lacks %s", a)
			}
		}
		if head["kms:Decrypt"] != st.hasKMS() || compute["kms:Decrypt"] != st.hasKMS() {
			t.Errorf("KMS grants (head %v, compute %v) do not follow KmsKeyArn %q", head["kms:Decrypt"], compute["kms:Decrypt"], st.Params["KmsKeyArn"])
		}
		// SendCommand is allowed on the document and on the cluster's
		// instances, both: either alone would let it run something else, or
		// run it elsewhere.
		var doc, inst bool
		for _, s := range statements(policyDoc(t, st, "HeadNodePolicy")) {
			if slices.Contains(s.Actions, "ssm:SendCommand") {
				for _, r := range s.Resources {
					doc = doc || strings.HasSuffix(r, ":document/"+st.Outputs["DocumentName"])
					inst = inst || strings.HasSuffix(r, ":instance/*")
				}
			}
		}
		if !doc || !inst {
			t.Errorf("ssm:SendCommand on the document %v, on the cluster's instances %v", doc, inst)
		}
	})
}

// The policies grant exactly what the code calls, plus the documented extras.
func TestPoliciesCoverTheCode(t *testing.T) {
	need, probs := codeActions(t)
	for _, p := range probs {
		t.Error(p)
	}
	if len(need["head"]) == 0 || len(need["compute"]) == 0 {
		t.Fatalf("the source scan found nothing (head %v, compute %v): is it looking at the right files?", need["head"], need["compute"])
	}
	eachVariant(t, func(t *testing.T, st *stack) {
		for id, role := range map[string]string{"HeadNodePolicy": "head", "ComputeNodePolicy": "compute"} {
			granted := grantedActions(policyDoc(t, st, id))
			for _, a := range slices.Sorted(maps.Keys(need[role])) {
				if !granted[a] {
					t.Errorf("%s lacks %s, which %s needs", id, a, need[role][a])
				}
			}
			for _, a := range slices.Sorted(maps.Keys(granted)) {
				if _, used := need[role][a]; !used && extraGrants[role][a] == "" {
					t.Errorf("%s grants %s, which no %s code calls: remove it or document it in extraGrants", id, a, role)
				}
			}
		}
	})
}

// The checks can fail: wildcards, foreign resources and unknown actions are caught.
func TestPolicyCheckCatchesMistakes(t *testing.T) {
	tpl := loadTemplate(t)
	st, err := evaluate(tpl, map[string]string{"ClusterName": "hpc"})
	if err != nil {
		t.Fatal(err)
	}
	stmt := func(action, resource string, cond map[string]any) any {
		s := map[string]any{"Sid": "Bad", "Effect": "Allow", "Action": action, "Resource": resource}
		if cond != nil {
			s["Condition"] = cond
		}
		return map[string]any{"Version": "2012-10-17", "Statement": []any{s}}
	}
	for name, doc := range map[string]any{
		"action wildcard":           stmt("s3:*", "arn:aws:s3:::"+testGeneratedBucket+"/spotrescue/hpc/*", nil),
		"API name, not IAM action":  stmt("sqs:DeleteMessageBatch", st.arn("sqs", "spotrescue-hpc"), nil),
		"resource wildcard":         stmt("dynamodb:Query", "*", nil),
		"another table":             stmt("dynamodb:PutItem", st.arn("dynamodb", "table/other"), nil),
		"objects of other clusters": stmt("s3:GetObject", "arn:aws:s3:::"+testGeneratedBucket+"/spotrescue/*", nil),
		"instances untagged":        stmt("ssm:SendCommand", st.arn("ec2", "instance/*"), nil),
		"another cluster's tag": stmt("ssm:SendCommand", st.arn("ec2", "instance/*"),
			map[string]any{"StringEquals": map[string]any{"aws:ResourceTag/parallelcluster:cluster-name": "other"}}),
		"any document": stmt("ssm:SendCommand", st.arn("ssm", "document/*"), nil),
	} {
		if len(policyProblems(st, "head", doc)) == 0 {
			t.Errorf("%s went unnoticed", name)
		}
	}
	if len(policyProblems(st, "compute", stmt("sqs:ReceiveMessage", st.arn("sqs", "spotrescue-hpc"), nil))) == 0 {
		t.Error("a compute node allowed to consume the queue went unnoticed")
	}
}
