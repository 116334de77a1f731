package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// serverCost is what an S3 server spends on small requests: the CPU time
// per request says how many requests per second it could serve on this
// machine, and so whether it, rather than the tool being measured, sets
// a benchmark's speed.
type serverCost struct {
	name     string
	requests int
	cpu      time.Duration
	wall     time.Duration
}

func (c serverCost) perRequest() time.Duration { return c.cpu / time.Duration(c.requests) }

func (c serverCost) String() string {
	return fmt.Sprintf("%s: %.2f ms of CPU per request (%d requests in %.1f s, %.0f per second of its CPU)",
		c.name, float64(c.perRequest())/1e6, c.requests, c.wall.Seconds(), float64(c.requests)/c.cpu.Seconds())
}

// Cost probe: PUTs then GETs of small objects with 16 in flight.
const (
	costObjects  = 2000
	costSize     = 4 << 10
	costInFlight = 16
)

// serverCosts measures the benchmark's S3 server and, beside it, moto_server
// (unless that is the server): the same probe on each, in the same run.
func (b *bench) serverCosts(ctx context.Context) ([]serverCost, error) {
	own, err := measureCost(ctx, b.server, b.o.bucket)
	if err != nil {
		return nil, fmt.Errorf("cost per request of %s: %w", b.server.name, err)
	}
	costs := []serverCost{own}
	if b.o.server == "moto" || b.o.sharedS3 {
		return costs, nil
	}
	moto, err := startS3("moto", filepath.Join(b.o.work, "moto-cost"))
	if err != nil {
		return nil, err
	}
	defer moto.stop()
	c, err := s3Client(ctx, moto.url)
	if err != nil {
		return nil, err
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b.o.bucket)}); err != nil {
		return nil, err
	}
	m, err := measureCost(ctx, moto, b.o.bucket)
	if err != nil {
		return nil, fmt.Errorf("cost per request of moto_server: %w", err)
	}
	return append(costs, m), nil
}

func measureCost(ctx context.Context, e *s3Endpoint, bucket string) (serverCost, error) {
	c, err := s3Client(ctx, e.url)
	if err != nil {
		return serverCost{}, err
	}
	body := bytes.Repeat([]byte{7}, costSize)
	key := func(i int) string { return fmt.Sprintf("cost-probe/%03d/%05d", i/100, i) }
	ops := []func(i int) error{
		func(i int) error {
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(i)), Body: bytes.NewReader(body)})
			return err
		},
		func(i int) error {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(i))})
			if err != nil {
				return err
			}
			defer out.Body.Close()
			_, err = io.Copy(io.Discard, out.Body)
			return err
		},
	}
	cpu0, start := cpuTime(e.pid), time.Now()
	for _, op := range ops {
		if err := parallel(costObjects, costInFlight, op); err != nil {
			return serverCost{}, err
		}
	}
	cost := serverCost{name: e.name, requests: len(ops) * costObjects, cpu: cpuTime(e.pid) - cpu0, wall: time.Since(start)}
	for i := 0; i < costObjects; i += 1000 {
		var ids []s3types.ObjectIdentifier
		for j := i; j < min(i+1000, costObjects); j++ {
			ids = append(ids, s3types.ObjectIdentifier{Key: aws.String(key(j))})
		}
		if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			return cost, err
		}
	}
	if cost.cpu <= 0 {
		return cost, errors.New("no CPU time measured (is its process visible in /proc?)")
	}
	return cost, nil
}

// parallel runs f(0..n-1) with k calls at once and returns the first error.
func parallel(n, k int, f func(int) error) error {
	next := make(chan int)
	errs := make(chan error, k)
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}
