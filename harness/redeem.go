package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// maxRateLimitWaits is how many 429 answers a redemption waits out before
// giving up.
const maxRateLimitWaits = 3

// retry5xxDelay is the pause before the one retry after a 5xx or a timeout.
const retry5xxDelay = 500 * time.Millisecond

// RedeemOptions are the optional members of a redemption.
type RedeemOptions struct {
	// RequestedScope asks the Service for only these scopes; it grants the
	// intersection with the approved scope (requested_scope), so the
	// token carries only what the task needs. Nil means the whole
	// approved scope; an empty, non-nil scope is refused (the
	// intersection would be empty, and the Service refuses it).
	RequestedScope pass.Scope
	// DPoP asks for a sender-constrained token (RFC 9449): the redemption
	// carries a DPoP proof of the grant's key, and the Service binds the
	// token to it. Bearer tokens only.
	DPoP bool
}

// Token is a Service's bearer token. Its value is a secret: String hides it
// and the Transport only sends it to the Service's own origin.
type Token struct {
	// Type is "Bearer", or "DPoP" for a token bound to Key.
	Type string
	// Scope is the granted scope, when the Service said.
	Scope pass.Scope
	// ExpiresAt is when the token expires, or zero when the Service did not
	// say.
	ExpiresAt time.Time
	// Service is the origin the token is for; it is never sent elsewhere.
	Service string

	value   string
	key     *dpop.Key
	now     func() time.Time
	nonce   atomic.Pointer[string] // the last DPoP-Nonce the Service sent
	mission *missionState          // nil for tokens from NewToken
}

// NewToken returns a Token for a bearer token obtained by other means, for
// use with Transport. tokenType is "Bearer" (or "") or "DPoP"; a DPoP token
// needs the key it is bound to. now may be nil for time.Now.
func NewToken(service, value, tokenType string, key *dpop.Key, now func() time.Time) (*Token, error) {
	origin, err := pass.Origin(service)
	if err != nil || pass.CheckOrigin(service) != nil {
		return nil, fmt.Errorf("%w: service %q is not an https origin", ErrInvalidRequest, service)
	}
	if value == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidRequest)
	}
	switch {
	case tokenType == "" || strings.EqualFold(tokenType, "Bearer"):
		tokenType = "Bearer"
	case strings.EqualFold(tokenType, "DPoP"):
		tokenType = "DPoP"
		if key == nil {
			return nil, fmt.Errorf("%w: a DPoP token needs its key", ErrInvalidRequest)
		}
	default:
		return nil, fmt.Errorf("%w: token type %q", ErrInvalidRequest, tokenType)
	}
	if now == nil {
		now = time.Now
	}
	return &Token{Type: tokenType, Service: origin, value: value, key: key, now: now}, nil
}

// Value returns the token. Treat it as opaque (its format is the
// Service's business) and secret.
func (t *Token) Value() string { return t.value }

// Expired reports whether the token's expiry, when known, has passed.
func (t *Token) Expired() bool { return !t.ExpiresAt.IsZero() && !t.now().Before(t.ExpiresAt) }

// String describes the token without its value.
func (t *Token) String() string {
	return fmt.Sprintf("Token{%s for %s, scope %v, value hidden}", t.Type, t.Service, []string(t.Scope))
}

// Initialization is a browser-session initialization (§3.3.2): a request the
// browser must make exactly once, directly, without prefetching or
// retrying. Take hands it out once. String hides the secret.
type Initialization struct {
	// Method is "POST" (the secret is in form fields, so it stays out of
	// URLs, histories and logs) or "GET" (a plain v0.1 Service: the secret
	// is in the URL).
	Method string
	// ExpiresAt is when the initialization expires, or zero.
	ExpiresAt time.Time
	// Service is the Service origin.
	Service string
	// Destination is the destination the pass was requested for, if any.
	Destination string

	req     InitRequest
	used    atomic.Bool
	mission *missionState
}

// InitRequest is the request a browser makes to initialize the session.
// Its URL (for GET) and form fields (for POST) hold a one-time secret.
type InitRequest struct {
	Method     string            // "GET" or "POST"
	URL        string            // the initialization_url
	FormFields map[string]string // POST only: submit as an HTML form
}

// String describes the request without its secret.
func (r InitRequest) String() string {
	u, err := url.Parse(r.URL)
	if err != nil {
		return r.Method + " (invalid URL)"
	}
	s := r.Method + " " + u.Scheme + "://" + u.Host + u.Path
	if r.Method == http.MethodGet && u.RawQuery != "" {
		s += "?(hidden)"
	}
	if len(r.FormFields) > 0 {
		s += fmt.Sprintf(" with %d hidden form fields", len(r.FormFields))
	}
	return s
}

// Take returns the request to load and marks the initialization used; a
// second call fails with ErrInitializationUsed (the URL is
// single-use; after a failure, acquire a new pass, never reuse the URL).
func (i *Initialization) Take() (InitRequest, error) {
	if i.mission != nil && i.mission.closed.Load() {
		return InitRequest{}, ErrMissionClosed
	}
	if !i.used.CompareAndSwap(false, true) {
		return InitRequest{}, ErrInitializationUsed
	}
	r := i.req
	r.FormFields = maps.Clone(r.FormFields)
	return r, nil
}

