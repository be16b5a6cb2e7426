package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// maxPollFailures is how many polls in a row may fail with a 5xx or a
// network error before Acquire gives up.
const maxPollFailures = 5

// maxReasonLen bounds the denial reason kept from an Authority.
const maxReasonLen = 512

// Request describes the pass to acquire.
type Request struct {
	// Service is the Service origin, e.g. "https://todo.example". Required.
	Service string
	// User is the e-mail address of the User the agent acts for. Required.
	User string
	// Task is the task the pass is for. Task.Description is required; an
	// empty Task.ID gets a random one; Attestation is set by the Harness.
	Task pass.Task
	// Type is the redemption flow. If empty, pass.BearerToken.
	Type pass.PassType
	// Destination is the page a browser session should land on
	// (intent.destination_url). Only for pass.BrowserSession: a bearer
	// token has no landing page.
	Destination string
	// Authority is the identifier of the Authority to use when the Service
	// offers a choice, overriding Config.PreferredAuthority for this
	// request (typically what a person picked from a
	// [*ChoiceRequiredError]). It is never used when not on offer.
	Authority string
	// Scope is the scope to ask for (the issuance request's scope
	// extension member). If nil, the Authority's proposal for the task is
	// the request; "*" asks for what the task needs, which an Authority
	// may refuse. A v0.1 Authority ignores it.
	Scope pass.Scope
	// NoTaskAttestation omits task.attestation. By default every request
	// carries one, signed with the holder key, so the Authority can check
	// that the task shown to the approver comes from the key holder.
	NoTaskAttestation bool
	// Stages is an optional stage plan: the Authority approves the union
	// of the stages' scopes, of which the mission holds the first
	// stage's at first; later ones are asked for with
	// Mission.RequestStage. An Authority or Service without staged
	// execution approves the whole plan at once.
	Stages []pass.Stage
}

// Grant is an approved AgentPass with everything needed to redeem it. It is
// single-use: the first redemption spends it, whatever the outcome. Its
// String method hides the pass; never log the pass itself.
type Grant struct {
	Type    pass.PassType
	Service string // the Service origin
	// ServiceConfiguration is the Service's configuration, as discovered.
	ServiceConfiguration *pass.ServiceConfiguration
	// Authority is the Authority identifier (its configuration's
	// "authority" member, not its URL), sent as "authority" at
	// redemption.
	Authority              string
	AuthorityConfiguration *pass.AuthorityConfiguration
	// Branch is the kind of Authority the grant came from: enterprise,
	// service or federated. After a "service_or_federated" resolution
	// (reported as such in Progress) it says which of the two was chosen.
	Branch      Branch
	HarnessID   string
	User        string
	Task        pass.Task
	RequestID   string
	Destination string
	// ExpiresAt is the status document's expires_at, or zero.
	ExpiresAt time.Time
	// Key is the holder-binding key whose public half was sent as
	// harness.cnf; redemption proofs are signed with it.
	Key *dpop.Key
	// MissionID is the id of the request's mission, when the Authority
	// speaks the mission extension (see Client.Mission); a non-secret
	// handle.
	MissionID string
	// Proposal is the Authority's scope proposal as last read while the
	// request was pending, about the requested scopes only; nil when the
	// Authority gave none.
	Proposal *pass.ScopeProposal

	pass    pass.AgentPass
	used    atomic.Bool
	mission missionState
	pending bool // a delegation a person has yet to decide (Client.WaitDelegation)
}

// missionState returns the state shared by g's mission handle and tokens.
func (g *Grant) missionState() *missionState { return &g.mission }

// AgentPass returns the pass. Its value is a secret.
func (g *Grant) AgentPass() pass.AgentPass { return g.pass }

// Pending reports whether g is a delegation left for a person to decide: it
// holds no pass until the sub-agent's Client.WaitDelegation returns one.
func (g *Grant) Pending() bool { return g.pending }

