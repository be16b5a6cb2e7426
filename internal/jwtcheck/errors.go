package jwtcheck

import "errors"

// Error is a check that failed. Reason is a short, stable phrase that never
// contains token or key material, so callers can log it and map it to
// their own error kinds.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "jwtcheck: " + e.Reason + ": " + e.Err.Error()
	}
	return "jwtcheck: " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// ErrReplay is the cause of the Error that [Token.Record] returns for a jti
// already recorded.
var ErrReplay = errors.New("jwtcheck: replayed jti")

func fail(reason string) error { return &Error{Reason: reason} }

func failWith(reason string, err error) error { return &Error{Reason: reason, Err: err} }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
