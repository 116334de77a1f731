package deploy

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// This file reads a CloudFormation template the way CloudFormation does
// (short-form intrinsic tags included) and evaluates it for one set of
// parameters into concrete resources, so the tests can assert the ARNs,
// names and settings a real stack would get rather than template syntax.

const templatePath = "cloudformation/spotrescue.yaml"

// Pseudo parameters of the evaluated stack.
const (
	testRegion    = "eu-west-1"
	testAccount   = "123456789012"
	testPartition = "aws"
	testStackName = "spotrescue-hpc"
	// What CloudFormation would name the bucket it creates.
	testGeneratedBucket = "spotrescue-hpc-bucket-1a2b3c4d5e6f"
)

// loadTemplate parses the template into plain Go values with every
// short-form tag turned into its long form ({"Ref": x}, {"Fn::Sub": x}, ...).
func loadTemplate(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := parseTemplate(data)
	if err != nil {
		t.Fatalf("%s: %v", templatePath, err)
	}
	return tpl
}

func parseTemplate(data []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	v, err := fromNode(&doc)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the template is not a mapping")
	}
	return m, nil
}

func fromNode(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		return fromNode(n.Content[0])
	case yaml.AliasNode:
		return nil, fmt.Errorf("line %d: CloudFormation does not resolve YAML aliases", n.Line)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %s", n.Content[i].Line, k)
			}
			val, err := fromNode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k] = val
		}
		v = m
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			val, err := fromNode(c)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		v = l
	case yaml.ScalarNode:
		if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			v = n.Value // the value of a tagged scalar is its text
		} else if err := n.Decode(&v); err != nil {
			return nil, err
		}
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	name := strings.TrimPrefix(n.Tag, "!")
	switch name {
	case "Ref", "Condition":
		return map[string]any{name: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, att, ok := strings.Cut(s, ".")
			if !ok {
				return nil, fmt.Errorf("line %d: !GetAtt %q is not Resource.Attribute", n.Line, s)
			}
			v = []any{res, att}
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	case "Sub", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Split", "FindInMap", "Base64", "GetAZs", "ImportValue", "Cidr":
		return map[string]any{"Fn::" + name: v}, nil
	}
	return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
}

// stack is a template evaluated for one set of parameters.
type stack struct {
	place
	Params    map[string]string
	Resources map[string]*resource // only those whose Condition holds
	Outputs   map[string]string
}

type resource struct {
	Type                string
	Properties          map[string]any
	DeletionPolicy      string
	UpdateReplacePolicy string
	Condition           string
}

// place is where a stack is evaluated: region, account, and the name AWS
// gives the bucket the stack creates.
type place struct {
	Region, Account, GeneratedBucket string
}

var testPlace = place{Region: testRegion, Account: testAccount, GeneratedBucket: testGeneratedBucket}

type evaluator struct {
	place
	params map[string]string
	conds  map[string]bool
	refs   map[string]string // logical id -> Ref
	atts   map[string]string // "Logical.Attr" -> value
}

// noValue is AWS::NoValue: the property, or list element, disappears.
type noValueT struct{}

var noValue = noValueT{}

// evaluate resolves the template for the given parameters (defaults fill
// the rest) the way CloudFormation would, with made-up physical ids for
// what AWS names itself.
func evaluate(tpl map[string]any, given map[string]string) (*stack, error) {
	return evaluateAt(tpl, given, testPlace)
}