// Used reports whether the grant was already presented for redemption.
func (g *Grant) Used() bool { return g.used.Load() }

// String describes the grant without its pass.
func (g *Grant) String() string {
	return fmt.Sprintf("Grant{%s for %s at %s by %s, task %s, pass hidden}", g.Type, g.User, g.Service, g.Authority, g.Task.ID)
}

// acquisition is the state of one Acquire.
type acquisition struct {
	req       Request
	origin    string
	grant     *Grant
	statusOK  bool   // the request carried harness.cnf, so polls send a proof
	configURL string // the Authority's configuration URL, as the Service listed it
}

// Acquire runs §3.2 for one task: Service discovery (DNS TXT and
// configuration), authority resolution through the Service, the chosen
// Authority's configuration (its version is checked before anything is sent
// to it, so a peer speaking an unknown major version learns nothing), the
// issuance request with holder binding and a task attestation, and polling
// until a terminal status. It returns the approved pass as a Grant.
//
// Terminal outcomes are errors: a *DeniedError (ErrDenied), ErrExpired,
// ErrCanceled, and a *ProtocolError (ErrProtocol) for a peer that breaks
// the protocol, such as an approved status without a pass.
// Cancelling ctx stops polling and abandons the request; the error then
// matches ctx.Err(). Acquire is Start and Wait in one call, with the key
// kept in memory.
func (c *Client) Acquire(ctx context.Context, req Request) (*Grant, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	a, err := c.newAcquisition(req)
	if err != nil {
		return nil, err
	}
	ctx, span := c.tel.Start(ctx, "agentpass.acquire", trace.SpanKindClient)
	telemetry.Annotate(ctx, a.grant.User, "", a.grant.Task.ID, "", "")
	g, err := c.acquire(ctx, a)
	telemetry.End(span, telemetry.ErrOutcome(err))
	return g, err
}

// acquire is Acquire once the request is checked.
func (c *Client) acquire(ctx context.Context, a *acquisition) (*Grant, error) {
	st, created, err := c.begin(ctx, a)
	if err != nil {
		return nil, err
	}
	g, err := c.finish(ctx, a, st, created)
	if err != nil && ctx.Err() != nil {
		c.abandonPending(ctx, a.grant)
	}
	return g, err
}

func (c *Client) logger(g *Grant) *slog.Logger {
	log := c.log.With("harness", c.harnessID, "service", g.Service, "user", g.User, "task", g.Task.ID)
	if g.Authority != "" {
		log = log.With("authority", g.Authority)
	}
	return log
}