// Used reports whether Take was called.
func (i *Initialization) Used() bool { return i.used.Load() }

// String describes the initialization without its secret.
func (i *Initialization) String() string {
	return "Initialization{" + i.req.String() + "}"
}

// RedeemBearerToken redeems a bearer-token grant at the Service (§3.4.1):
// a POST to endpoints.redeem_bearer_token with the pass, the Authority
// identifier, user.email, a fresh harness proof (htm, htu, aph, binding it to
// this request) and opts.RequestedScope. With opts.DPoP the request also carries
// a DPoP proof so the token is bound to the grant's key.
//
// The grant is marked used before anything is sent. A 4xx answer is a
// terminal *RedemptionError; a 429 is waited out (Retry-After, at most
// Config.MaxRetryWait) and retried with the same pass; a 5xx or a timeout
// is retried once, and a 409 after that retry is terminal (the first
// attempt probably consumed the pass).
func (c *Client) RedeemBearerToken(ctx context.Context, g *Grant, opts RedeemOptions) (*Token, error) {
	if err := c.checkRedeem(g, pass.BearerToken, opts); err != nil {
		return nil, err
	}
	endpoint := g.ServiceConfiguration.Endpoints.RedeemBearerToken
	if !g.used.CompareAndSwap(false, true) {
		return nil, ErrGrantUsed
	}
	var resp pass.BearerTokenResponse
	var dpopHeader func(now time.Time) (http.Header, error)
	if opts.DPoP {
		dpopHeader = func(now time.Time) (http.Header, error) {
			p, err := dpopProof(g.Key, http.MethodPost, endpoint, "", "", now)
			if err != nil {
				return nil, err
			}
			return http.Header{"Dpop": {p}}, nil
		}
	}
	received, err := c.redeem(ctx, g, endpoint, opts, nil, dpopHeader, &resp)
	if err != nil {
		return nil, err
	}
	tok := &Token{Type: "Bearer", Scope: resp.Scope, Service: g.Service, value: resp.BearerToken, now: c.now, mission: g.missionState()}
	switch {
	case resp.TokenType == "" || strings.EqualFold(resp.TokenType, "Bearer"):
	case strings.EqualFold(resp.TokenType, "DPoP") && opts.DPoP:
		tok.Type, tok.key = "DPoP", g.Key
	default:
		return nil, &ProtocolError{Peer: "service", URL: endpoint, Reason: fmt.Sprintf("unexpected token_type %q", resp.TokenType)}
	}
	if resp.ExpiresIn != nil {
		tok.ExpiresAt = received.Add(time.Duration(min(*resp.ExpiresIn, int64(365*24*time.Hour/time.Second))) * time.Second)
	}
	if opts.RequestedScope != nil && resp.Scope != nil && !resp.Scope.SubsetOf(opts.RequestedScope) {
		c.log.WarnContext(ctx, "agentpass service granted more than the requested scope", "service", g.Service, "task", g.Task.ID)
	}
	c.emit(Progress{Event: EventRedeemed, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority, Scope: resp.Scope})
	return tok, nil
}

// RedeemBrowserSession redeems a browser-session grant at the Service
// (§3.3.1), announcing both initialization constructions ("POST", "GET").
// The answer is an Initialization to load once in a browser (see package
// browser). Errors and retries are as for RedeemBearerToken; opts.DPoP is
// not allowed.
func (c *Client) RedeemBrowserSession(ctx context.Context, g *Grant, opts RedeemOptions) (*Initialization, error) {
	if err := c.checkRedeem(g, pass.BrowserSession, opts); err != nil {
		return nil, err
	}
	if opts.DPoP {
		return nil, fmt.Errorf("%w: DPoP applies to bearer tokens only", ErrInvalidRequest)
	}
	endpoint := g.ServiceConfiguration.Endpoints.RedeemBrowserSession
	if !g.used.CompareAndSwap(false, true) {
		return nil, ErrGrantUsed
	}
	var resp pass.BrowserSessionResponse
	if _, err := c.redeem(ctx, g, endpoint, opts, []string{http.MethodPost, http.MethodGet}, nil, &resp); err != nil {
		return nil, err
	}
	init := &Initialization{Method: http.MethodGet, Service: g.Service, Destination: g.Destination, mission: g.missionState()}
	init.req = InitRequest{Method: http.MethodGet, URL: resp.InitializationURL}
	if ir := resp.InitializationRequest; ir != nil && ir.Method == http.MethodPost {
		init.Method = http.MethodPost
		init.req.Method = http.MethodPost
		init.req.FormFields = maps.Clone(ir.FormFields)
	}
	if resp.ExpiresAt != nil {
		init.ExpiresAt = *resp.ExpiresAt
	}
	c.emit(Progress{Event: EventRedeemed, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority})
	return init, nil
}

