package pass

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// Code is a stable, machine-readable error code carried in the wire error
// body. The spec has no registry of codes, so every code this module sends is
// one of the constants below, and [Fail] takes its HTTP status from one table
// so that a code never drifts to another status in some handler.
type Code string

// Error codes, with the status each travels with.
const (
	CodeInvalidRequest         Code = "invalid_request"          // 400: malformed body or member
	CodeRequestTooLarge        Code = "request_too_large"        // 413
	CodeUnsupportedMediaType   Code = "unsupported_media_type"   // 415
	CodeMethodNotAllowed       Code = "method_not_allowed"       // 405
	CodeNotAcceptable          Code = "not_acceptable"           // 406
	CodeNotFound               Code = "not_found"                // 404: no such endpoint or resource
	CodeRateLimited            Code = "rate_limited"             // 429: this caller sends too much
	CodeTemporarilyUnavailable Code = "temporarily_unavailable"  // 503: a store or cache is full or failing; retry later
	CodeInternal               Code = "internal_error"           // 500: details only in the server log
	CodeUnsupportedVersion     Code = "unsupported_version"      // 502: a peer's configuration has an unknown major version
	CodeInvalidAssertion       Code = "invalid_assertion"        // 401: Service/Authority assertion missing or invalid
	CodeUntrustedAuthority     Code = "untrusted_authority"      // 403: the Authority is not trusted by the Service
	CodePrecedenceViolation    Code = "precedence_violation"     // 403: an Enterprise Authority governs this user
	CodeDelegationDisabled     Code = "delegation_disabled"      // 403: the domain's record is "none"
	CodeAgentsUnsupported      Code = "agents_unsupported"       // 403: the Service requires its own Authority but policy forbids it
	CodeNoAuthority            Code = "no_authority"             // 404: no Authority is available for this user
	CodeAuthorityUnavailable   Code = "authority_unavailable"    // 502 (503 when a delegation cannot be re-checked): the Authority failed
	CodeDiscoveryFailed        Code = "discovery_failed"         // 502: DNS lookup failed or a configuration is invalid
	CodeAgentPassInvalid       Code = "agentpass_invalid"        // 422 at a Service, 404 at an Authority: unknown pass
	CodeAgentPassConsumed      Code = "agentpass_consumed"       // 409: the pass was already used
	CodeAgentPassExpired       Code = "agentpass_expired"        // 410 (422 at a Service for an expired delegation)
	CodeAudienceMismatch       Code = "audience_mismatch"        // 403: the pass was issued for another Service
	CodeTypeMismatch           Code = "type_mismatch"            // 422: pass type differs from the endpoint
	CodeUserMismatch           Code = "user_mismatch"            // 403: validated user differs from the request
	CodeInvalidHarnessProof    Code = "invalid_harness_proof"    // 401 (409 for a replayed jti): harness proof missing or invalid
	CodeInvalidAttestation     Code = "invalid_attestation"      // 401 (403 for an untrusted issuer): harness attestation failed
	CodeInvalidTaskAttest      Code = "invalid_task_attestation" // 401: task attestation failed verification
	CodeTrustTierRejected      Code = "trust_tier_rejected"      // 403: the harness does not meet the required trust tier
	CodeServiceUnverified      Code = "service_unverified"       // 502 (422 when the Service does not exist or misdescribes itself)
	CodeScopeUnsupported       Code = "scope_unsupported"        // 422: approved scope has values the Service does not define
	CodeScopeEmpty             Code = "scope_empty"              // 403: requested ∩ approved is empty
	CodeInsufficientScope      Code = "insufficient_scope"       // 403: the credential lacks a required scope
	CodeDestinationNotAllowed  Code = "destination_not_allowed"  // 403: browser destination outside the allow-policy
	CodeInitTokenUnknown       Code = "init_token_unknown"       // 404
	CodeInitTokenUsed          Code = "init_token_used"          // 410
	CodeInitTokenExpired       Code = "init_token_expired"       // 410
	CodeRequestUnknown         Code = "request_unknown"          // 404: unknown issuance request id
	CodeRequestGone            Code = "request_gone"             // 410: issuance request purged
	CodeRequestTerminal        Code = "request_terminal"         // 409: a decision on a request that is no longer pending
	CodeProofRequired          Code = "proof_required"           // 401: reading an approved status needs a holder proof
	CodeAuthorizationUnknown   Code = "authorization_unknown"    // 404: unknown, inactive or foreign authorization_id
	CodeInvalidToken           Code = "invalid_token"            // 401: bearer token or session unknown or expired
	CodeDelegationRevoked      Code = "delegation_revoked"       // 401: the Authority no longer vouches for the delegation
	CodeDelegationRejected     Code = "delegation_rejected"      // 403: the Service application refused the delegation
	CodeInvalidDPoPProof       Code = "invalid_dpop_proof"       // 401: DPoP proof missing or invalid (RFC 9449 §7.1)

	// Mission extension (ExtMission).
	CodeMissionUnknown   Code = "mission_unknown"    // 404: unknown, foreign or wrong-key mission id
	CodeMissionTerminal  Code = "mission_terminal"   // 409: the mission has ended
	CodeMissionNotActive Code = "mission_not_active" // 409: the transition needs another state
	CodeStaleVersion     Code = "stale_version"      // 409: expected_version is not the current one
	CodeMissionSuspended Code = "mission_suspended"  // 403: the mission (or an ancestor) is suspended

	// Staged execution extension (ExtStages).
	CodeStageUnknown       Code = "stage_unknown"        // 422: the mission's plan has no such stage
	CodeStageNotNext       Code = "stage_not_next"       // 409: a forward move skips a stage
	CodeTransitionPending  Code = "transition_pending"   // 409: another transition waits for its gate
	CodeTransitionDenied   Code = "transition_denied"    // 403: the gate refused the transition
	CodeStageScopeExceeded Code = "stage_scope_exceeded" // 403: the scope belongs to a later stage of the mission
	// Scope compilation extension (ExtCompile).
	CodeScopeWildcardRefused Code = "scope_wildcard_refused" // 403: the Authority's policy refuses "*"
	CodeScopeOverProposal    Code = "scope_over_proposal"    // 403: the request asks beyond the proposal and policy denies it

	// Sub-agent delegation extension (ExtDelegation).
	CodeDelegationNotPermitted Code = "delegation_not_permitted" // 403: the mission was approved without delegation rights
	CodeNotAttenuated          Code = "not_attenuated"           // 403: the child asks for more than its parent holds
	CodeDepthExceeded          Code = "depth_exceeded"           // 403: no generation left below the parent
	CodeFanoutExceeded         Code = "fanout_exceeded"          // 429: the parent has as many live children as it may
	CodeHolderKeyReused        Code = "holder_key_reused"        // 422: the child key is an ancestor's
)

