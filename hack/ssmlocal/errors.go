package main

import (
	"fmt"
	"net/http"
)

// Error codes as SSM puts them in the "__type" field. The SDK maps each one
// to the identically named type in service/ssm/types, so they must match the
// service model exactly.
const (
	codeDuplicateInstanceID    = "DuplicateInstanceId"
	codeInternalServerError    = "InternalServerError"
	codeInvalidCommandID       = "InvalidCommandId"
	codeInvalidDocument        = "InvalidDocument"
	codeInvalidInstanceID      = "InvalidInstanceId"
	codeInvalidNextToken       = "InvalidNextToken"
	codeInvalidParameters      = "InvalidParameters"
	codeInvalidPluginName      = "InvalidPluginName"
	codeInvocationDoesNotExist = "InvocationDoesNotExist"
	codeSerialization          = "SerializationException"
	codeUnknownOperation       = "UnknownOperationException"
	codeValidation             = "ValidationException"
)

// apiError is an error the client caused (or, for InternalServerError, one
// we did) that is reported in the AWS JSON 1.1 error shape.
type apiError struct {
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// httpStatus is 400 for everything but server faults, because the SDK only
// decodes "__type" into a typed error; the status merely decides retries.
func (e *apiError) httpStatus() int {
	if e.code == codeInternalServerError {
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}
