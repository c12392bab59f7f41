package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Code classifies an error. The values and their meaning follow gRPC's
// status codes, so that users and tools can map them one to one.
type Code uint32

// The codes an *Error can carry.
const (
	CodeOK                 Code = 0
	CodeCanceled           Code = 1
	CodeUnknown            Code = 2
	CodeInvalidArgument    Code = 3
	CodeDeadlineExceeded   Code = 4
	CodeNotFound           Code = 5
	CodeAlreadyExists      Code = 6
	CodePermissionDenied   Code = 7
	CodeResourceExhausted  Code = 8
	CodeFailedPrecondition Code = 9
	CodeAborted            Code = 10
	CodeOutOfRange         Code = 11
	CodeUnimplemented      Code = 12
	CodeInternal           Code = 13
	CodeUnavailable        Code = 14
	CodeDataLoss           Code = 15
	CodeUnauthenticated    Code = 16
)

var codeNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated",
}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Error is the error type that crosses the wire: a handler that returns an
// *Error has its code and message delivered to the caller as they are; any
// other handler error arrives as CodeUnknown with the error's text.
//
// errors.Is(err, target) holds for a target *Error with the same code and
// either the same message or an empty one, so
//
//	errors.Is(err, &storks.Error{Code: storks.CodeNotFound})
//
// tests for a code. Errors made by the runtime itself also wrap their cause
// (ErrNoProvider, context.DeadlineExceeded, a network error, ...).
type Error struct {
	Code    Code
	Message string
	cause   error
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NewError returns an *Error with the code and message.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

func wrapError(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), cause: cause}
}

func (e *Error) Error() string {
	return "storks: " + e.Code.String() + ": " + e.Message
}

// Unwrap returns the underlying cause, if the runtime recorded one.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same code and either the
// same message or none.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// CodeOf returns the code of err: CodeOK for nil, the code of an *Error in
// its chain, CodeDeadlineExceeded and CodeCanceled for the context errors,
// and CodeUnknown for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	}
	return CodeUnknown
}

// Sentinel errors. The runtime returns them wrapped in an *Error carrying the
// code noted here, so both errors.Is(err, ErrX) and CodeOf(err) work.
var (
	// ErrNoProvider: no instance is registered for the service key
	// (CodeUnavailable).
	ErrNoProvider = errors.New("no provider")
	// ErrServerClosed: the server is shutting down or closed (CodeUnavailable).
	ErrServerClosed = errors.New("server closed")
	// ErrClientClosed: the client or reference was closed (CodeCanceled).
	ErrClientClosed = errors.New("client closed")
	// ErrMessageTooLarge: a frame exceeded the configured maximum
	// (CodeResourceExhausted).
	ErrMessageTooLarge = errors.New("message too large")
	// ErrConnClosed: the connection the call was sent on broke before the
	// reply arrived (CodeUnavailable).
	ErrConnClosed = errors.New("connection closed")
)

// toError converts any error to an *Error for the wire.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeDeadlineExceeded, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeCanceled, Message: err.Error()}
	}
	return &Error{Code: CodeUnknown, Message: err.Error()}
}
