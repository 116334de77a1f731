package main

import (
	"strings"
	"testing"

	"github.com/aws/smithy-go"
)

func TestAccessDeniedNamesActionAndTable(t *testing.T) {
	err := explain(&smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: arn:aws:sts::1:assumed-role/x is not authorized"}, "dynamodb:Query", "spotrescue-hpc")
	for _, want := range []string{"dynamodb:Query", "spotrescue-hpc", "not authorized", "fix:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	err = explain(&smithy.GenericAPIError{Code: "ResourceNotFoundException"}, "dynamodb:Query", "nope")
	if !strings.Contains(err.Error(), "table nope does not exist") {
		t.Errorf("%q", err)
	}
}