func evaluateAt(tpl map[string]any, given map[string]string, at place) (*stack, error) {
	e := &evaluator{place: at, params: map[string]string{}, conds: map[string]bool{}, refs: map[string]string{}, atts: map[string]string{}}
	params, _ := tpl["Parameters"].(map[string]any)
	for name, p := range params {
		def, hasDefault := p.(map[string]any)["Default"]
		switch v, ok := given[name]; {
		case ok:
			e.params[name] = v
		case hasDefault:
			e.params[name] = fmt.Sprint(def)
		default:
			return nil, fmt.Errorf("parameter %s has no default and no value", name)
		}
		if pat, ok := p.(map[string]any)["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(e.params[name]) {
			return nil, fmt.Errorf("parameter %s=%q does not match its AllowedPattern %s", name, e.params[name], pat)
		}
		if allowed, ok := p.(map[string]any)["AllowedValues"].([]any); ok && !slices.Contains(strs(allowed), e.params[name]) {
			return nil, fmt.Errorf("parameter %s=%q is not one of %v", name, e.params[name], allowed)
		}
		for bound, outside := range map[string]func(v, b float64) bool{"MinValue": func(v, b float64) bool { return v < b }, "MaxValue": func(v, b float64) bool { return v > b }} {
			if b, ok := p.(map[string]any)[bound]; ok {
				v, err := strconv.ParseFloat(e.params[name], 64)
				if err != nil || outside(v, float64(b.(int))) {
					return nil, fmt.Errorf("parameter %s=%q is outside its %s %v", name, e.params[name], bound, b)
				}
			}
		}
	}
	for name := range given {
		if _, ok := params[name]; !ok {
			return nil, fmt.Errorf("no parameter %s", name)
		}
	}
	conds, _ := tpl["Conditions"].(map[string]any)
	// Conditions may refer to each other; evaluate until all are known.
	for pending := len(conds); pending > 0; {
		progress := false
		for name, c := range conds {
			if _, done := e.conds[name]; done {
				continue
			}
			v, err := e.eval(c)
			if err != nil {
				continue
			}
			b, ok := v.(bool)
			if !ok {
				return nil, fmt.Errorf("condition %s is not a boolean", name)
			}
			e.conds[name], progress = b, true
			pending--
		}
		if !progress {
			return nil, fmt.Errorf("conditions cannot be resolved: %v", slices.Sorted(maps.Keys(conds)))
		}
	}

	st := &stack{place: at, Params: e.params, Resources: map[string]*resource{}, Outputs: map[string]string{}}
	raw, _ := tpl["Resources"].(map[string]any)
	// Physical names first: they depend on parameters only.
	for id, r := range raw {
		rm := r.(map[string]any)
		if c, ok := rm["Condition"].(string); ok {
			holds, known := e.conds[c]
			if !known {
				return nil, fmt.Errorf("resource %s: unknown condition %s", id, c)
			}
			if !holds {
				continue
			}
		}
		props, _ := rm["Properties"].(map[string]any)
		name := func(key string) (string, error) {
			v, err := e.eval(props[key])
			if err != nil {
				return "", fmt.Errorf("resource %s %s: %w", id, key, err)
			}
			s, _ := v.(string)
			if s == "" {
				return "", fmt.Errorf("resource %s: no %s", id, key)
			}
			return s, nil
		}
		typ, _ := rm["Type"].(string)
		arn := func(service, res string) string {
			return fmt.Sprintf("arn:%s:%s:%s:%s:%s", testPartition, service, at.Region, at.Account, res)
		}
		switch typ {
		case "AWS::SQS::Queue":
			n, err := name("QueueName")
			if err != nil {
				return nil, err
			}
			e.refs[id] = fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", at.Region, at.Account, n)
			e.atts[id+".Arn"] = arn("sqs", n)
			e.atts[id+".QueueName"] = n
		case "AWS::Events::Rule":
			n, err := name("Name")
			if err != nil {
				return nil, err
			}
			e.refs[id] = n
			e.atts[id+".Arn"] = arn("events", "rule/"+n)
		case "AWS::DynamoDB::Table":
			n, err := name("TableName")
			if err != nil {
				return nil, err
			}
			e.refs[id] = n
			e.atts[id+".Arn"] = arn("dynamodb", "table/"+n)
		case "AWS::S3::Bucket":
			e.refs[id] = at.GeneratedBucket
			e.atts[id+".Arn"] = "arn:aws:s3:::" + at.GeneratedBucket
		case "AWS::SSM::Document":
			n, err := name("Name")
			if err != nil {
				return nil, err
			}
			e.refs[id] = n
		case "AWS::SNS::Topic":
			n, err := name("TopicName")
			if err != nil {
				return nil, err
			}
			e.refs[id] = arn("sns", n) // a topic's Ref is its ARN
			e.atts[id+".TopicArn"] = arn("sns", n)
			e.atts[id+".TopicName"] = n
		case "AWS::IAM::ManagedPolicy":
			e.refs[id] = fmt.Sprintf("arn:aws:iam::%s:policy/%s-%s-ABCDEF", at.Account, testStackName, id)
		case "AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy":
			e.refs[id] = id
		default:
			return nil, fmt.Errorf("resource %s: the evaluator does not know %s; teach it", id, typ)
		}
		dp, _ := rm["DeletionPolicy"].(string)
		urp, _ := rm["UpdateReplacePolicy"].(string)
		cond, _ := rm["Condition"].(string)
		st.Resources[id] = &resource{Type: typ, DeletionPolicy: dp, UpdateReplacePolicy: urp, Condition: cond}
	}
	for id, r := range st.Resources {
		props, err := e.eval(raw[id].(map[string]any)["Properties"])
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", id, err)
		}
		r.Properties, _ = props.(map[string]any)
	}
	outs, _ := tpl["Outputs"].(map[string]any)
	for name, o := range outs {
		om := o.(map[string]any)
		if c, ok := om["Condition"].(string); ok && !e.conds[c] {
			continue
		}
		v, err := e.eval(om["Value"])
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("output %s is %T, not a string", name, v)
		}
		st.Outputs[name] = s
	}
	return st, nil
}