// checkRedeem refuses, without spending the grant, what cannot be sent.
func (c *Client) checkRedeem(g *Grant, t pass.PassType, opts RedeemOptions) error {
	switch {
	case g != nil && g.pending:
		return fmt.Errorf("%w: the delegation is pending; the sub-agent calls WaitDelegation first", ErrInvalidRequest)
	case g == nil || g.pass.Value == "" || g.ServiceConfiguration == nil || g.Key == nil:
		return fmt.Errorf("%w: the grant does not come from Acquire", ErrInvalidRequest)
	case g.Type != t:
		return fmt.Errorf("%w: grant is for %s, not %s", ErrWrongType, g.Type, t)
	case g.mission.closed.Load():
		return ErrMissionClosed
	case opts.RequestedScope != nil && len(opts.RequestedScope) == 0:
		return fmt.Errorf("%w: RequestedScope is empty; use nil for the whole approved scope", ErrInvalidRequest)
	}
	for _, s := range opts.RequestedScope {
		if s == "" {
			return fmt.Errorf("%w: RequestedScope has an empty value", ErrInvalidRequest)
		}
	}
	return nil
}

// redeem posts the redemption with its retry policy (429: wait and retry;
// 5xx or timeout: retry once) and decodes the answer into out. It returns
// when the answer was received.
func (c *Client) redeem(ctx context.Context, g *Grant, endpoint string, opts RedeemOptions, initMethods []string, extra func(time.Time) (http.Header, error), out pass.Document) (_ time.Time, err error) {
	if err := c.ready(); err != nil {
		return time.Time{}, err
	}
	log := c.log.With("harness", g.HarnessID, "service", g.Service, "user", g.User, "task", g.Task.ID, "authority", g.Authority)
	ctx, span := c.tel.Start(ctx, "agentpass.redeem", trace.SpanKindClient)
	telemetry.Annotate(ctx, g.User, "", g.Task.ID, g.Authority, "")
	defer func() { telemetry.End(span, telemetry.ErrOutcome(err)) }()
	retried, rateWaits := false, 0
	for {
		now := c.now()
		proof, err := g.Key.HarnessProof(dpop.ProofParams{
			HarnessID: g.HarnessID,
			Audience:  g.Service,
			Method:    http.MethodPost,
			URL:       endpoint,
			AgentPass: g.pass.Value,
			TTL:       defaultTaskAttestationTTL,
			Now:       now,
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("harness: harness proof: %w", err)
		}
		call := httpx.Call{Peer: pass.PeerService, URL: endpoint, Body: pass.RedemptionRequest{
			AgentPass:             g.pass,
			Authority:             g.Authority,
			User:                  pass.User{Email: g.User},
			HarnessProof:          &pass.JWTContainer{JWT: proof},
			RequestedScope:        opts.RequestedScope,
			InitializationMethods: initMethods,
		}}
		if extra != nil {
			if call.Header, err = extra(now); err != nil {
				return time.Time{}, fmt.Errorf("harness: DPoP proof: %w", err)
			}
		}
		hdr, err := httpx.Do(ctx, c.http, call, out)
		if err == nil {
			log.InfoContext(ctx, "agentpass redeemed", "outcome", "ok")
			return c.now(), nil
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("harness: redeeming at %s: %w", endpoint, ctx.Err())
		}
		var ue *pass.UnreachableError
		if errors.As(err, &ue) {
			if retried {
				log.WarnContext(ctx, "agentpass redemption failed", "outcome", "failed", "error", err)
				return time.Time{}, fmt.Errorf("%w: %w", ErrRedemption, ue)
			}
			retried = true
			if err := c.sleep(ctx, retry5xxDelay); err != nil {
				return time.Time{}, fmt.Errorf("harness: redeeming at %s: %w", endpoint, err)
			}
			continue
		}
		var pe *pass.PeerError
		if !errors.As(err, &pe) {
			log.WarnContext(ctx, "agentpass redemption answer invalid", "outcome", "failed", "error", err)
			return time.Time{}, &ProtocolError{Peer: "service", URL: endpoint, Reason: "invalid redemption answer", Err: err}
		}
		var wait time.Duration
		switch {
		case pe.Status == http.StatusTooManyRequests:
			wait = retryAfter(hdr, now)
			if wait == 0 {
				wait = time.Second
			}
			rateWaits++
			if wait > c.maxRetryWait || rateWaits > maxRateLimitWaits {
				log.WarnContext(ctx, "agentpass redemption rate limited", "outcome", "rejected", "code", string(pe.Code))
				return time.Time{}, &RedemptionError{URL: endpoint, Retried: retried, Err: pe}
			}
		case pe.Status >= 500 && !retried:
			retried, wait = true, retry5xxDelay
		default:
			log.WarnContext(ctx, "agentpass redemption rejected", "outcome", "rejected", "code", string(pe.Code), "status", pe.Status)
			return time.Time{}, &RedemptionError{URL: endpoint, Retried: retried, Err: pe}
		}
		if err := c.sleep(ctx, wait); err != nil {
			return time.Time{}, fmt.Errorf("harness: redeeming at %s: %w", endpoint, err)
		}
	}
}