// Sentinel errors. An [*Error] or a [*PeerError] matches the sentinels of
// its code with errors.Is, so callers need not compare code strings.
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

// codeInfo is one row of the wire-error table.
type codeInfo struct {
	status    int
	sentinels []error
}

// codes is the one wire-error table: every code's usual HTTP status and the
// sentinels its errors match. A code absent from it is answered as 500.
var codes = map[Code]codeInfo{
	CodeInvalidRequest:         {http.StatusBadRequest, []error{ErrInvalidDocument}},
	CodeRequestTooLarge:        {http.StatusRequestEntityTooLarge, nil},
	CodeUnsupportedMediaType:   {http.StatusUnsupportedMediaType, nil},
	CodeMethodNotAllowed:       {http.StatusMethodNotAllowed, nil},
	CodeNotAcceptable:          {http.StatusNotAcceptable, nil},
	CodeNotFound:               {http.StatusNotFound, nil},
	CodeRateLimited:            {http.StatusTooManyRequests, nil},
	CodeTemporarilyUnavailable: {http.StatusServiceUnavailable, []error{ErrUnavailable}},
	CodeInternal:               {http.StatusInternalServerError, nil},
	CodeUnsupportedVersion:     {http.StatusBadGateway, []error{ErrUnsupportedVersion}},
	CodeInvalidAssertion:       {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeUntrustedAuthority:     {http.StatusForbidden, []error{ErrForbidden}},
	CodePrecedenceViolation:    {http.StatusForbidden, []error{ErrForbidden}},
	CodeDelegationDisabled:     {http.StatusForbidden, []error{ErrForbidden}},
	CodeAgentsUnsupported:      {http.StatusForbidden, []error{ErrForbidden}},
	CodeNoAuthority:            {http.StatusNotFound, nil},
	CodeAuthorityUnavailable:   {http.StatusBadGateway, []error{ErrUnavailable}},
	CodeDiscoveryFailed:        {http.StatusBadGateway, []error{ErrUnavailable}},
	CodeAgentPassInvalid:       {http.StatusUnprocessableEntity, []error{ErrUnknown}},
	CodeAgentPassConsumed:      {http.StatusConflict, []error{ErrConsumed}},
	CodeAgentPassExpired:       {http.StatusGone, []error{ErrExpired}},
	CodeAudienceMismatch:       {http.StatusForbidden, []error{ErrForbidden}},
	CodeTypeMismatch:           {http.StatusUnprocessableEntity, nil},
	CodeUserMismatch:           {http.StatusForbidden, []error{ErrForbidden}},
	CodeInvalidHarnessProof:    {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeInvalidAttestation:     {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeInvalidTaskAttest:      {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeTrustTierRejected:      {http.StatusForbidden, []error{ErrForbidden}},
	CodeServiceUnverified:      {http.StatusBadGateway, nil},
	CodeScopeUnsupported:       {http.StatusUnprocessableEntity, []error{ErrScope}},
	CodeScopeEmpty:             {http.StatusForbidden, []error{ErrScope}},
	CodeInsufficientScope:      {http.StatusForbidden, []error{ErrScope}},
	CodeDestinationNotAllowed:  {http.StatusForbidden, []error{ErrForbidden}},
	CodeInitTokenUnknown:       {http.StatusNotFound, []error{ErrUnknown}},
	CodeInitTokenUsed:          {http.StatusGone, []error{ErrConsumed}},
	CodeInitTokenExpired:       {http.StatusGone, []error{ErrExpired}},
	CodeRequestUnknown:         {http.StatusNotFound, []error{ErrUnknown}},
	CodeRequestGone:            {http.StatusGone, []error{ErrExpired}},
	CodeRequestTerminal:        {http.StatusConflict, nil},
	CodeProofRequired:          {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeAuthorizationUnknown:   {http.StatusNotFound, []error{ErrRevoked, ErrUnknown}},
	CodeInvalidToken:           {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeDelegationRevoked:      {http.StatusUnauthorized, []error{ErrRevoked}},
	CodeDelegationRejected:     {http.StatusForbidden, []error{ErrForbidden}},
	CodeInvalidDPoPProof:       {http.StatusUnauthorized, []error{ErrUnauthenticated}},
	CodeMissionUnknown:         {http.StatusNotFound, []error{ErrUnknown}},
	CodeMissionTerminal:        {http.StatusConflict, []error{ErrRevoked}},
	CodeMissionNotActive:       {http.StatusConflict, nil},
	CodeStaleVersion:           {http.StatusConflict, nil},
	CodeMissionSuspended:       {http.StatusForbidden, []error{ErrRevoked}},
	CodeStageUnknown:           {http.StatusUnprocessableEntity, nil},
	CodeStageNotNext:           {http.StatusConflict, nil},
	CodeTransitionPending:      {http.StatusConflict, nil},
	CodeTransitionDenied:       {http.StatusForbidden, []error{ErrForbidden}},
	CodeStageScopeExceeded:     {http.StatusForbidden, []error{ErrScope}},
	CodeDelegationNotPermitted: {http.StatusForbidden, []error{ErrForbidden}},
	CodeNotAttenuated:          {http.StatusForbidden, []error{ErrForbidden, ErrScope}},
	CodeDepthExceeded:          {http.StatusForbidden, []error{ErrForbidden}},
	CodeFanoutExceeded:         {http.StatusTooManyRequests, nil},
	CodeHolderKeyReused:        {http.StatusUnprocessableEntity, nil},
	CodeScopeWildcardRefused:   {http.StatusForbidden, []error{ErrForbidden, ErrScope}},
	CodeScopeOverProposal:      {http.StatusForbidden, []error{ErrForbidden, ErrScope}},
}

// Status returns the HTTP status c travels with, or 500 for a code outside
// the table.
func (c Code) Status() int {
	if ci, ok := codes[c]; ok {
		return ci.status
	}
	return http.StatusInternalServerError
}

// matchCode reports whether target is one of code's sentinels.
func matchCode(code Code, target error) bool {
	return slices.Contains(codes[code].sentinels, target)
}

// ErrorResponse is the wire error body: {"error":{"code","message"}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
	// Mission is an extension (ExtMission): a suspended mission's state,
	// sent next to the error of an authorization check only to the
	// redeeming Service when it advertises the extension.
	Mission *MissionInfo `json:"mission,omitempty"`
	// RequiredStage is an extension (ExtStages): next to a
	// stage_scope_exceeded refusal, the stage of the mission that would
	// allow the request.
	RequiredStage string `json:"required_stage,omitempty"`
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

// Error is a wire error this module sends: what the peer sees (Status, Code,
// Message) together with the cause kept for logs (Err), in the manner of an
// HTTP error whose client message and logged cause are separate. Message
// never holds internal detail; Err is never sent. Build it with [Fail].
type Error struct {
	Status  int    // HTTP status code
	Code    Code   // machine-readable code
	Message string // human-readable text sent on the wire
	Err     error  // optional cause, never sent on the wire
}

// Fail returns the wire error code with message, at the status the table
// gives code.
func Fail(code Code, message string) *Error {
	return &Error{Status: code.Status(), Code: code, Message: message}
}

// Failf is Fail with a formatted message. Format only values that are safe
// to show a peer (bounds, names of members), never a secret or a cause.
func Failf(code Code, format string, args ...any) *Error {
	return Fail(code, fmt.Sprintf(format, args...))
}

// WithStatus returns a copy of e sent with status instead of its code's
// usual one, for the few codes that legitimately travel with two statuses
// (an unknown pass is 404 at an Authority and 422 at a Service).
func (e *Error) WithStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
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

// Is reports whether target is a sentinel of e's code, or an *Error with the
// same non-empty code.
func (e *Error) Is(target error) bool {
	if t, ok := target.(*Error); ok {
		return t.Code != "" && t.Code == e.Code
	}
	return matchCode(e.Code, target)
}

// Body returns the wire representation of e.
func (e *Error) Body() ErrorResponse {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return ErrorResponse{Error: ErrorBody{Code: e.Code, Message: msg}}
}

// Peer names the role of a party called over HTTP, so that errors say whom
// a failure concerns.
type Peer string

// Peers.
const (
	PeerAuthority Peer = "authority"
	PeerService   Peer = "service"
)

// PeerError is an error answer received from a peer: its HTTP status and,
// when the body was a valid error document, its code and message. It matches
// the sentinels of its code with errors.Is. Message is the peer's text,
// truncated; show it, never trust it.
type PeerError struct {
	Peer    Peer   // whom we called
	Origin  string // the peer's origin (never a path: status URLs are secrets)
	Status  int
	Code    Code
	Message string
	// Mission is the mission member of the error body (ExtMission: a
	// suspended mission's state next to a 404), nil when absent. It is the
	// peer's claim, not yet validated: check it before relying on it.
	Mission *MissionInfo
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("agentpass: %s %s answered %d %s: %s", e.Peer, e.Origin, e.Status, e.Code, e.Message)
}

// Is reports whether target is a sentinel of e's code, or a *PeerError with
// the same non-empty code. Any 5xx answer also matches [ErrUnavailable].
func (e *PeerError) Is(target error) bool {
	if t, ok := target.(*PeerError); ok {
		return t.Code != "" && t.Code == e.Code
	}
	if target == ErrUnavailable && e.Status >= 500 {
		return true
	}
	return matchCode(e.Code, target)
}

// UnreachableError is a call that failed before any answer from the peer
// (dial, TLS, timeout, a truncated body). It matches [ErrUnavailable].
type UnreachableError struct {
	Peer   Peer
	Origin string
	Err    error // the transport failure, without the URL
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("agentpass: %s %s unreachable: %v", e.Peer, e.Origin, e.Err)
}

// Unwrap returns the transport failure.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnavailable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnavailable }

// ErrorFromResponse reads a peer's error answer. A body that is not a valid
// error document still yields a *PeerError, with a code derived from the
// status, so a hostile peer cannot make the client read a failure as
// success. The peer's message is truncated to 512 bytes.
func ErrorFromResponse(status int, body []byte) *PeerError {
	var r ErrorResponse
	if err := Decode(body, &r); err == nil {
		return &PeerError{Status: status, Code: r.Error.Code, Message: truncate(r.Error.Message, 512), Mission: r.Mission}
	}
	return &PeerError{Status: status, Code: codeForStatus(status), Message: http.StatusText(status)}
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
	case http.StatusServiceUnavailable:
		return CodeTemporarilyUnavailable
	}
	if status >= 500 {
		return CodeInternal
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
