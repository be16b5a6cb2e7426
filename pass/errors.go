package pass

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code carried in the wire error body.
// Every code this module sends is one of the constants below (gap G-18 of the
// requirements: the spec has no registry, so the set is fixed here).
type Code string

// Error codes.
const (
	CodeInvalidRequest        Code = "invalid_request"          // 400: malformed body or member
	CodeRequestTooLarge       Code = "request_too_large"        // 413
	CodeUnsupportedMediaType  Code = "unsupported_media_type"   // 415
	CodeMethodNotAllowed      Code = "method_not_allowed"       // 405
	CodeNotAcceptable         Code = "not_acceptable"           // 406
	CodeNotFound              Code = "not_found"                // 404: no such endpoint or resource
	CodeRateLimited           Code = "rate_limited"             // 429
	CodeInternal              Code = "internal_error"           // 500: details only in the server log
	CodeUnsupportedVersion    Code = "unsupported_version"      // a peer's configuration has an unknown major version
	CodeInvalidAssertion      Code = "invalid_assertion"        // 401: Service/Authority assertion missing or invalid
	CodeUntrustedAuthority    Code = "untrusted_authority"      // 403: the Authority is not trusted by the Service
	CodePrecedenceViolation   Code = "precedence_violation"     // 403: an Enterprise Authority governs this user
	CodeDelegationDisabled    Code = "delegation_disabled"      // 403: the domain's record is "none"
	CodeAgentsUnsupported     Code = "agents_unsupported"       // 403: the Service requires its own Authority but policy forbids it
	CodeNoAuthority           Code = "no_authority"             // 404: no Authority is available for this user
	CodeAuthorityUnavailable  Code = "authority_unavailable"    // 502/503: discovery or the Authority failed
	CodeDiscoveryFailed       Code = "discovery_failed"         // 502: DNS lookup failed or a configuration is invalid
	CodeAgentPassInvalid      Code = "agentpass_invalid"        // 422 at a Service, 404 at an Authority: unknown pass
	CodeAgentPassConsumed     Code = "agentpass_consumed"       // 409: the pass was already used
	CodeAgentPassExpired      Code = "agentpass_expired"        // 410: the pass expired
	CodeAudienceMismatch      Code = "audience_mismatch"        // 403: the pass was issued for another Service
	CodeTypeMismatch          Code = "type_mismatch"            // 422: pass type differs from the endpoint (G-13)
	CodeUserMismatch          Code = "user_mismatch"            // 403: validated user differs from the request (G-12)
	CodeInvalidHarnessProof   Code = "invalid_harness_proof"    // 401: harness proof missing or invalid
	CodeInvalidAttestation    Code = "invalid_attestation"      // 401: harness attestation failed verification
	CodeInvalidTaskAttest     Code = "invalid_task_attestation" // 401: task attestation failed verification
	CodeTrustTierRejected     Code = "trust_tier_rejected"      // 403: the harness does not meet the required trust tier
	CodeServiceUnverified     Code = "service_unverified"       // 422/502: the Service could not be discovered or verified
	CodeScopeUnsupported      Code = "scope_unsupported"        // 422: approved scope has values the Service does not define
	CodeScopeEmpty            Code = "scope_empty"              // 403: requested ∩ approved is empty
	CodeInsufficientScope     Code = "insufficient_scope"       // 403: the credential lacks a required scope
	CodeDestinationNotAllowed Code = "destination_not_allowed"  // 403: browser destination outside the allow-policy
	CodeInitTokenUnknown      Code = "init_token_unknown"       // 404
	CodeInitTokenUsed         Code = "init_token_used"          // 410
	CodeInitTokenExpired      Code = "init_token_expired"       // 410
	CodeRequestUnknown        Code = "request_unknown"          // 404: unknown issuance request id
	CodeRequestGone           Code = "request_gone"             // 410: issuance request purged
	CodeRequestTerminal       Code = "request_terminal"         // 409: a decision on a request that is no longer pending
	CodeProofRequired         Code = "proof_required"           // 401: reading an approved status needs a holder proof
	CodeAuthorizationUnknown  Code = "authorization_unknown"    // 404: unknown, inactive or foreign authorization_id
	CodeInvalidToken          Code = "invalid_token"            // 401: bearer token or session unknown or expired
	CodeDelegationRevoked     Code = "delegation_revoked"       // 401: the Authority no longer vouches for the delegation
	CodeDelegationRejected    Code = "delegation_rejected"      // 403: the Service application refused the delegation
	CodeInvalidDPoPProof      Code = "invalid_dpop_proof"       // 401: DPoP proof missing or invalid (RFC 9449 §7.1)

	// Mission extension (ExtMission).
	CodeMissionUnknown   Code = "mission_unknown"    // 404: unknown, foreign or wrong-key mission id
	CodeMissionTerminal  Code = "mission_terminal"   // 409: the mission has ended
	CodeMissionNotActive Code = "mission_not_active" // 409: the transition needs another state
	CodeStaleVersion     Code = "stale_version"      // 409: expected_version is not the current one
	CodeMissionSuspended Code = "mission_suspended"  // 403: the mission (or an ancestor) is suspended
)

