package pass_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// TestFailStatusFromTable: answering, the status comes from the one table
// (X-ERR-2), and each code matches its sentinels and only them.
func TestFailStatusFromTable(t *testing.T) {
	tests := []struct {
		code   pass.Code
		status int
		is     []error
		isNot  []error
	}{
		{pass.CodeInvalidRequest, 400, []error{pass.ErrInvalidDocument}, []error{pass.ErrUnavailable}},
		{pass.CodeRateLimited, 429, nil, []error{pass.ErrUnavailable}},
		{pass.CodeTemporarilyUnavailable, 503, []error{pass.ErrUnavailable}, []error{pass.ErrForbidden}},
		{pass.CodeAgentPassConsumed, 409, []error{pass.ErrConsumed}, []error{pass.ErrExpired}},
		{pass.CodeAgentPassExpired, 410, []error{pass.ErrExpired}, nil},
		{pass.CodeAgentPassInvalid, 422, []error{pass.ErrUnknown}, nil},
		{pass.CodeInvalidHarnessProof, 401, []error{pass.ErrUnauthenticated}, []error{pass.ErrForbidden}},
		{pass.CodeAuthorizationUnknown, 404, []error{pass.ErrRevoked, pass.ErrUnknown}, nil},
		{pass.CodeAuthorityUnavailable, 502, []error{pass.ErrUnavailable}, nil},
		{pass.CodeScopeEmpty, 403, []error{pass.ErrScope}, []error{pass.ErrForbidden}},
		{pass.CodeInternal, 500, nil, []error{pass.ErrUnavailable}},
		{pass.Code("no_such_code"), 500, nil, []error{pass.ErrUnknown}},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			e := pass.Fail(tt.code, "m")
			if e.Status != tt.status || e.Code != tt.code || e.Message != "m" {
				t.Fatalf("Fail = %+v, want status %d", e, tt.status)
			}
			for _, s := range tt.is {
				if !errors.Is(e, s) {
					t.Errorf("does not match %v", s)
				}
			}
			for _, s := range tt.isNot {
				if errors.Is(e, s) {
					t.Errorf("matches %v", s)
				}
			}
		})
	}
}

// TestErrorIsNeedsCode: an *Error with an empty code is no wildcard.
func TestErrorIsNeedsCode(t *testing.T) {
	e := pass.Fail(pass.CodeScopeEmpty, "x")
	if errors.Is(e, &pass.Error{}) {
		t.Error("an empty target code matched")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), &pass.Error{Code: pass.CodeScopeEmpty}) {
		t.Error("same code did not match")
	}
	if w := e.WithStatus(http.StatusTeapot); w.Status != 418 || e.Status != 403 || w.Code != e.Code {
		t.Errorf("WithStatus changed the original or lost the code: %+v %+v", w, e)
	}
}

// TestReadPeerErrors: reading, a peer's answer is a *PeerError (never an
// *Error), matched by its code's sentinels, whatever the body.
func TestReadPeerErrors(t *testing.T) {
	body := func(code pass.Code, msg string) []byte {
		b, _ := json.Marshal(pass.Fail(code, msg).Body())
		return b
	}
	tests := []struct {
		name     string
		status   int
		body     []byte
		wantCode pass.Code
		wantMsg  string
		is       error
		isNot    error
	}{
		{"consumed", 409, body(pass.CodeAgentPassConsumed, "used"), pass.CodeAgentPassConsumed, "used", pass.ErrConsumed, pass.ErrUnavailable},
		{"unknown authorization", 404, body(pass.CodeAuthorizationUnknown, "gone"), pass.CodeAuthorizationUnknown, "gone", pass.ErrRevoked, pass.ErrConsumed},
		{"full store", 503, body(pass.CodeTemporarilyUnavailable, "busy"), pass.CodeTemporarilyUnavailable, "busy", pass.ErrUnavailable, pass.ErrScope},
		{"html 502", 502, []byte("<html>"), pass.CodeInternal, "Bad Gateway", pass.ErrUnavailable, pass.ErrConsumed},
		{"html 503", 503, []byte("<html>"), pass.CodeTemporarilyUnavailable, "Service Unavailable", pass.ErrUnavailable, nil},
		{"empty 403", 403, nil, pass.CodeUntrustedAuthority, "Forbidden", pass.ErrForbidden, pass.ErrUnavailable},
		{"no code", 400, []byte(`{"error":{"message":"x"}}`), pass.CodeInvalidRequest, "Bad Request", pass.ErrInvalidDocument, nil},
		{"long message", 400, body(pass.CodeInvalidRequest, strings.Repeat("a", 2000)), pass.CodeInvalidRequest, strings.Repeat("a", 512), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error = pass.ErrorFromResponse(tt.status, tt.body)
			var pe *pass.PeerError
			if !errors.As(err, &pe) || pe.Status != tt.status || pe.Code != tt.wantCode || pe.Message != tt.wantMsg {
				t.Fatalf("got %+v, want %d %s %q", pe, tt.status, tt.wantCode, tt.wantMsg)
			}
			var sent *pass.Error
			if errors.As(err, &sent) {
				t.Error("a peer's answer reads as an error we send")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("does not match %v", tt.is)
			}
			if tt.isNot != nil && errors.Is(err, tt.isNot) {
				t.Errorf("matches %v", tt.isNot)
			}
			if errors.Is(err, &pass.PeerError{}) {
				t.Error("an empty target code matched")
			}
		})
	}
}

// TestUnreachableError: a transport failure is neither an answer nor ours.
func TestUnreachableError(t *testing.T) {
	cause := errors.New("dial tcp: connection refused")
	var err error = fmt.Errorf("validate: %w", &pass.UnreachableError{Peer: pass.PeerService, Origin: "https://svc.test", Err: cause})
	var ue *pass.UnreachableError
	var pe *pass.PeerError
	if !errors.As(err, &ue) || ue.Peer != pass.PeerService || !errors.Is(err, pass.ErrUnavailable) || !errors.Is(err, cause) || errors.As(err, &pe) {
		t.Fatalf("%v", err)
	}
	if !strings.Contains(err.Error(), "service https://svc.test unreachable") {
		t.Errorf("text %q does not name the peer", err)
	}
}

// FuzzErrorFromResponse: reading any error body never panics, always
// yields a failure with a code, and bounds the peer's message.
func FuzzErrorFromResponse(f *testing.F) {
	for _, s := range []string{
		`{"error":{"code":"agentpass_consumed","message":"already used"}}`,
		`{"error":{"code":"","message":"x"}}`,
		`{"error":"x"}`, `<html>`, ``, `null`, `{"error":{"code":"a","message":"b"},"mission":{"id":1}}`,
	} {
		f.Add(409, []byte(s))
		f.Add(503, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		pe := pass.ErrorFromResponse(status, body)
		if pe == nil || pe.Code == "" || pe.Status != status || len(pe.Message) > 512 {
			t.Fatalf("ErrorFromResponse(%d, %q) = %+v", status, body, pe)
		}
	})
}