// begin runs an acquisition up to the Authority's first answer to the
// issuance request (§3.2.1 to §3.2.3).
func (c *Client) begin(ctx context.Context, a *acquisition) (*pass.IssuanceStatus, time.Time, error) {
	g := a.grant
	log := c.logger(g)

	// §3.2.1: discover the Service.
	info, err := c.disc.DiscoverService(ctx, a.origin)
	if err != nil {
		log.WarnContext(ctx, "agentpass service discovery failed", "outcome", "failed", "error", err)
		return nil, time.Time{}, fmt.Errorf("harness: discovering %s: %w", a.origin, err)
	}
	g.ServiceConfiguration = info.Configuration
	c.emit(Progress{Event: EventServiceDiscovered, Service: g.Service, User: g.User, TaskID: g.Task.ID})

	// §3.2.2: resolve the Authority through the Service.
	ref, err := c.resolve(ctx, a)
	if err != nil {
		log.WarnContext(ctx, "agentpass authority resolution failed", "outcome", "failed", "error", err)
		return nil, time.Time{}, err
	}
	log = log.With("authority", ref.Authority)

	// §3.2.3: the Authority's configuration, checked before any request.
	acfg, err := c.disc.AuthorityConfiguration(ctx, ref.AuthorityConfigurationURL)
	if err != nil {
		log.WarnContext(ctx, "agentpass authority configuration failed", "outcome", "failed", "error", err)
		return nil, time.Time{}, fmt.Errorf("harness: authority configuration of %s: %w", ref.Authority, err)
	}
	if err := checkAuthorityConfig(acfg, ref, g.Branch, g.ServiceConfiguration); err != nil {
		log.WarnContext(ctx, "agentpass authority configuration rejected", "outcome", "failed", "error", err)
		return nil, time.Time{}, err
	}
	g.Authority = acfg.Authority
	g.AuthorityConfiguration = acfg
	a.configURL = ref.AuthorityConfigurationURL
	c.emit(Progress{Event: EventAuthorityChosen, Service: g.Service, User: g.User, TaskID: g.Task.ID, Branch: g.Branch, Authority: g.Authority})

	st, err := c.requestIssuance(ctx, a)
	if err != nil {
		log.WarnContext(ctx, "agentpass issuance request failed", "outcome", "failed", "error", err)
		return nil, time.Time{}, err
	}
	created := c.now()
	p := Progress{Event: EventRequestCreated, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority, RequestID: g.RequestID, Status: st.Status}
	if st.Links != nil && pass.CheckHTTPSURL(st.Links.Approval) == nil {
		p.ApprovalURL = st.Links.Approval
	}
	c.emit(p)
	return st, created, nil
}

// finish polls a created request until a terminal status and returns the
// approved grant.
func (c *Client) finish(ctx context.Context, a *acquisition, st *pass.IssuanceStatus, created time.Time) (*Grant, error) {
	g := a.grant
	log := c.logger(g)
	st, err := c.poll(ctx, a, st, created)
	if err != nil {
		log.InfoContext(ctx, "agentpass issuance ended", "outcome", outcome(err), "error", err)
		return nil, err
	}
	g.pass = *st.AgentPass
	if st.ExpiresAt != nil {
		g.ExpiresAt = *st.ExpiresAt
	}
	c.emit(Progress{Event: EventApproved, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority, RequestID: g.RequestID, Status: pass.StatusApproved, Elapsed: c.now().Sub(created)})
	log.InfoContext(ctx, "agentpass approved", "outcome", "ok")
	return g, nil
}

// abandonPending tells the Authority that a request whose Acquire was
// cancelled while pending is abandoned, so no one approves a task the
// agent gave up; a failure is retried by Run.
func (c *Client) abandonPending(ctx context.Context, g *Grant) {
	m, ok := c.missionOf(g)
	if !ok {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
	defer cancel()
	_, _ = m.Abandon(actx, "the Harness stopped waiting for approval")
}

func outcome(err error) string {
	switch {
	case errors.Is(err, ErrDenied):
		return "denied"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrCanceled):
		return "canceled"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "aborted"
	}
	return "failed"
}

// newAcquisition checks the request and fills its defaults.
func (c *Client) newAcquisition(req Request) (*acquisition, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if err := pass.CheckOrigin(req.Service); err != nil {
		return nil, bad("Service %q is not an https origin", req.Service)
	}
	origin, _ := pass.Origin(req.Service)
	if _, err := pass.EmailDomain(req.User); err != nil {
		return nil, bad("User is not a valid e-mail address")
	}
	if req.Task.Description == "" {
		return nil, bad("Task.Description is required (§3.2.3)")
	}
	if req.Stages != nil {
		if err := pass.ValidateStages(req.Stages); err != nil {
			return nil, bad("Stages: %v", err)
		}
	}
	if req.Type == "" {
		req.Type = pass.BearerToken
	}
	if !req.Type.Valid() {
		return nil, bad("Type %q is not %q or %q", req.Type, pass.BearerToken, pass.BrowserSession)
	}
	if req.Destination != "" {
		if req.Type != pass.BrowserSession {
			return nil, bad("Destination is only for browser sessions")
		}
		if err := pass.CheckHTTPSURL(req.Destination); err != nil {
			return nil, bad("Destination is not an https URL")
		}
	}
	if req.Authority != "" {
		if err := pass.CheckHTTPSURL(req.Authority); err != nil {
			return nil, bad("Authority is not an https URL")
		}
	}
	if req.Task.ID == "" {
		req.Task.ID = secret.ID("task_")
	}
	if err := checkScopeRequest(req.Scope, req.Task.Class); err != nil {
		return nil, bad("%v", err)
	}
	if req.Scope != nil {
		req.Scope = req.Scope.Dedupe()
	}
	return &acquisition{
		req:    req,
		origin: origin,
		grant: &Grant{
			Type:        req.Type,
			Service:     origin,
			HarnessID:   c.harnessID,
			User:        req.User,
			Task:        req.Task,
			Destination: req.Destination,
		},
	}, nil
}

