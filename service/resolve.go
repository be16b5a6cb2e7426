package service

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// trustSet is the outcome of the precedence rules of §4.2 for one user:
// the Authorities this Service accepts for that user. One function,
// [Service.trustFor], computes it for resolution, available scopes and
// redemption alike, so no endpoint accepts an Authority that resolution
// would not have offered.
type trustSet struct {
	email string
	// enterprise is the usable Enterprise Authority of the user's domain,
	// nil when the domain has no record.
	enterprise *source
	// service is the Service Authority when it is configured and
	// permitted for this user (no Enterprise Authority, or one whose
	// policy allows it).
	service *source
	// serviceForbidden: a Service Authority is configured but the
	// Enterprise Authority's policy forbids it.
	serviceForbidden bool
	// federated are the trusted Federated Authorities offered to this
	// user: empty when an Enterprise Authority exists, which alone speaks
	// for its domain's users.
	federated []pass.AuthorityRef
	// srcs holds what enterprise and service point to, so a set is one
	// allocation (one per redemption).
	srcs [2]source
}

// source is one trusted Authority and how it is trusted.
type source struct {
	ref  pass.AuthorityRef
	mode pass.TrustMode
	// cfg is the Authority configuration, fetched during discovery for an
	// Enterprise Authority and on demand for the others.
	cfg *pass.AuthorityConfiguration
}

// trustFor runs enterprise discovery for the user's domain and applies the
// precedence table. Errors are *pass.Error: 400 invalid email, 403
// delegation_disabled for "none", 502 discovery_failed for any DNS failure,
// invalid record or unusable enterprise configuration. These never fall
// back to other Authorities: otherwise whoever can break a domain's DNS
// could hand its users to another Authority.
func (s *Service) trustFor(ctx context.Context, email string) (*trustSet, error) {
	domain, err := pass.EmailDomain(email)
	if err != nil {
		return nil, httpx.InvalidRequest(err)
	}
	set := &trustSet{email: email}
	info, err := s.cfg.Discovery.DiscoverEnterprise(ctx, domain)
	switch {
	case err == nil:
		set.srcs[0] = source{
			ref:  pass.AuthorityRef{Authority: info.Configuration.Authority, AuthorityConfigurationURL: info.ConfigurationURL},
			mode: pass.TrustEnterprise,
			cfg:  info.Configuration,
		}
		set.enterprise = &set.srcs[0]
		if sa := s.cfg.ServiceAuthority; sa != nil {
			if info.Configuration.AllowsServiceAuthorities() {
				set.srcs[1] = source{ref: *sa, mode: pass.TrustService}
				set.service = &set.srcs[1]
			} else {
				set.serviceForbidden = true
			}
		}
		return set, nil
	case errors.Is(err, discovery.ErrNoRecord):
		if sa := s.cfg.ServiceAuthority; sa != nil {
			set.srcs[1] = source{ref: *sa, mode: pass.TrustService}
			set.service = &set.srcs[1]
		}
		set.federated = s.federatedFor(ctx, email)
		return set, nil
	case errors.Is(err, discovery.ErrDelegationDisabled):
		return nil, pass.Fail(pass.CodeDelegationDisabled,
			"the user's domain has disabled agent delegation").WithCause(err)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		// Lookup failure, invalid record, unfetchable or invalid
		// configuration, trust_mode other than "enterprise": fail closed.
		return nil, pass.Fail(pass.CodeDiscoveryFailed,
			"enterprise discovery for the user's domain failed").WithCause(err)
	}
}

