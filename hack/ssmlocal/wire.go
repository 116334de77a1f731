package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Wire shapes of the SSM operations we serve. Member names and JSON types
// follow the service model the SDK is generated from
// (service/ssm/schemas/schemas.go): "DateTime" members are epoch-second
// numbers, while GetCommandInvocation's Execution*DateTime members are
// "StringDateTime" strings.

type sendCommandInput struct {
	DocumentName    string              `json:"DocumentName"`
	DocumentVersion string              `json:"DocumentVersion"`
	InstanceIds     []string            `json:"InstanceIds"`
	Targets         []json.RawMessage   `json:"Targets"`
	Parameters      map[string][]string `json:"Parameters"`
	TimeoutSeconds  *int32              `json:"TimeoutSeconds"`
	Comment         string              `json:"Comment"`
	MaxConcurrency  string              `json:"MaxConcurrency"`
	MaxErrors       string              `json:"MaxErrors"`
}

type sendCommandOutput struct {
	Command commandJSON `json:"Command"`
}

type commandJSON struct {
	CommandID              string                 `json:"CommandId"`
	DocumentName           string                 `json:"DocumentName"`
	DocumentVersion        string                 `json:"DocumentVersion"`
	Comment                string                 `json:"Comment"`
	ExpiresAfter           epochTime              `json:"ExpiresAfter,omitzero"`
	Parameters             map[string][]string    `json:"Parameters"`
	InstanceIDs            []string               `json:"InstanceIds"`
	Targets                []json.RawMessage      `json:"Targets"`
	RequestedDateTime      epochTime              `json:"RequestedDateTime,omitzero"`
	Status                 string                 `json:"Status"`
	StatusDetails          string                 `json:"StatusDetails"`
	OutputS3Region         string                 `json:"OutputS3Region"`
	OutputS3BucketName     string                 `json:"OutputS3BucketName"`
	OutputS3KeyPrefix      string                 `json:"OutputS3KeyPrefix"`
	MaxConcurrency         string                 `json:"MaxConcurrency"`
	MaxErrors              string                 `json:"MaxErrors"`
	TargetCount            int                    `json:"TargetCount"`
	CompletedCount         int                    `json:"CompletedCount"`
	ErrorCount             int                    `json:"ErrorCount"`
	DeliveryTimedOutCount  int                    `json:"DeliveryTimedOutCount"`
	ServiceRole            string                 `json:"ServiceRole"`
	CloudWatchOutputConfig cloudWatchOutputConfig `json:"CloudWatchOutputConfig"`
	TimeoutSeconds         int32                  `json:"TimeoutSeconds"`
}

type cloudWatchOutputConfig struct {
	CloudWatchLogGroupName  string `json:"CloudWatchLogGroupName"`
	CloudWatchOutputEnabled bool   `json:"CloudWatchOutputEnabled"`
}

type getCommandInvocationInput struct {
	CommandID  string `json:"CommandId"`
	InstanceID string `json:"InstanceId"`
	PluginName string `json:"PluginName"`
}

type getCommandInvocationOutput struct {
	CommandID              string                 `json:"CommandId"`
	InstanceID             string                 `json:"InstanceId"`
	Comment                string                 `json:"Comment"`
	DocumentName           string                 `json:"DocumentName"`
	DocumentVersion        string                 `json:"DocumentVersion"`
	PluginName             string                 `json:"PluginName"`
	ResponseCode           int                    `json:"ResponseCode"`
	ExecutionStartDateTime string                 `json:"ExecutionStartDateTime"`
	ExecutionElapsedTime   string                 `json:"ExecutionElapsedTime"`
	ExecutionEndDateTime   string                 `json:"ExecutionEndDateTime"`
	Status                 string                 `json:"Status"`
	StatusDetails          string                 `json:"StatusDetails"`
	StandardOutputContent  string                 `json:"StandardOutputContent"`
	StandardOutputURL      string                 `json:"StandardOutputUrl"`
	StandardErrorContent   string                 `json:"StandardErrorContent"`
	StandardErrorURL       string                 `json:"StandardErrorUrl"`
	CloudWatchOutputConfig cloudWatchOutputConfig `json:"CloudWatchOutputConfig"`
}