// resolve calls the Service's resolve_authorities endpoint and chooses the
// Authority (§3.2.2).
func (c *Client) resolve(ctx context.Context, a *acquisition) (pass.AuthorityRef, error) {
	g := a.grant
	res, options, branch, err := c.askService(ctx, g.ServiceConfiguration, g.User)
	if err != nil {
		return pass.AuthorityRef{}, err
	}
	g.Branch = branch
	c.emit(Progress{Event: EventAuthorityResolved, Service: g.Service, User: g.User, TaskID: g.Task.ID, Branch: branch, Options: append([]pass.AuthorityRef(nil), options...)})
	if branch == BranchEnterprise || branch == BranchService {
		// The only answer: a preference never overrides the Authority
		// that governs the User.
		return options[0], nil
	}
	preferred := a.req.Authority
	if preferred == "" {
		preferred = c.preferred
	}
	ref, err := c.choose(ctx, options, preferred)
	if err != nil {
		return pass.AuthorityRef{}, err
	}
	if branch == BranchServiceOrFederated {
		if ref == *res.ServiceAuthority {
			g.Branch = BranchService
		} else {
			g.Branch = BranchFederated
		}
	}
	return ref, nil
}

// askService POSTs the user to the Service's resolve_authorities endpoint
// and checks the answer (exactly one kind of Authority, and only those the
// Service's configuration declares, §4.1).
func (c *Client) askService(ctx context.Context, scfg *pass.ServiceConfiguration, user string) (*pass.ResolutionResponse, []pass.AuthorityRef, Branch, error) {
	endpoint := scfg.Endpoints.ResolveAuthorities
	var res pass.ResolutionResponse
	_, err := httpx.Do(ctx, c.http, httpx.Call{Peer: pass.PeerService,
		URL:  endpoint,
		Body: pass.ResolutionRequest{User: pass.User{Email: user}},
	}, &res)
	if err != nil {
		return nil, nil, "", c.peerError(ctx, "service", endpoint, ErrResolution, err)
	}
	if err := checkOffered(&res, scfg, endpoint); err != nil {
		return nil, nil, "", err
	}
	options, branch := offered(&res)
	return &res, options, branch, nil
}

// Resolution is a Service's answer to "which Authorities may govern this
// user": the branch of the precedence rules that applied and the
// Authorities on offer (one, except for a federated choice).
type Resolution struct {
	Service              string // the Service origin
	ServiceConfiguration *pass.ServiceConfiguration
	User                 string
	Branch               Branch
	Options              []pass.AuthorityRef
}

