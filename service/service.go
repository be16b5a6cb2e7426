package service

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/foldmark"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/replayns"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Service is an AgentPass Service: an http.Handler serving the Service
// endpoints, plus the middleware that authenticates agent requests. It is
// safe for concurrent use.
type Service struct {
	cfg       *settings
	mux       *http.ServeMux
	urls      endpointURLs
	configDoc []byte
	verifier  *assertion.Verifier
	proofs    *dpop.ProofVerifier
	dpop      *dpop.DPoPVerifier
	// recording is the Store when it records harness proofs in its Redeem
	// statement (it shares Config.ReplayCache's table), else nil.
	recording ProofRecordingStore
	replay    replayCaches
	checks    singleflight.Group
	limits    limiters
	reports   *reporter
	events    *events
	tel       *telemetry.T
}

type endpointURLs struct {
	configuration, jwks, resolve, scopes, bearer, browser, initialize, events string
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	st, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: st, reports: newReporter()}
	if s.tel, err = telemetry.New("service", st.TracerProvider, st.MeterProvider); err != nil {
		return nil, errConfig("%v", err)
	}
	p := st.paths
	s.urls = endpointURLs{
		configuration: st.base + p.Configuration,
		jwks:          st.base + p.JWKS,
		resolve:       st.base + p.ResolveAuthorities,
		scopes:        st.base + p.AvailableScopes,
		bearer:        st.base + p.RedeemBearerToken,
		browser:       st.base + p.RedeemBrowserSession,
		initialize:    st.base + p.Initialize,
		events:        st.base + p.Events,
	}
	doc := pass.ServiceConfiguration{
		Version: pass.Version,
		Kind:    pass.KindService,
		Service: pass.ServiceInfo{Origin: st.origin, Name: st.Name},
		JWKSURI: s.urls.jwks,
		Trust: pass.ServiceTrust{
			ServiceAuthority: st.ServiceAuthority,
		},
		Endpoints: pass.ServiceEndpoints{
			ResolveAuthorities:   s.urls.resolve,
			RedeemBrowserSession: s.urls.browser,
			RedeemBearerToken:    s.urls.bearer,
			AvailableScopes:      s.urls.scopes,
		},
	}
	if len(st.TrustedFederated) > 0 {
		doc.Trust.TrustedFederatedAuthorities = append([]pass.AuthorityRef(nil), st.TrustedFederated...)
	}
	// This Service verifies htm, htu and aph for every pass the Authority
	// marks as requested with the holder-binding extension.
	if doc.Extensions, err = doc.Extensions.With(pass.ExtHolderBinding, pass.Extension{Version: "1.0"}); err != nil {
		return nil, fmt.Errorf("service: holder-binding extension: %w", err)
	}
	// This Service keeps each delegation's mission, holds (rather than
	// drops) a delegation whose mission is suspended, and reports what its
	// middleware refuses; advertising it asks Authorities for the
	// suspended-404 body.
	if doc.Extensions, err = doc.Extensions.With(pass.ExtMission, pass.Extension{Version: "1.0"}); err != nil {
		return nil, fmt.Errorf("service: mission extension: %w", err)
	}
	// It also ends the delegations of sub-agents it holds with their
	// parent's (the local cascade), which the delegation extension says.
	if doc.Extensions, err = doc.Extensions.With(pass.ExtDelegation, pass.Extension{Version: "1.0"}); err != nil {
		return nil, fmt.Errorf("service: delegation extension: %w", err)
	}
	if st.EventDelivery != "" {
		// One delivery method: a pushing Service names its receiver, on
		// its own origin; a polling one names none.
		ev := pass.ServiceEvents{DeliveryMethod: st.EventDelivery, EventsAccepted: secevent.Types()}
		if ev.DeliveryMethod == pass.DeliveryPush {
			ev.Receiver = s.urls.events
		}
		x, err := ev.Extension(st.origin)
		if err != nil {
			return nil, fmt.Errorf("service: events extension: %w", err)
		}
		if doc.Extensions, err = doc.Extensions.With(pass.ExtEvents, x); err != nil {
			return nil, fmt.Errorf("service: events extension: %w", err)
		}
	}
	// This Service stages in place: it keeps a staged mission's ceiling as
	// each delegation's bound and lets through only the current stage's
	// scope, so a stage move needs no new pass.
	if doc.Extensions, err = doc.Extensions.With(pass.ExtStages, pass.Extension{Version: "1.0"}); err != nil {
		return nil, fmt.Errorf("service: stages extension: %w", err)
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("service: configuration document: %w", err)
	}
	if s.configDoc, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("service: configuration document: %w", err)
	}
	s.replay = newReplayCaches(st.ReplayCache, st.Now)
	// Assertion replay entries keep their "assertion:"+iss key: the
	// verifier adds the prefix.
	if s.verifier, err = assertion.NewVerifier(assertion.Config{
		Keys: st.Discovery, Audience: st.origin,
		Replay: s.replay.assertion, Now: st.Now,
	}); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if s.proofs, err = dpop.NewProofVerifier(dpop.ProofVerifierConfig{
		Audience: st.origin,
		Replay:   s.replay.harness,
		Now:      st.Now,
	}); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	// Never a value embedding this module's store (overriding Redeem): it
	// has RedeemRecorded by promotion, which would bypass its override.
	if rs, ok := st.Store.(ProofRecordingStore); ok && !foldmark.Wraps(st.Store) && st.ReplayCache != nil && rs.SharesReplayCache(st.ReplayCache) {
		s.recording = rs
	}
	if s.dpop, err = dpop.NewDPoPVerifier(dpop.DPoPVerifierConfig{
		Replay: s.replay.dpop,
		Now:    st.Now,
	}); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}

	if s.limits, err = newLimiters(st.RateLimits, st.Now); err != nil {
		return nil, err
	}

	s.mux = http.NewServeMux()
	s.mux.HandleFunc(p.Configuration, s.serveConfiguration)
	s.mux.HandleFunc(p.JWKS, s.serveJWKS)
	s.mux.HandleFunc(p.ResolveAuthorities, s.limited(s.limits.resolve, "resolve_authorities", s.serveResolve))
	s.mux.HandleFunc(p.AvailableScopes, s.limited(s.limits.scopes, "available_scopes", s.serveAvailableScopes))
	s.mux.HandleFunc(p.RedeemBearerToken, s.limited(s.limits.redeem, string(pass.BearerToken),
		func(w http.ResponseWriter, r *http.Request) { s.serveRedeem(w, r, pass.BearerToken) }))
	s.mux.HandleFunc(p.RedeemBrowserSession, s.limited(s.limits.redeem, string(pass.BrowserSession),
		func(w http.ResponseWriter, r *http.Request) { s.serveRedeem(w, r, pass.BrowserSession) }))
	s.mux.HandleFunc(p.Initialize, s.limited(s.limits.initialize, "initialize", s.serveInitialize))
	s.events = newEvents(st)
	if st.EventDelivery == pass.DeliveryPush {
		s.mux.HandleFunc(p.Events, s.limited(s.limits.events, "events", s.serveEvents))
	}
	s.instrument()
	return s, nil
}