func (e *evaluator) ref(name string) (any, error) {
	pseudo := map[string]string{
		"AWS::Region":    e.Region,
		"AWS::AccountId": e.Account,
		"AWS::Partition": testPartition,
		"AWS::StackName": testStackName,
		"AWS::URLSuffix": "amazonaws.com",
	}
	if name == "AWS::NoValue" {
		return noValue, nil
	}
	if v, ok := pseudo[name]; ok {
		return v, nil
	}
	if v, ok := e.params[name]; ok {
		return v, nil
	}
	if v, ok := e.refs[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("Ref to unknown or absent %s", name)
}

func (e *evaluator) eval(v any) (any, error) {
	switch x := v.(type) {
	case []any:
		out := []any{}
		for _, el := range x {
			r, err := e.eval(el)
			if err != nil {
				return nil, err
			}
			if r != noValue {
				out = append(out, r)
			}
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
					return e.intrinsic(k, arg)
				}
			}
		}
		out := map[string]any{}
		for k, el := range x {
			r, err := e.eval(el)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if r != noValue {
				out[k] = r
			}
		}
		return out, nil
	}
	return v, nil
}

func (e *evaluator) intrinsic(fn string, arg any) (any, error) {
	args, _ := arg.([]any)
	switch fn {
	case "Ref":
		return e.ref(fmt.Sprint(arg))
	case "Condition":
		b, ok := e.conds[fmt.Sprint(arg)]
		if !ok {
			return nil, fmt.Errorf("condition %v not known yet", arg)
		}
		return b, nil
	case "Fn::GetAtt":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::GetAtt needs [Resource, Attribute]")
		}
		key := fmt.Sprintf("%v.%v", args[0], args[1])
		if v, ok := e.atts[key]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("GetAtt %s: unknown or absent", key)
	case "Fn::If":
		if len(args) != 3 {
			return nil, fmt.Errorf("Fn::If needs 3 arguments")
		}
		b, ok := e.conds[fmt.Sprint(args[0])]
		if !ok {
			return nil, fmt.Errorf("Fn::If: unknown condition %v", args[0])
		}
		if b {
			return e.eval(args[1])
		}
		return e.eval(args[2])
	case "Fn::Equals":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Equals needs 2 arguments")
		}
		a, err := e.eval(args[0])
		if err != nil {
			return nil, err
		}
		b, err := e.eval(args[1])
		if err != nil {
			return nil, err
		}
		return fmt.Sprint(a) == fmt.Sprint(b), nil
	case "Fn::Not", "Fn::And", "Fn::Or":
		vals := []bool{}
		for _, a := range args {
			r, err := e.eval(a)
			if err != nil {
				return nil, err
			}
			b, ok := r.(bool)
			if !ok {
				return nil, fmt.Errorf("%s of a non-boolean", fn)
			}
			vals = append(vals, b)
		}
		switch fn {
		case "Fn::Not":
			if len(vals) != 1 {
				return nil, fmt.Errorf("Fn::Not needs 1 argument")
			}
			return !vals[0], nil
		case "Fn::And":
			return !slices.Contains(vals, false), nil
		default:
			return slices.Contains(vals, true), nil
		}
	case "Fn::Sub":
		return e.sub(arg)
	}
	return nil, fmt.Errorf("the evaluator does not implement %s; teach it", fn)
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (e *evaluator) sub(arg any) (any, error) {
	tmpl, vars := "", map[string]any{}
	switch a := arg.(type) {
	case string:
		tmpl = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::Sub needs a string or [string, map]")
		}
		tmpl, _ = a[0].(string)
		m, _ := a[1].(map[string]any)
		for k, v := range m {
			r, err := e.eval(v)
			if err != nil {
				return nil, err
			}
			vars[k] = r
		}
	default:
		return nil, fmt.Errorf("Fn::Sub of %T", arg)
	}
	var firstErr error
	out := subVar.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		var v any
		var err error
		if x, ok := vars[name]; ok {
			v = x
		} else if res, att, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
			v, err = e.intrinsic("Fn::GetAtt", []any{res, att})
		} else {
			v, err = e.ref(name)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return fmt.Sprint(v)
	})
	return out, firstErr
}

// Helpers for walking evaluated values.

func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// strs reads an IAM-style "string or list of strings".
func strs(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(x))
		for _, el := range x {
			out = append(out, str(el))
		}
		return out
	}
	return []string{str(v)}
}