// Resolve runs the first two steps of Acquire, Service discovery and
// Authority resolution, and requests nothing: for a CLI's "discover", or an
// application that shows a federated choice before asking for a pass. The
// answer is checked as Acquire checks it (shape, and Authorities declared
// in the Service's configuration).
func (c *Client) Resolve(ctx context.Context, service, user string) (*Resolution, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	origin, err := pass.Origin(service)
	if err != nil {
		return nil, fmt.Errorf("%w: service %q: %w", ErrInvalidRequest, service, err)
	}
	if _, _, err := pass.SplitEmail(user); err != nil {
		return nil, fmt.Errorf("%w: user: %w", ErrInvalidRequest, err)
	}
	info, err := c.disc.DiscoverService(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("harness: discovering %s: %w", origin, err)
	}
	_, options, branch, err := c.askService(ctx, info.Configuration, user)
	if err != nil {
		return nil, err
	}
	return &Resolution{Service: origin, ServiceConfiguration: info.Configuration, User: user, Branch: branch, Options: options}, nil
}

// offered lists the Authorities of a validated resolution answer, with the
// branch it represents. pass.ResolutionResponse.Validate has already refused
// an empty answer and an enterprise Authority beside anything else.
func offered(res *pass.ResolutionResponse) ([]pass.AuthorityRef, Branch) {
	switch {
	case res.EnterpriseAuthority != nil:
		return []pass.AuthorityRef{*res.EnterpriseAuthority}, BranchEnterprise
	case res.ServiceAuthority != nil && res.TrustedFederatedAuthorities == nil:
		return []pass.AuthorityRef{*res.ServiceAuthority}, BranchService
	case res.ServiceAuthority != nil:
		return append([]pass.AuthorityRef{*res.ServiceAuthority}, res.TrustedFederatedAuthorities...), BranchServiceOrFederated
	}
	return append([]pass.AuthorityRef(nil), res.TrustedFederatedAuthorities...), BranchFederated
}

// checkOffered requires a Service Authority and federated Authorities in a
// resolution answer to be the ones the Service's configuration declares
// (§4.1: returned federated options are a subset of
// trust.trusted_federated_authorities).
func checkOffered(res *pass.ResolutionResponse, scfg *pass.ServiceConfiguration, endpoint string) error {
	perr := func(reason string) error {
		return &ProtocolError{Peer: "service", URL: endpoint, Reason: reason}
	}
	if s := res.ServiceAuthority; s != nil {
		if scfg.Trust.ServiceAuthority == nil || *scfg.Trust.ServiceAuthority != *s {
			return perr("service_authority " + s.Authority + " is not the trust.service_authority of the Service configuration")
		}
	}
	for _, f := range res.TrustedFederatedAuthorities {
		listed := false
		for _, t := range scfg.Trust.TrustedFederatedAuthorities {
			if t == f {
				listed = true
				break
			}
		}
		if !listed {
			return perr("federated authority " + f.Authority + " is not in trust.trusted_federated_authorities of the Service configuration")
		}
	}
	return nil
}

// choose picks one of several offered Authorities: the preferred one when it
// is on offer, otherwise the chooser's pick, which must be on offer too
// (an Authority the Service did not offer is never used: it has no standing
// for this User at this Service). The entry returned is always the listed
// one, so its configuration URL comes from the Service's answer.
func (c *Client) choose(ctx context.Context, options []pass.AuthorityRef, preferred string) (pass.AuthorityRef, error) {
	find := func(id string) (pass.AuthorityRef, bool) {
		for _, o := range options {
			if o.Authority == id {
				return o, true
			}
		}
		return pass.AuthorityRef{}, false
	}
	if preferred != "" {
		if ref, ok := find(preferred); ok {
			return ref, nil
		}
	}
	if c.chooser == nil {
		return pass.AuthorityRef{}, &ChoiceRequiredError{Options: options, Preferred: preferred}
	}
	got, err := c.chooser(ctx, append([]pass.AuthorityRef(nil), options...))
	if err != nil {
		return pass.AuthorityRef{}, fmt.Errorf("harness: choosing an authority: %w", err)
	}
	ref, ok := find(got.Authority)
	if !ok {
		return pass.AuthorityRef{}, &ChoiceRequiredError{Options: options, Preferred: got.Authority}
	}
	return ref, nil
}

