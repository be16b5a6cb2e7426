package harness

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/agentpass-go/agentpass/pass"
)

// Sentinel errors. Every error the Client returns for a protocol outcome
// matches one of them with errors.Is; the typed errors below carry the data.
// Errors a peer sent also match the *pass.PeerError they came as (errors.As),
// and therefore the pass sentinels (pass.ErrConsumed, pass.ErrForbidden, ...).
var (
	// ErrProtocol: a peer broke the protocol (an approved status without a
	// pass, a resolution answer with no or several choices, an Authority
	// configuration that does not name the resolved Authority, ...). The
	// error is a [*ProtocolError].
	ErrProtocol = errors.New("harness: protocol violation")
	// ErrInvalidConfig: New was given an invalid Config, or a method was
	// called on a Client that New did not make (the zero value).
	ErrInvalidConfig = errors.New("harness: invalid configuration")
	// ErrResolution: the Service refused to resolve an Authority for the
	// User (no Authority, delegation disabled by the domain with "none",
	// enterprise discovery failed). The *pass.PeerError is wrapped.
	ErrResolution = errors.New("harness: authority resolution refused")
	// ErrChoiceRequired: several Authorities (or a federated one) were
	// offered and nobody chose. The error is a [*ChoiceRequiredError].
	ErrChoiceRequired = errors.New("harness: an authority must be chosen")
	// ErrIssuance: the Authority refused the issuance request. The
	// *pass.PeerError is wrapped.
	ErrIssuance = errors.New("harness: issuance request refused")
	// ErrDenied: the issuance request was denied. The error is a
	// [*DeniedError] with the reason.
	ErrDenied = errors.New("harness: issuance denied")
	// ErrExpired: the issuance request expired, or the Authority no longer
	// knows it (404/410 while polling). It is [pass.ErrExpired], so one
	// errors.Is test serves every package.
	ErrExpired = pass.ErrExpired
	// ErrCanceled: the issuance request was canceled at the Authority.
	ErrCanceled = errors.New("harness: issuance request canceled")
	// ErrRedemption: the Service rejected the redemption. The error is a
	// [*RedemptionError]; the pass must not be presented again.
	ErrRedemption = errors.New("harness: redemption rejected")
	// ErrGrantUsed: the grant was already presented for redemption; a pass is
	// single-use, so a new Acquire is needed. No request was sent.
	ErrGrantUsed = errors.New("harness: grant already redeemed")
	// ErrWrongType: the grant is for the other redemption flow (a
	// browser-session pass presented as a bearer token, or the reverse). No
	// request was sent and the grant is still usable.
	ErrWrongType = errors.New("harness: grant has the wrong type for this redemption")
	// ErrInitializationUsed: the browser initialization was already taken.
	ErrInitializationUsed = errors.New("harness: initialization already used")
	// ErrCrossOrigin: a request carrying a token was addressed to an origin
	// other than the Service the token was issued by. It was not sent.
	ErrCrossOrigin = errors.New("harness: token not sent to another origin")
	// ErrTokenRejected: the Service API answered 401 (the token is unknown,
	// expired or the delegation was revoked). The error is an [*APIError].
	ErrTokenRejected = errors.New("harness: service rejected the token")
	// ErrForbidden: the Service API answered 403 (for example a missing
	// scope). The error is an [*APIError].
	ErrForbidden = errors.New("harness: service refused the request")
	// ErrTokenExpired: a TokenSource's token expired and re-acquiring is not
	// enabled.
	ErrTokenExpired = errors.New("harness: token expired")
	// ErrInvalidRequest: the Request or options passed to the Client are
	// invalid. No request was sent.
	ErrInvalidRequest = errors.New("harness: invalid request")
)

// ProtocolError reports a peer answer that breaks the protocol. URL is the
// endpoint that answered (never a status URL, which identifies a request).
type ProtocolError struct {
	Peer   string // "service" or "authority"
	URL    string
	Reason string
	Err    error
}