type listCommandInvocationsInput struct {
	CommandID  string            `json:"CommandId"`
	InstanceID string            `json:"InstanceId"`
	MaxResults *int32            `json:"MaxResults"`
	NextToken  string            `json:"NextToken"`
	Filters    []json.RawMessage `json:"Filters"`
	Details    bool              `json:"Details"`
}

type listCommandInvocationsOutput struct {
	CommandInvocations []commandInvocationJSON `json:"CommandInvocations"`
	NextToken          string                  `json:"NextToken,omitempty"`
}

type commandInvocationJSON struct {
	CommandID              string                 `json:"CommandId"`
	InstanceID             string                 `json:"InstanceId"`
	InstanceName           string                 `json:"InstanceName"`
	Comment                string                 `json:"Comment"`
	DocumentName           string                 `json:"DocumentName"`
	DocumentVersion        string                 `json:"DocumentVersion"`
	RequestedDateTime      epochTime              `json:"RequestedDateTime,omitzero"`
	Status                 string                 `json:"Status"`
	StatusDetails          string                 `json:"StatusDetails"`
	TraceOutput            string                 `json:"TraceOutput"`
	StandardOutputURL      string                 `json:"StandardOutputUrl"`
	StandardErrorURL       string                 `json:"StandardErrorUrl"`
	CommandPlugins         []commandPluginJSON    `json:"CommandPlugins"`
	ServiceRole            string                 `json:"ServiceRole"`
	CloudWatchOutputConfig cloudWatchOutputConfig `json:"CloudWatchOutputConfig"`
}

type commandPluginJSON struct {
	Name                   string    `json:"Name"`
	Status                 string    `json:"Status"`
	StatusDetails          string    `json:"StatusDetails"`
	ResponseCode           int       `json:"ResponseCode"`
	ResponseStartDateTime  epochTime `json:"ResponseStartDateTime,omitzero"`
	ResponseFinishDateTime epochTime `json:"ResponseFinishDateTime,omitzero"`
	Output                 string    `json:"Output"`
	StandardOutputURL      string    `json:"StandardOutputUrl"`
	StandardErrorURL       string    `json:"StandardErrorUrl"`
	OutputS3Region         string    `json:"OutputS3Region"`
	OutputS3BucketName     string    `json:"OutputS3BucketName"`
	OutputS3KeyPrefix      string    `json:"OutputS3KeyPrefix"`
}

type listCommandsInput struct {
	CommandID  string            `json:"CommandId"`
	InstanceID string            `json:"InstanceId"`
	MaxResults *int32            `json:"MaxResults"`
	NextToken  string            `json:"NextToken"`
	Filters    []json.RawMessage `json:"Filters"`
}

type listCommandsOutput struct {
	Commands  []commandJSON `json:"Commands"`
	NextToken string        `json:"NextToken,omitempty"`
}

type cancelCommandInput struct {
	CommandID   string   `json:"CommandId"`
	InstanceIds []string `json:"InstanceIds"`
}

type cancelCommandOutput struct{}

// epochTime encodes as epoch seconds with millisecond precision, the
// awsJson1_1 default for timestamp members.
type epochTime time.Time

func (t epochTime) IsZero() bool { return time.Time(t).IsZero() }

func (t epochTime) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)), nil
}

// ssmTimeLayout is how GetCommandInvocation and the EventBridge detail
// render times, e.g. "2020-02-19T18:18:03.419Z".
const ssmTimeLayout = "2006-01-02T15:04:05.000Z"

// stringTime renders a StringDateTime member; SSM sends "" for times that
// have not happened yet rather than leaving the member out.
func stringTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(ssmTimeLayout)
}

// isoDuration renders ExecutionElapsedTime the way SSM does (Java's
// Duration.toString at millisecond precision), e.g. "PT0.091S", "PT1M2.5S".
func isoDuration(d time.Duration) string {
	d = d.Round(time.Millisecond)
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		b.WriteString(strconv.Itoa(int(h)) + "H")
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		b.WriteString(strconv.Itoa(int(m)) + "M")
		d -= m * time.Minute
	}
	if d > 0 || b.Len() == 2 {
		s := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		b.WriteString(s + "S")
	}
	return b.String()
}