// checkAuthorityConfig requires the fetched configuration to describe the
// resolved Authority: the same identifier, and the trust mode of the branch
// it was found through, so a configuration cannot pass for another
// Authority or another kind of Authority.
func checkAuthorityConfig(acfg *pass.AuthorityConfiguration, ref pass.AuthorityRef, b Branch, scfg *pass.ServiceConfiguration) error {
	perr := func(reason string) error {
		return &ProtocolError{Peer: "authority", URL: ref.AuthorityConfigurationURL, Reason: reason}
	}
	if acfg.Authority != ref.Authority {
		return perr(fmt.Sprintf("configuration names authority %q, the Service resolved %q", acfg.Authority, ref.Authority))
	}
	want := map[Branch]pass.TrustMode{
		BranchEnterprise: pass.TrustEnterprise,
		BranchService:    pass.TrustService,
		BranchFederated:  pass.TrustFederated,
	}[b]
	if acfg.TrustMode != want {
		return perr(fmt.Sprintf("trust_mode is %q, want %q for a %s authority", acfg.TrustMode, want, b))
	}
	return nil
}

// requestIssuance sends the issuance request (§3.2.3, §5.3.1) and returns
// the Authority's first status.
func (c *Client) requestIssuance(ctx context.Context, a *acquisition) (*pass.IssuanceStatus, error) {
	g := a.grant
	key, err := c.keys()
	if err != nil {
		return nil, fmt.Errorf("harness: holder key: %w", err)
	}
	if key == nil {
		return nil, errors.New("harness: Config.Keys returned no key")
	}
	g.Key = key
	now := c.now()
	body := pass.IssuanceRequest{
		Type:    g.Type,
		Service: pass.ServiceRef{Origin: g.Service},
		User:    pass.User{Email: g.User},
		// The holder-binding signal: this Harness proves its key at the
		// status endpoint and sends htm, htu and aph, so an Authority that
		// knows the extension holds the pass to both and a leaked v0.1
		// style proof can never redeem it. It also speaks the mission
		// extension (Client.Mission) and asks for stage moves
		// (Mission.RequestStage). v0.1 Authorities ignore all three.
		Harness: pass.HarnessInfo{ID: c.harnessID, Cnf: &pass.Cnf{JWK: key.PublicJSON()},
			Extensions: pass.HarnessExtensions{pass.ExtHolderBinding, pass.ExtMission, pass.ExtStages}},
		Task:   pass.Task{ID: g.Task.ID, Description: g.Task.Description, Class: g.Task.Class},
		Stages: a.req.Stages,
		Scope:  a.req.Scope,
	}
	a.statusOK = true
	if !a.req.NoTaskAttestation {
		jwt, err := key.TaskAttestation(c.harnessID, g.Task.ID, g.Task.Description, defaultTaskAttestationTTL, now)
		if err != nil {
			return nil, fmt.Errorf("harness: task attestation: %w", err)
		}
		body.Task.Attestation = &pass.JWTContainer{JWT: jwt}
	}
	if c.attestation != nil {
		jwt, err := c.attestation(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("harness: harness attestation: %w", err)
		}
		if jwt != "" {
			body.Harness.Attestation = &pass.JWTContainer{JWT: jwt}
		}
	}
	if g.Destination != "" {
		body.Intent = &pass.Intent{DestinationURL: g.Destination}
	}
	endpoint := g.AuthorityConfiguration.Endpoints.Issuance
	var st pass.IssuanceStatus
	if _, err := httpx.Do(ctx, c.http, httpx.Call{Peer: pass.PeerAuthority, URL: endpoint, Body: body}, &st); err != nil {
		return nil, c.peerError(ctx, "authority", endpoint, ErrIssuance, err)
	}
	g.RequestID = st.ID
	if err := checkStatus(&st, g, endpoint); err != nil {
		return nil, err
	}
	if st.Mission != nil {
		g.MissionID = st.Mission.ID
	}
	return &st, nil
}