func (e *ProtocolError) Error() string {
	var b strings.Builder
	b.WriteString("harness: protocol violation by the ")
	b.WriteString(e.Peer)
	if e.URL != "" {
		b.WriteString(" at ")
		b.WriteString(e.URL)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrProtocol and the cause.
func (e *ProtocolError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrProtocol}
	}
	return []error{ErrProtocol, e.Err}
}

// ChoiceRequiredError is returned when the Service offers a choice of
// Authorities (trusted federated ones, possibly with its own Service
// Authority) and neither Config.ChooseAuthority nor a preferred Authority
// that is on offer made the choice (§3.2.2: the Harness must choose, usually
// by asking a person). Show Options to the person and call Acquire again
// with Request.Authority set to the chosen identifier.
type ChoiceRequiredError struct {
	// Options are the Authorities on offer, the Service Authority first
	// when there is one.
	Options []pass.AuthorityRef
	// Preferred is the preferred Authority that was configured but is not
	// on offer (and so was not used), or "".
	Preferred string
}

func (e *ChoiceRequiredError) Error() string {
	ids := make([]string, len(e.Options))
	for i, o := range e.Options {
		ids[i] = o.Authority
	}
	s := "harness: an authority must be chosen among " + strings.Join(ids, ", ")
	if e.Preferred != "" {
		s += " (preferred authority " + e.Preferred + " is not offered)"
	}
	return s
}

// Is reports whether target is ErrChoiceRequired.
func (e *ChoiceRequiredError) Is(target error) bool { return target == ErrChoiceRequired }

// DeniedError is an issuance request that ended "denied".
type DeniedError struct {
	Authority string // the Authority identifier
	Reason    string // the Authority's reason, possibly empty
}

func (e *DeniedError) Error() string {
	s := "harness: issuance denied by " + e.Authority
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is reports whether target is ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// RedemptionError is a redemption the Service rejected with a 4xx answer, or
// that kept failing (429 beyond the wait bound, a second 5xx). The pass is
// spent as far as the Harness is concerned: start a new Acquire (§3.2.3).
// It matches ErrRedemption, and the *pass.PeerError it wraps (so
// errors.Is(err, pass.ErrConsumed) tells a replay).
type RedemptionError struct {
	URL string // the redemption endpoint
	// Retried is true when the answer came to a retry after a 5xx or a
	// timeout: a 409 then usually means the first attempt consumed the pass
	// (the Service may have consumed the pass before failing).
	Retried bool
	Err     *pass.PeerError
}

func (e *RedemptionError) Error() string {
	s := fmt.Sprintf("harness: redemption at %s rejected", e.URL)
	if e.Retried {
		s += " (after a retry)"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrRedemption and the wire error.
func (e *RedemptionError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrRedemption}
	}
	return []error{ErrRedemption, e.Err}
}

// APIError is an error answer of a Service API called with a token (see
// [CheckResponse]). A 401 matches ErrTokenRejected and a 403 ErrForbidden;
// the wire error, when the body was one, is wrapped too (errors.Is(err,
// pass.ErrScope) for insufficient_scope).
type APIError struct {
	StatusCode      int
	Code            pass.Code // from the error body or WWW-Authenticate, may be empty
	Message         string    // the Service's message, truncated
	WWWAuthenticate string    // the WWW-Authenticate header, if any
	Err             *pass.PeerError
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("harness: service API answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		s += ": " + string(e.Code)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is matches ErrTokenRejected for 401 and ErrForbidden for 403.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrTokenRejected:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	}
	return false
}

// Unwrap returns the wire error, if the body was one.
func (e *APIError) Unwrap() error {
	if e.Err == nil {
		return nil
	}
	return e.Err
}

// errNotNew is what every call on a Client that New did not make returns.
var errNotNew = fmt.Errorf("%w: the Client was not created with New", ErrInvalidConfig)

// ready reports errNotNew for a zero or nil Client.
func (c *Client) ready() error {
	if c == nil || c.disc == nil || c.http == nil {
		return errNotNew
	}
	return nil
}