func sortedStrs(v any) []string {
	s := strs(v)
	sort.Strings(s)
	return s
}

// variants are the parameter sets every template test is run with: each
// combination of the two conditions, and non-default names where they
// could be hard-coded by mistake.
var variants = map[string]map[string]string{
	"created bucket, no KMS": {"ClusterName": "hpc"},
	"created bucket, KMS": {"ClusterName": "hpc", "KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"Prefix": "teams/rescue", "InstallDir": "/shared/tools/sr", "MaxReceiveCount": "7", "RetentionDays": "3", "BucketVersioning": "Enabled"},
	"given bucket, no KMS": {"ClusterName": "genomics-2", "BucketName": "lab-scratch-rescue",
		"DrillSenderArn": "arn:aws:iam::123456789012:role/parallelcluster/genomics-2/*"},
	"given bucket, KMS": {"ClusterName": "genomics-2", "BucketName": "lab-scratch-rescue",
		"KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "CreateNotifyTopic": "true"},
}

// eachVariant evaluates the template for every variant.
func eachVariant(t *testing.T, f func(t *testing.T, st *stack)) {
	tpl := loadTemplate(t)
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		t.Run(name, func(t *testing.T) {
			st, err := evaluate(tpl, variants[name])
			if err != nil {
				t.Fatal(err)
			}
			f(t, st)
		})
	}
}

// bucketOf is the bucket a variant ends up using.
func bucketOf(st *stack) string {
	if b := st.Params["BucketName"]; b != "" {
		return b
	}
	return st.GeneratedBucket
}

func (st *stack) hasKMS() bool { return st.Params["KmsKeyArn"] != "" }

// only returns the one resource of a type, failing if there is not exactly one.
func (st *stack) only(t *testing.T, typ string) (string, *resource) {
	t.Helper()
	var ids []string
	for id, r := range st.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("want exactly one %s, got %v", typ, ids)
	}
	return ids[0], st.Resources[ids[0]]
}

func (st *stack) ofType(typ string) map[string]*resource {
	out := map[string]*resource{}
	for id, r := range st.Resources {
		if r.Type == typ {
			out[id] = r
		}
	}
	return out
}

func (st *stack) arn(service, res string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", testPartition, service, st.Region, st.Account, res)
}

// The evaluator itself must be right for the other tests to mean anything.
func TestEvaluatorResolvesIntrinsics(t *testing.T) {
	tpl, err := parseTemplate([]byte(`
Parameters:
  Name: {Type: String}
  Key: {Type: String, Default: ""}
Conditions:
  HasKey: !Not [!Equals [!Ref Key, ""]]
  Both: !And [!Condition HasKey, !Equals [!Ref Name, x]]
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub q-${Name}
      KmsMasterKeyId: !If [HasKey, !Ref Key, !Ref AWS::NoValue]
      List: [a, !If [HasKey, b, !Ref AWS::NoValue], !Sub "${Q.Arn}/${!Literal}", !Sub ["${X}-${AWS::Region}", {X: !GetAtt Q.QueueName}]]
  B:
    Type: AWS::S3::Bucket
    Condition: Both
Outputs:
  Url: {Value: !Ref Q}
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := evaluate(tpl, map[string]string{"Name": "n"})
	if err != nil {
		t.Fatal(err)
	}
	q := st.Resources["Q"].Properties
	if got := strs(q["List"]); !slices.Equal(got, []string{"a", "arn:aws:sqs:eu-west-1:123456789012:q-n/${Literal}", "q-n-eu-west-1"}) {
		t.Errorf("List = %q", got)
	}
	if _, ok := q["KmsMasterKeyId"]; ok {
		t.Error("AWS::NoValue did not remove the property")
	}
	if _, ok := st.Resources["B"]; ok {
		t.Error("a resource whose condition is false was kept")
	}
	if st.Outputs["Url"] != "https://sqs.eu-west-1.amazonaws.com/123456789012/q-n" {
		t.Errorf("Url = %q", st.Outputs["Url"])
	}
	st, err = evaluate(tpl, map[string]string{"Name": "x", "Key": "k"})
	if err != nil {
		t.Fatal(err)
	}
	if str(st.Resources["Q"].Properties["KmsMasterKeyId"]) != "k" || len(strs(st.Resources["Q"].Properties["List"])) != 4 || st.Resources["B"] == nil {
		t.Errorf("with a key: %+v", st.Resources["Q"].Properties)
	}
	if _, err := evaluate(tpl, map[string]string{}); err == nil {
		t.Error("a missing parameter without default was accepted")
	}
	if _, err := parseTemplate([]byte("A: !Bogus x\n")); err == nil {
		t.Error("an unknown tag was accepted")
	}
}
