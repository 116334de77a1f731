package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// InstanceAction asks the instance metadata service (IMDSv2) when EC2 will
// act on this instance. It returns the zero time when no action is
// scheduled or IMDS cannot be reached within the context.
func InstanceAction(ctx context.Context, c *imds.Client) (time.Time, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: "spot/instance-action"})
	if err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
			return time.Time{}, nil // no interruption scheduled
		}
		return time.Time{}, fmt.Errorf("imds spot/instance-action: %w", err)
	}
	defer out.Content.Close()
	var action struct {
		Action string    `json:"action"`
		Time   time.Time `json:"time"`
	}
	if err := json.NewDecoder(io.LimitReader(out.Content, 4096)).Decode(&action); err != nil {
		return time.Time{}, fmt.Errorf("imds spot/instance-action: %w", err)
	}
	return action.Time, nil
}

// InstanceID asks IMDS for this instance's id.
func InstanceID(ctx context.Context, c *imds.Client) (string, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: "instance-id"})
	if err != nil {
		return "", fmt.Errorf("imds instance-id: %w", err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 64))
	return string(b), err
}
