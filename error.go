package remediator

import (
	"context"
	"errors"
	"fmt"
)

// Error codes. Each says what kind of failure happened; HTTP handlers map them to statuses and
// the queue maps them to ack, nak or term, each in one place.
const (
	// EINVALID is bad input: it will never succeed as it is.
	EINVALID = "invalid"
	// ENOTFOUND is a missing incident, cluster or remediation.
	ENOTFOUND = "not_found"
	// EUNAUTHORIZED is a missing or wrong credential.
	EUNAUTHORIZED = "unauthorized"
	// EFORBIDDEN is a known caller that may not do this, such as a user who is no approver.
	EFORBIDDEN = "forbidden"
	// ETOOLARGE is a payload over its size limit.
	ETOOLARGE = "too_large"
	// ECONFLICT is a lost compare-and-set race: trying again may succeed.
	ECONFLICT = "conflict"
	// EREFUSED is a request the current state refuses, such as an approval of an incident
	// that waits for none, or a second approval by the same person.
	EREFUSED = "refused"
	// EUNAVAILABLE is a dependency that is down or slow: trying again later may succeed.
	EUNAVAILABLE = "unavailable"
	// EPRECONDITION is a safety check that refused to go on: it needs a human, not a retry.
	EPRECONDITION = "failed_precondition"
	// ENOTHING is a step's proof that the problem is not there (*NothingToDo): done, not failed.
	ENOTHING = "nothing_to_do"
	// EINTERNAL is everything else, including bugs.
	EINTERNAL = "internal"
)

// Error is an error with a code and a message fit to show to the operator.
type Error struct {
	Code    string
	Message string
	Err     error
}

// Errorf returns an *Error with the code and a formatted message; a %w verb wraps its operand.
func Errorf(code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), Err: errors.Unwrap(err)}
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the wrapped error, so errors.Is sees through the code.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the outermost *Error in err's chain; a context that ran out or
// was cancelled (a shutdown) is EUNAVAILABLE and anything else EINTERNAL. A nil error has no
// code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var nothing *NothingToDo
	if errors.As(err, &nothing) {
		return ENOTHING
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return EUNAVAILABLE
	}
	return EINTERNAL
}

// Retriable says whether trying the same thing again later may succeed.
func Retriable(err error) bool {
	switch ErrorCode(err) {
	case EUNAVAILABLE, ECONFLICT:
		return true
	}
	return false
}

// NothingToDo is a step's finding that the problem its remediation answers is not there: the
// remediation proves the problem exists before it changes anything, and ends the incident
// skipped, with this reason, when it does not.
type NothingToDo struct{ Reason string }

// Error returns the reason.
func (n *NothingToDo) Error() string { return "nothing to do: " + n.Reason }

// NothingToDof returns a *NothingToDo with a formatted reason.
func NothingToDof(format string, args ...any) error {
	return &NothingToDo{Reason: fmt.Sprintf(format, args...)}
}
