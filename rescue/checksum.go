package rescue

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"hash/crc32"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Checksum algorithms a manifest may name in checksum_algorithm. Both are
// computed over a file's whole content and stored base64-encoded, as S3
// encodes its own checksum headers.
const (
	ChecksumCRC32C = "CRC32C" // the default: hardware-accelerated, ~10x faster than SHA256
	ChecksumSHA256 = "SHA256" // for sites that require a cryptographic digest
)

// ChecksumAlgorithm is the algorithm used when a plan names none.
const ChecksumAlgorithm = ChecksumCRC32C

// ValidChecksum reports whether name is an algorithm the agent supports;
// "" means the default.
func ValidChecksum(name string) bool {
	_, err := checksumFor(name)
	return err == nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is one algorithm: how to compute it and how to hand a value
// computed by the agent to S3, which then verifies what it received.
type checksum string

func checksumFor(name string) (checksum, error) {
	switch name {
	case "", ChecksumCRC32C:
		return ChecksumCRC32C, nil
	case ChecksumSHA256:
		return ChecksumSHA256, nil
	}
	return "", fmt.Errorf("checksum algorithm %q is not %s or %s", name, ChecksumCRC32C, ChecksumSHA256)
}

func (c checksum) new() hash.Hash {
	if c == ChecksumSHA256 {
		return sha256.New()
	}
	return crc32.New(castagnoli)
}

// sum returns the encoded checksum of b.
func (c checksum) sum(b []byte) string {
	h := c.new()
	h.Write(b)
	return encodeSum(h)
}

func encodeSum(h hash.Hash) string { return base64.StdEncoding.EncodeToString(h.Sum(nil)) }

// valid reports whether v is an encoded checksum of this algorithm.
func (c checksum) valid(v string) bool {
	b, err := base64.StdEncoding.DecodeString(v)
	return err == nil && len(b) == c.new().Size()
}

func (c checksum) s3() s3types.ChecksumAlgorithm {
	if c == ChecksumSHA256 {
		return s3types.ChecksumAlgorithmSha256
	}
	return s3types.ChecksumAlgorithmCrc32c
}

// Giving S3 the value the agent computed from the bytes it read means S3
// rejects the request if what arrived differs, and the SDK does not hash
// the body a second time.
func (c checksum) setPut(in *s3.PutObjectInput, v string) {
	in.ChecksumAlgorithm = c.s3()
	if c == ChecksumSHA256 {
		in.ChecksumSHA256 = aws.String(v)
	} else {
		in.ChecksumCRC32C = aws.String(v)
	}
}

func (c checksum) setPart(in *s3.UploadPartInput, v string) {
	in.ChecksumAlgorithm = c.s3()
	if c == ChecksumSHA256 {
		in.ChecksumSHA256 = aws.String(v)
	} else {
		in.ChecksumCRC32C = aws.String(v)
	}
}

func (c checksum) completed(num int32, etag *string, v string) s3types.CompletedPart {
	p := s3types.CompletedPart{PartNumber: aws.Int32(num), ETag: etag}
	if c == ChecksumSHA256 {
		p.ChecksumSHA256 = aws.String(v)
	} else {
		p.ChecksumCRC32C = aws.String(v)
	}
	return p
}
