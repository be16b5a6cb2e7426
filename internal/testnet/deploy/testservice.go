package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

// TestService is a minimal real AgentPass Service for Authority tests: it
// serves a Service configuration, its JWKS and an available_scopes endpoint
// that verifies the Authority's assertion (§4.3) against the JWKS of the one
// Authority it trusts, and signs Service assertions for validation calls.
// It is served on a testnet host and published in the network's DNS. Unlike
// a service.Service it can fail on demand and reports what it verified.
type TestService struct {
	Origin     string
	ConfigURL  string
	Keys       *dpop.KeySet
	disc       *discovery.Client
	trustedCfg string
	now        func() time.Time
	verifier   *assertion.Verifier

	mu      sync.Mutex
	scopes  []pass.ScopeInfo
	fail    int // status to answer available_scopes with, 0 = normal
	calls   int
	last    pass.AvailableScopesRequest
	claims  *assertion.Claims
	lastErr error
	ext     pass.Extensions
}

// SetExtensions sets the extensions the Service's configuration
// advertises. Set them before the Authority first discovers the Service:
// discovery caches the configuration.
func (s *TestService) SetExtensions(x pass.Extensions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ext = x
}

// NewTestService serves a TestService on host (e.g. "todo.test") in n, publishes
// _agentpass-service.{host}, and trusts the Authority whose configuration
// is at authorityConfigURL. now is the clock (nil: time.Now).
func NewTestService(n *testnet.Network, host, authorityConfigURL string, now func() time.Time) *TestService {
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		panic(err)
	}
	disc := n.DiscoveryAt(now)
	if now == nil {
		now = time.Now
	}
	s := &TestService{
		Origin: "https://" + host, ConfigURL: "https://" + host + "/agentpass-service.json", Keys: ks, disc: disc,
		trustedCfg: authorityConfigURL, now: now,
		scopes: []pass.ScopeInfo{{Name: "tickets:read", Description: "Read tickets"}, {Name: "tickets:write"}, {Name: "admin"}},
	}
	// The verifier records each assertion's jti, as a Service does.
	if s.verifier, err = assertion.NewVerifier(assertion.Config{
		Keys: disc, Audience: s.Origin, Replay: dpop.NewMemoryReplayCache(dpop.WithClock(now)), Now: now,
	}); err != nil {
		panic(err)
	}
	n.Serve(host, s)
	n.PublishService(host, s.ConfigURL)
	return s
}

// SetScopes sets the scopes the available_scopes endpoint offers.
func (s *TestService) SetScopes(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = nil
	for _, n := range names {
		s.scopes = append(s.scopes, pass.ScopeInfo{Name: n})
	}
}

// SetScopeInfos sets the scopes the available_scopes endpoint offers,
// with their descriptions and declared effects.
func (s *TestService) SetScopeInfos(scopes ...pass.ScopeInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = append([]pass.ScopeInfo(nil), scopes...)
}

// FailScopes makes available_scopes answer status (0 restores it).
func (s *TestService) FailScopes(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = status
}

// ScopeCalls returns how many authenticated available_scopes calls
// arrived, the last body and the last verified assertion claims.
func (s *TestService) ScopeCalls() (int, pass.AvailableScopesRequest, *assertion.Claims) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.last, s.claims
}

// LastError returns the last assertion verification failure.
func (s *TestService) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Assertion returns a Service assertion for aud (an Authority identifier).
func (s *TestService) Assertion(aud string) string {
	tok, err := assertion.Sign(s.Keys.Current(), s.Origin, aud, 0, s.now())
	if err != nil {
		panic(err)
	}
	return tok
}

// Configuration returns the Service configuration document.
func (s *TestService) Configuration() pass.ServiceConfiguration {
	s.mu.Lock()
	ext := s.ext
	s.mu.Unlock()
	return pass.ServiceConfiguration{
		Extensions: ext,
		Version:    "0.1", Kind: pass.KindService,
		Service: pass.ServiceInfo{Origin: s.Origin, Name: "Test Service"},
		JWKSURI: s.Origin + "/jwks.json",
		Trust:   pass.ServiceTrust{TrustedFederatedAuthorities: []pass.AuthorityRef{{Authority: "https://placeholder.test", AuthorityConfigurationURL: s.trustedCfg}}},
		Endpoints: pass.ServiceEndpoints{
			ResolveAuthorities: s.Origin + "/resolve", RedeemBrowserSession: s.Origin + "/redeem/browser",
			RedeemBearerToken: s.Origin + "/redeem/bearer", AvailableScopes: s.Origin + "/available-scopes",
		},
	}
}

// ServeHTTP implements http.Handler.
func (s *TestService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/agentpass-service.json":
		httpx.WriteJSON(w, http.StatusOK, s.Configuration())
	case "/jwks.json":
		httpx.WriteJSON(w, http.StatusOK, s.Keys.JWKS())
	case "/available-scopes":
		s.serveScopes(w, r)
	default:
		httpx.WriteError(w, nil, pass.Fail(pass.CodeNotFound, "no such endpoint"))
	}
}

func (s *TestService) serveScopes(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpx.MethodNotAllowed(w, http.MethodPost)
		return
	}
	claims, err := s.verify(r.Context(), httpx.BearerToken(r))
	if err != nil {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidAssertion, "invalid assertion"))
		return
	}
	var in pass.AvailableScopesRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	s.mu.Lock()
	s.calls++
	s.last, s.claims = in, claims
	fail, scopes := s.fail, append([]pass.ScopeInfo{}, s.scopes...)
	s.mu.Unlock()
	if fail != 0 {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInternal, "failing on purpose").WithStatus(fail))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, pass.AvailableScopesResponse{Scopes: scopes})
}

// verify checks an Authority assertion: iss must be the trusted
// Authority's identifier, keys from its jwks_uri, aud this Service.
func (s *TestService) verify(ctx context.Context, tok string) (*assertion.Claims, error) {
	parsed, err := assertion.Parse(tok)
	if err != nil {
		return nil, err
	}
	cfg, err := s.disc.AuthorityConfiguration(ctx, s.trustedCfg)
	if err != nil {
		return nil, err
	}
	if cfg.Authority != parsed.Issuer() {
		return nil, assertion.ErrInvalid
	}
	return s.verifier.Verify(ctx, parsed, cfg.JWKSURI, parsed.Issuer())
}

// Post sends a JSON body with the Service's assertion for aud to url and
// returns the status and body.
func (s *TestService) Post(client *http.Client, url, aud string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.Assertion(aud))
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, err
}