// federatedFor applies FederatedPolicy, keeping only configured entries.
func (s *Service) federatedFor(ctx context.Context, email string) []pass.AuthorityRef {
	all := s.cfg.TrustedFederated
	if len(all) == 0 {
		return nil
	}
	if s.cfg.FederatedPolicy == nil {
		return slices.Clone(all)
	}
	picked := s.cfg.FederatedPolicy(ctx, email, slices.Clone(all))
	var out []pass.AuthorityRef
	for _, p := range picked {
		if slices.Contains(all, p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// response shapes the resolution answer from a trust set, following the
// preferences of the Config (the spec allows several answers).
func (s *Service) response(set *trustSet) (*pass.ResolutionResponse, error) {
	prefer := s.cfg.AuthorityChoice == PreferServiceAuthority
	require := s.cfg.AuthorityChoice == RequireServiceAuthority
	offer := s.cfg.AuthorityChoice == OfferServiceAndFederated
	if set.enterprise != nil {
		switch {
		case set.service != nil && (prefer || require):
			return &pass.ResolutionResponse{ServiceAuthority: ref(set.service.ref)}, nil
		case require:
			return nil, pass.Fail(pass.CodeAgentsUnsupported,
				"the user's Enterprise Authority does not allow this Service's own Authority")
		default:
			return &pass.ResolutionResponse{EnterpriseAuthority: ref(set.enterprise.ref)}, nil
		}
	}
	sa, fed := set.service, set.federated
	if require {
		fed = nil
	}
	switch {
	case sa != nil && len(fed) > 0 && offer:
		return &pass.ResolutionResponse{ServiceAuthority: ref(sa.ref), TrustedFederatedAuthorities: fed}, nil
	case sa != nil && (len(fed) == 0 || prefer):
		return &pass.ResolutionResponse{ServiceAuthority: ref(sa.ref)}, nil
	case len(fed) > 0:
		return &pass.ResolutionResponse{TrustedFederatedAuthorities: fed}, nil
	}
	return nil, pass.Fail(pass.CodeNoAuthority, "no Authority is available for this user")
}

func ref(r pass.AuthorityRef) *pass.AuthorityRef { return &r }

// accept returns the trust source of authority (an Authority identifier,
// compared exactly, as it may carry a path) for the user of set, with its
// configuration fetched and checked: trust_mode must match how it is
// trusted, so an Authority cannot act in a role it was not trusted for,
// and its authority member must equal the identifier. Errors are *pass.Error:
// 403 untrusted_authority, precedence_violation or agents_unsupported;
// 502 when the configuration cannot be fetched.
func (s *Service) accept(ctx context.Context, set *trustSet, authority string) (*source, error) {
	var src *source
	switch {
	case set.enterprise != nil && set.enterprise.ref.Authority == authority:
		if s.cfg.AuthorityChoice == RequireServiceAuthority {
			return nil, pass.Fail(pass.CodeAgentsUnsupported,
				"this Service accepts only its own Authority")
		}
		src = set.enterprise
	case set.service != nil && set.service.ref.Authority == authority:
		src = &source{ref: set.service.ref, mode: pass.TrustService}
	case set.serviceForbidden && s.cfg.ServiceAuthority.Authority == authority:
		return nil, pass.Fail(pass.CodePrecedenceViolation,
			"the user's Enterprise Authority does not allow Service Authorities")
	default:
		for _, f := range set.federated {
			if f.Authority == authority {
				if s.cfg.AuthorityChoice == RequireServiceAuthority {
					return nil, pass.Fail(pass.CodeAgentsUnsupported,
						"this Service accepts only its own Authority")
				}
				src = &source{ref: f, mode: pass.TrustFederated}
				break
			}
		}
		if src == nil {
			if set.enterprise != nil && s.isTrustedFederated(authority) {
				return nil, pass.Fail(pass.CodePrecedenceViolation,
					"an Enterprise Authority governs this user")
			}
			return nil, pass.Fail(pass.CodeUntrustedAuthority,
				"the Authority is not trusted for this user")
		}
	}
	if src.cfg == nil {
		cfg, err := s.cfg.Discovery.AuthorityConfiguration(ctx, src.ref.AuthorityConfigurationURL)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, pass.Fail(pass.CodeAuthorityUnavailable,
				"the Authority's configuration is unavailable").WithCause(err)
		}
		src.cfg = cfg
	}
	if src.cfg.TrustMode != src.mode {
		return nil, pass.Failf(pass.CodeUntrustedAuthority,
			"the Authority's trust_mode does not match how this Service trusts it")
	}
	if src.cfg.Authority != src.ref.Authority {
		return nil, pass.Fail(pass.CodeUntrustedAuthority,
			"the Authority's configuration names another authority")
	}
	return src, nil
}

func (s *Service) isTrustedFederated(authority string) bool {
	for _, f := range s.cfg.TrustedFederated {
		if f.Authority == authority {
			return true
		}
	}
	return false
}

// serveResolve answers POST resolve-authorities (§4.2).
func (s *Service) serveResolve(w http.ResponseWriter, r *http.Request) {
	a := &audit{event: eventResolve, endpoint: "resolve_authorities", requestID: requestID(r)}
	if r.Method != http.MethodPost {
		httpx.MethodNotAllowed(w, http.MethodPost)
		return
	}
	var req pass.ResolutionRequest
	if err := httpx.ReadRequest(w, r, &req); err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.user = req.User.Email
	set, err := s.trustFor(r.Context(), req.User.Email)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	resp, err := s.response(set)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	if resp.EnterpriseAuthority != nil {
		a.authority = resp.EnterpriseAuthority.Authority
	} else if resp.ServiceAuthority != nil {
		a.authority = resp.ServiceAuthority.Authority
	}
	s.cfg.Logger.LogAttrs(r.Context(), levelDebug, a.event, a.attrs("ok")...)
	httpx.NoStore(w.Header())
	httpx.WriteJSON(w, http.StatusOK, resp)
}