// instrument wraps each endpoint in a span and request counter; the
// redemptions are timed too. Rate-limit refusals count as rejected
// requests of their endpoint.
func (s *Service) instrument() {
	mux := http.NewServeMux()
	p := s.cfg.paths
	for _, e := range []struct {
		path, name string
		lat        telemetry.Latency
	}{
		{p.Configuration, "configuration", telemetry.NoLatency},
		{p.JWKS, "jwks", telemetry.NoLatency},
		{p.ResolveAuthorities, "resolve_authorities", telemetry.NoLatency},
		{p.AvailableScopes, "available_scopes", telemetry.NoLatency},
		{p.RedeemBearerToken, string(pass.BearerToken), telemetry.RedemptionLatency},
		{p.RedeemBrowserSession, string(pass.BrowserSession), telemetry.RedemptionLatency},
		{p.Initialize, "initialize", telemetry.NoLatency},
		{p.Events, "events", telemetry.NoLatency},
	} {
		h, pattern := s.mux.Handler(&http.Request{Method: http.MethodPost, URL: &url.URL{Path: e.path}})
		if pattern == "" {
			continue // not served (a polling Service has no receiver)
		}
		mux.HandleFunc(pattern, s.tel.Handler(e.name, e.lat, h.ServeHTTP))
	}
	s.mux = mux
}