// Sentinel errors. An [*Error] matches the sentinel of its code with
// errors.Is, so callers need not compare code strings.
var (
	ErrInvalidDocument    = errors.New("pass: invalid document")
	ErrUnsupportedVersion = errors.New("pass: unsupported version")
	ErrConsumed           = errors.New("pass: agentpass already consumed")
	ErrExpired            = errors.New("pass: expired")
	ErrRevoked            = errors.New("pass: delegation revoked or inactive")
	ErrUnknown            = errors.New("pass: unknown agentpass, request or authorization")
	ErrUnauthenticated    = errors.New("pass: caller not authenticated")
	ErrForbidden          = errors.New("pass: forbidden by trust or policy")
	ErrUnavailable        = errors.New("pass: peer or discovery unavailable")
	ErrScope              = errors.New("pass: scope not granted")
)

var codeSentinels = map[Code][]error{
	CodeInvalidRequest:        {ErrInvalidDocument},
	CodeUnsupportedVersion:    {ErrUnsupportedVersion},
	CodeAgentPassConsumed:     {ErrConsumed},
	CodeAgentPassExpired:      {ErrExpired},
	CodeInitTokenExpired:      {ErrExpired},
	CodeInitTokenUsed:         {ErrConsumed},
	CodeRequestGone:           {ErrExpired},
	CodeDelegationRevoked:     {ErrRevoked},
	CodeAuthorizationUnknown:  {ErrRevoked, ErrUnknown},
	CodeAgentPassInvalid:      {ErrUnknown},
	CodeInitTokenUnknown:      {ErrUnknown},
	CodeRequestUnknown:        {ErrUnknown},
	CodeInvalidAssertion:      {ErrUnauthenticated},
	CodeInvalidHarnessProof:   {ErrUnauthenticated},
	CodeInvalidAttestation:    {ErrUnauthenticated},
	CodeInvalidTaskAttest:     {ErrUnauthenticated},
	CodeProofRequired:         {ErrUnauthenticated},
	CodeInvalidToken:          {ErrUnauthenticated},
	CodeInvalidDPoPProof:      {ErrUnauthenticated},
	CodeDelegationRejected:    {ErrForbidden},
	CodeUntrustedAuthority:    {ErrForbidden},
	CodePrecedenceViolation:   {ErrForbidden},
	CodeDelegationDisabled:    {ErrForbidden},
	CodeAgentsUnsupported:     {ErrForbidden},
	CodeAudienceMismatch:      {ErrForbidden},
	CodeUserMismatch:          {ErrForbidden},
	CodeTrustTierRejected:     {ErrForbidden},
	CodeDestinationNotAllowed: {ErrForbidden},
	CodeAuthorityUnavailable:  {ErrUnavailable},
	CodeDiscoveryFailed:       {ErrUnavailable},
	CodeInsufficientScope:     {ErrScope},
	CodeScopeEmpty:            {ErrScope},
	CodeScopeUnsupported:      {ErrScope},
	CodeMissionUnknown:        {ErrUnknown},
	CodeMissionTerminal:       {ErrRevoked},
	CodeMissionSuspended:      {ErrRevoked},
}