// checkStatus checks a validated status document against the request.
func checkStatus(st *pass.IssuanceStatus, g *Grant, endpoint string) error {
	perr := func(reason string) error {
		return &ProtocolError{Peer: "authority", URL: endpoint, Reason: reason}
	}
	switch {
	case st.ID != g.RequestID:
		return perr("status document is for another request id")
	case st.Type != "" && st.Type != g.Type:
		return perr(fmt.Sprintf("status type is %q, requested %q", st.Type, g.Type))
	case st.Status == pass.StatusApproved && st.AgentPass.Type != g.Type:
		return perr(fmt.Sprintf("approved pass has type %q, requested %q", st.AgentPass.Type, g.Type))
	}
	return nil
}

// poll follows the request until a terminal status (§3.2.3) and returns
// the approved status.
func (c *Client) poll(ctx context.Context, a *acquisition, st *pass.IssuanceStatus, created time.Time) (*pass.IssuanceStatus, error) {
	g := a.grant
	acfg := g.AuthorityConfiguration
	statusURL := acfg.StatusURL(g.RequestID)
	var bo backoff
	failures := 0
	if st.Status == pass.StatusPending {
		// Once: events report changes of state, not polls.
		p := Progress{Event: EventPending, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority, RequestID: g.RequestID, Status: st.Status, Elapsed: c.now().Sub(created)}
		if st.Links != nil && pass.CheckHTTPSURL(st.Links.Approval) == nil {
			p.ApprovalURL = st.Links.Approval
		}
		c.emit(p)
	}
	for st.Status == pass.StatusPending {
		wait := c.pollDelay(st.PollAfterMS, &bo)
		if err := c.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("harness: waiting for approval at %s: %w", g.Authority, err)
		}
		next, hdr, err := c.getStatus(ctx, a, statusURL)
		if err == nil {
			failures = 0
			if err := checkStatus(next, g, acfg.Endpoints.IssuanceStatus); err != nil {
				return nil, err
			}
			st = next
			c.noteProposal(a, st)
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("harness: waiting for approval at %s: %w", g.Authority, ctx.Err())
		}
		var ue *pass.UnreachableError
		if errors.As(err, &ue) {
			failures++
			if failures >= maxPollFailures {
				return nil, fmt.Errorf("harness: polling %s failed %d times: %w", g.Authority, failures, ue)
			}
			continue
		}
		var pe *pass.PeerError
		if !errors.As(err, &pe) {
			return nil, c.peerError(ctx, "authority", acfg.Endpoints.IssuanceStatus, nil, err)
		}
		switch {
		case pe.Status == http.StatusNotFound || pe.Status == http.StatusGone:
			// The Authority no longer knows the request (unknown, or
			// purged after its expiry).
			return nil, c.terminal(g, pass.StatusExpired, fmt.Errorf("harness: issuance request unknown at %s: %w: %w", g.Authority, ErrExpired, pe))
		case pe.Status == http.StatusTooManyRequests:
			extra := retryAfter(hdr, c.now())
			if extra > c.maxRetryWait {
				// Config.MaxRetryWait: a longer wait ends the polling.
				return nil, fmt.Errorf("harness: issuance status at %s: %w", g.Authority, pe)
			}
			if extra > 0 {
				if err := c.sleep(ctx, extra); err != nil {
					return nil, fmt.Errorf("harness: waiting for approval at %s: %w", g.Authority, err)
				}
			}
		case pe.Status >= 500:
			failures++
			if failures >= maxPollFailures {
				return nil, fmt.Errorf("harness: polling %s failed %d times: %w", g.Authority, failures, pe)
			}
		default:
			// 401 proof_required and other refusals end the request.
			return nil, fmt.Errorf("harness: issuance status at %s: %w", g.Authority, pe)
		}
	}
	switch st.Status {
	case pass.StatusApproved:
		return st, nil
	case pass.StatusDenied:
		return nil, c.terminal(g, st.Status, &DeniedError{Authority: g.Authority, Reason: truncate(st.Reason, maxReasonLen)})
	case pass.StatusExpired:
		return nil, c.terminal(g, st.Status, fmt.Errorf("harness: issuance request at %s: %w", g.Authority, ErrExpired))
	default: // canceled; Validate refused unknown statuses
		return nil, c.terminal(g, st.Status, fmt.Errorf("harness: issuance request at %s: %w", g.Authority, ErrCanceled))
	}
}

