package rescue

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// AWSConfig loads the SDK's standard chain (credentials, AWS_ENDPOINT_URL*),
// with the region from our configuration when it is set: the one AWS
// configuration of every spotrescue command.
func AWSConfig(ctx context.Context, region string) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRetryer(adaptiveRetryer)}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// NewS3 is the S3 client of every spotrescue command. It addresses S3
// path-style when a custom endpoint is configured: S3-compatible stores
// rarely serve virtual-hosted buckets.
func NewS3(cfg aws.Config) *s3.Client {
	custom := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Retryer = retryer()
		o.UsePathStyle = custom
		// Manifests carry whole-file CRC32C checksums that the agent verifies;
		// the SDK's note about skipped part checksums is noise in our logs.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// retryer backs off from throttling (S3's 503 SlowDown, DynamoDB's and
// SSM's ThrottlingException) and 5xx, quickly enough for a rescue's two
// minutes. The SDK's default retryer also spends a shared quota on each
// retry: with a node's worth of uploads against one S3 prefix, a few
// seconds of SlowDown empty it and every request after that fails at once,
// with "retry quota exceeded", instead of waiting its turn
// (TestSlowDownBacksOffAndSavesEverything). Attempts are bounded, and
// every call also by its step's deadline. The agent's S3 client uses it as
// it is: S3 limits each prefix, and a node's uploads spread over many.
func retryer() aws.Retryer {
	return retry.NewStandard(standardOptions)
}

func standardOptions(o *retry.StandardOptions) {
	o.MaxAttempts = 10
	o.MaxBackoff = 2 * time.Second
	o.RateLimiter = ratelimit.None
}

// adaptiveRetryer is retryer plus the SDK's adaptive client-side rate
// limit: once a service throttles, the client sends no faster than the
// rate it is being served at, and calls wait their turn rather than spend
// their attempts. The controller's clients use it: a mass reclaim sends
// hundreds of records to one table and commands to one Region's SSM, and a
// throttled step that failed would wait for Reconcile's backoff instead
// (TestThrottledCreatesAllLand: 300 records through a 15 writes a second
// limit all land; with attempts alone some did not).
func adaptiveRetryer() aws.Retryer {
	return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
		o.StandardOptions = append(o.StandardOptions, standardOptions)
	})
}
