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
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			// A rescue has two minutes: retry throttling and 5xx a few
			// times quickly rather than failing the step.
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 5 })
		}),
	}
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
		o.Retryer = s3Retryer()
		o.UsePathStyle = custom
		// Manifests carry whole-file CRC32C checksums that the agent verifies;
		// the SDK's note about skipped part checksums is noise in our logs.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// s3Retryer backs off from S3's 503 SlowDown and 5xx for as long as a
// rescue's window allows. The SDK's default retryer also spends a shared
// quota on each retry: with a node's worth of requests in flight against a
// prefix at S3's rate limit, a few seconds of SlowDown empty it and every
// request after that fails at once, with "retry quota exceeded", instead of
// waiting its turn (rescue/retry_lab_test.go shows it). Attempts are
// bounded, and each upload also by the rescue's deadline.
func s3Retryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 10
		o.MaxBackoff = 2 * time.Second
		o.RateLimiter = ratelimit.None
	})
}