// ErrorResponse is the wire error body: {"error":{"code","message"}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
	// Mission is an extension (ExtMission): a suspended mission's state,
	// sent next to the error of an authorization check only to the
	// redeeming Service when it advertises the extension.
	Mission *MissionInfo `json:"mission,omitempty"`
}

// ErrorBody is the inner object of [ErrorResponse].
type ErrorBody struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Validate checks the error body against the error-response schema.
func (r *ErrorResponse) Validate() error {
	if r.Error.Code == "" {
		return missing("error.code")
	}
	return nil
}

// Error is a wire error together with the HTTP status it travels with. Servers
// return it to describe what the client sees; clients receive it when a peer
// answers with an error body. Message is the text shown to the peer, so it
// never holds internal detail; Err, when set, is the cause kept for logs and
// errors.Is and is never sent.
type Error struct {
	Status  int    // HTTP status code
	Code    Code   // machine-readable code
	Message string // human-readable text sent on the wire
	Err     error  // optional cause, never sent on the wire
}

// NewError returns an *Error with the given status, code and message.
func NewError(status int, code Code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Errorf is NewError with a formatted message.
func Errorf(status int, code Code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithCause returns a copy of e that also carries cause (for logs and
// errors.Is); the cause is never sent on the wire.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Err = cause
	return &c
}

func (e *Error) Error() string {
	s := fmt.Sprintf("agentpass: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel error of e's code, or an *Error
// with the same code (a target with an empty code matches any *Error).
func (e *Error) Is(target error) bool {
	if t, ok := target.(*Error); ok {
		return t.Code == "" || t.Code == e.Code
	}
	for _, s := range codeSentinels[e.Code] {
		if s == target {
			return true
		}
	}
	return false
}

// Body returns the wire representation of e.
func (e *Error) Body() ErrorResponse {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return ErrorResponse{Error: ErrorBody{Code: e.Code, Message: msg}}
}

// ErrorFromResponse builds an *Error from a peer's HTTP status and body. A body
// that is not a valid error document still yields an *Error, with a code
// derived from the status, so a hostile peer cannot make the client read
// success into a failure. The remote message is kept but truncated.
func ErrorFromResponse(status int, body []byte) *Error {
	var r ErrorResponse
	if err := Decode(body, &r); err == nil {
		return &Error{Status: status, Code: r.Error.Code, Message: truncate(r.Error.Message, 512)}
	}
	return &Error{Status: status, Code: codeForStatus(status), Message: http.StatusText(status)}
}

func codeForStatus(status int) Code {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalidRequest
	case http.StatusUnauthorized:
		return CodeInvalidAssertion
	case http.StatusForbidden:
		return CodeUntrustedAuthority
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeAgentPassConsumed
	case http.StatusGone:
		return CodeAgentPassExpired
	case http.StatusTooManyRequests:
		return CodeRateLimited
	}
	if status >= 500 {
		return CodeAuthorityUnavailable
	}
	return CodeInvalidRequest
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// FieldError reports a document member that is missing or invalid. Field is
// the JSON path of the member, e.g. "harness.cnf.jwk". It matches
// [ErrInvalidDocument] with errors.Is.
type FieldError struct {
	Field  string
	Reason string
	Err    error // optional cause, e.g. a *VersionError
}

func (e *FieldError) Error() string {
	return "pass: invalid " + e.Field + ": " + e.Reason
}

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidDocument.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidDocument }

func missing(field string) error {
	return &FieldError{Field: field, Reason: "required member is missing or empty"}
}
func invalid(field, reason string) error { return &FieldError{Field: field, Reason: reason} }

// prefixed re-roots a FieldError under a parent member, so nested validators
// can report paths relative to themselves.
func prefixed(parent string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		c := *fe
		c.Field = parent + "." + fe.Field
		return &c
	}
	return err
}