func (c *Client) terminal(g *Grant, s pass.Status, err error) error {
	ev := map[pass.Status]Event{pass.StatusDenied: EventDenied, pass.StatusExpired: EventExpired, pass.StatusCanceled: EventCanceled}[s]
	p := Progress{Event: ev, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority, RequestID: g.RequestID, Status: s}
	var d *DeniedError
	if errors.As(err, &d) {
		p.Reason = d.Reason
	}
	c.emit(p)
	return err
}

// getStatus polls once, with a fresh holder proof, so that only the key
// holder can read the pass from an Authority that knows the extension.
func (c *Client) getStatus(ctx context.Context, a *acquisition, statusURL string) (*pass.IssuanceStatus, http.Header, error) {
	g := a.grant
	call := httpx.Call{Peer: pass.PeerAuthority, Method: http.MethodGet, URL: statusURL}
	if a.statusOK {
		proof, err := g.Key.HarnessProof(dpop.ProofParams{
			HarnessID: c.harnessID,
			Audience:  g.Authority,
			Method:    http.MethodGet,
			URL:       statusURL,
			AgentPass: g.RequestID,
			TTL:       defaultTaskAttestationTTL,
			Now:       c.now(),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("harness: status proof: %w", err)
		}
		call.Header = http.Header{pass.ProofHeader: {proof}}
	}
	var st pass.IssuanceStatus
	hdr, err := httpx.Do(ctx, c.http, call, &st)
	if err != nil {
		return nil, hdr, redactStatusURL(err, g.AuthorityConfiguration.Endpoints.IssuanceStatus)
	}
	return &st, hdr, nil
}

// redactStatusURL keeps the status URL, which holds the request id (a
// bearer secret at a plain v0.1 Authority, whose status endpoint hands the
// pass to anyone), out of error texts: a
// transport error names the URL template instead, and an invalid answer
// keeps only the document error.
func redactStatusURL(err error, template string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = template
	}
	var pe *pass.PeerError
	var unreachable *pass.UnreachableError
	if errors.As(err, &pe) || errors.As(err, &unreachable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var fe *pass.FieldError
	if errors.As(err, &fe) {
		return fe
	}
	if errors.Is(err, pass.ErrInvalidDocument) {
		return fmt.Errorf("invalid status answer: %w", pass.ErrInvalidDocument)
	}
	return errors.New("harness: status request failed")
}

// peerError classifies a failed call: the context's error as is, a wire
// error wrapped in kind, an invalid answer as a *ProtocolError.
func (c *Client) peerError(ctx context.Context, peer, endpoint string, kind error, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("harness: %s %s: %w", peer, endpoint, err)
	}
	var pe *pass.PeerError
	var ue *pass.UnreachableError
	if errors.As(err, &pe) || errors.As(err, &ue) {
		if kind == nil {
			return fmt.Errorf("harness: %s %s: %w", peer, endpoint, err)
		}
		return fmt.Errorf("%w: %s %s: %w", kind, peer, endpoint, err)
	}
	if errors.Is(err, pass.ErrInvalidDocument) {
		return &ProtocolError{Peer: peer, URL: endpoint, Reason: "invalid answer", Err: err}
	}
	return fmt.Errorf("harness: %s %s: %w", peer, endpoint, err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