// ServeHTTP serves the Service endpoints at their Paths and answers 404
// with a JSON error body for every other path. Mount it on the
// application's mux at the Paths (or at Paths.Prefix + "/"), for example
// mux.Handle("/agentpass/", svc).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s == nil || s.mux == nil {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeInternal, "service not configured"))
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeNotFound, "no such endpoint"))
		return
	}
	h.ServeHTTP(w, r)
}

// ConfigurationURL returns the URL of the Service configuration document:
// the value to publish in the _agentpass-service.{host} TXT record, where
// Harnesses and Authorities discover the Service.
func (s *Service) ConfigurationURL() string { return s.urls.configuration }

// Origin returns the Service origin in its serialised form.
func (s *Service) Origin() string {
	if s == nil || s.cfg == nil {
		return ""
	}
	return s.cfg.origin
}

// Configuration returns a copy of the Service configuration document.
func (s *Service) Configuration() *pass.ServiceConfiguration {
	var doc pass.ServiceConfiguration
	_ = json.Unmarshal(s.configDoc, &doc)
	return &doc
}

// serveConfiguration answers GET with the configuration document, with a
// bounded Cache-Control so clients see changes within minutes.
func (s *Service) serveConfiguration(w http.ResponseWriter, r *http.Request) {
	s.serveDocument(w, r, s.configDoc)
}

// serveJWKS answers GET with the public signing keys, which verify every
// assertion the Service signs. Rotated keys stay published while they are
// retiring, so assertions signed just before a rotation still verify.
func (s *Service) serveJWKS(w http.ResponseWriter, r *http.Request) {
	b, err := json.Marshal(s.cfg.Keys.JWKS())
	if err != nil {
		httpx.WriteError(w, s.cfg.Logger, fmt.Errorf("service: encode JWKS: %w", err))
		return
	}
	s.serveDocument(w, r, b)
}

func (s *Service) serveDocument(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		httpx.MethodNotAllowed(w, http.MethodGet, http.MethodHead)
		return
	}
	if !acceptsJSON(r.Header.Values("Accept")) {
		httpx.WriteError(w, nil, pass.Fail(pass.CodeNotAcceptable, "only application/json is available"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(configurationMaxAge/time.Second)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// acceptsJSON reports whether an Accept header admits application/json.
// No header, */* and application/* do; a q=0 entry does not.
func acceptsJSON(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			if q, ok := qValue(params); ok && q == 0 {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// qValue returns the q parameter of an Accept entry's parameters.
func qValue(params string) (float64, bool) {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return q, err == nil
		}
	}
	return 0, false
}

// Default replay-cache sizes, each rate × the longest a verifier keeps a
// pair (a lifetime of DefaultMaxLifetime plus the skew on each side).
const (
	replayLifetime       = dpop.DefaultMaxLifetime + 2*dpop.DefaultSkew
	harnessReplayEntries = 1_000 * int(replayLifetime/time.Second)
	dpopReplayEntries    = 10_000 * int(replayLifetime/time.Second)
	assertReplayEntries  = 1_000 * int(replayLifetime/time.Second)
	// SETs are remembered for secevent.ReplayLifetime (they carry no
	// exp): 100 events a second.
	eventReplayEntries = 100 * int(secevent.ReplayLifetime/time.Second)
)

// replayCaches are the replay caches of the three kinds of jti the Service
// records. Each kind has its own issuer prefix, so a cache shared with
// other kinds (or with an Authority) never confuses them; by default each
// kind also has its own cache, so a flood of one kind (self-signed DPoP
// proofs, say) cannot fill the others.
type replayCaches struct {
	harness, dpop, assertion, events dpop.ReplayCache
}

// The Service's replay namespace and its harness proofs' kind in it.
const (
	replayRole       = "service:"
	kindHarnessProof = "harness-proof:"
)

func newReplayCaches(shared dpop.ReplayCache, now func() time.Time) replayCaches {
	// The assertion verifier prefixes its issuers with "assertion:".
	c := replayns.New(shared, replayRole, now, map[string]int{
		kindHarnessProof: harnessReplayEntries, "dpop:": dpopReplayEntries, "": assertReplayEntries,
		"set:": eventReplayEntries})
	return replayCaches{harness: c[kindHarnessProof], dpop: c["dpop:"], assertion: c[""], events: c["set:"]}
}
