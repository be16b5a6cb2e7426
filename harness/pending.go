package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// maxPending bounds the requests a Client remembers between Start and the
// end of Wait (for joining, and for keys kept in memory).
const maxPending = 1024

// ErrTooManyPending: the Client already follows maxPending started
// requests; finish or cancel some first.
var ErrTooManyPending = errors.New("harness: too many pending requests")

// Pending is an issuance request waiting for a decision, returned by
// [Client.Start] and resumed by [Client.Wait]. It encodes to JSON, so an
// application can persist it and resume after a restart while a person
// decides. It holds no key, only a reference into the Client's KeyStore;
// but at an Authority without the holder-binding extension its request id
// reads the pass, so store it like a credential (a 0600 file).
type Pending struct {
	HarnessID       string        `json:"harness_id"`
	Service         string        `json:"service"`
	User            string        `json:"user"`
	TaskID          string        `json:"task_id"`
	TaskDescription string        `json:"task_description"`
	Type            pass.PassType `json:"type"`
	Destination     string        `json:"destination,omitempty"`
	// Authority is the Authority identifier, and AuthorityConfigurationURL
	// its configuration as the Service listed it; Branch the kind of
	// Authority.
	Authority                 string `json:"authority"`
	AuthorityConfigurationURL string `json:"authority_configuration_url"`
	Branch                    Branch `json:"branch"`
	// RequestID identifies the request at the Authority (its status URL
	// is derived from it). Do not publish it.
	RequestID string `json:"request_id"`
	// ApprovalURL is the page where a person decides, when the Authority
	// gives one: show it to the User.
	ApprovalURL string `json:"approval_url,omitempty"`
	// MissionID names the request's mission, when the Authority speaks
	// the mission extension.
	MissionID string `json:"mission_id,omitempty"`
	// Scope is the scope requested (Request.Scope), nil for none.
	Scope pass.Scope `json:"scope,omitempty"`
	// Proposal is the Authority's scope proposal, read with the holder
	// proof right after the request was created, when the Authority
	// speaks the compile extension: about the requested scopes only. Show
	// it to the User with ApprovalURL.
	Proposal *pass.ScopeProposal `json:"proposal,omitempty"`
	// KeyRef names the holder key in the Client's KeyStore.
	KeyRef    string    `json:"key_ref"`
	CreatedAt time.Time `json:"created_at"`
}

// String describes the request without its request id.
func (p *Pending) String() string {
	return fmt.Sprintf("Pending{%s for %s at %s by %s, task %s}", p.Type, p.User, p.Service, p.Authority, p.TaskID)
}

// pendingKey identifies a request for joining: one per Service, user, task
// and type.
func pendingKey(service, user, taskID string, t pass.PassType) string {
	return strings.Join([]string{service, user, taskID, string(t)}, "\x00")
}

// pendingSet is what a Client remembers of started requests.
type pendingSet struct {
	mu      sync.Mutex
	byKey   map[string]*startCall
	byReqID map[string]string // request id -> key
}

// startCall is one Start, shared by concurrent Starts of the same task.
type startCall struct {
	done chan struct{}
	p    *Pending
	err  error
}

// Start runs an acquisition up to the issuance request and returns the
// pending request without waiting for the decision: the first half of
// [Client.Acquire] in the shape of a device flow. Show p.ApprovalURL to the
// User, persist p if the process may restart, and call Wait.
//
// A Start for the same Service, user, task id and type as a request this
// Client still follows joins it (returning an equal Pending) instead of
// filing a second request; an empty task id gets a new random one, so set
// one to benefit. The holder key goes to Config.KeyStore.
func (c *Client) Start(ctx context.Context, req Request) (*Pending, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	a, err := c.newAcquisition(req)
	if err != nil {
		return nil, err
	}
	g := a.grant
	key := pendingKey(g.Service, g.User, g.Task.ID, g.Type)
	ps := &c.pending
	ps.mu.Lock()
	if sc, ok := ps.byKey[key]; ok {
		ps.mu.Unlock()
		select {
		case <-sc.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if sc.err != nil {
			return nil, sc.err
		}
		cp := *sc.p
		return &cp, nil
	}
	if len(ps.byKey) >= maxPending {
		ps.mu.Unlock()
		return nil, ErrTooManyPending
	}
	if ps.byKey == nil {
		ps.byKey, ps.byReqID = map[string]*startCall{}, map[string]string{}
	}
	sc := &startCall{done: make(chan struct{})}
	ps.byKey[key] = sc
	ps.mu.Unlock()

	p, err := c.startOne(ctx, a)
	ps.mu.Lock()
	sc.p, sc.err = p, err
	if err != nil {
		delete(ps.byKey, key)
	} else {
		ps.byReqID[p.RequestID] = key
	}
	close(sc.done)
	ps.mu.Unlock()
	if err != nil {
		return nil, err
	}
	cp := *p
	return &cp, nil
}

func (c *Client) startOne(ctx context.Context, a *acquisition) (*Pending, error) {
	st, created, err := c.begin(ctx, a)
	if err != nil {
		return nil, err
	}
	g := a.grant
	ref, err := c.keyStore.Save(ctx, g.Key)
	if err != nil {
		c.abandonPending(ctx, g)
		return nil, fmt.Errorf("harness: saving the holder key: %w", err)
	}
	p := &Pending{
		HarnessID: c.harnessID, Service: g.Service, User: g.User, TaskID: g.Task.ID, TaskDescription: g.Task.Description,
		Type: g.Type, Destination: g.Destination, Authority: g.Authority, AuthorityConfigurationURL: a.configURL,
		Branch: g.Branch, RequestID: g.RequestID, MissionID: g.MissionID, KeyRef: ref, CreatedAt: created,
	}
	if st.Links != nil && pass.CheckHTTPSURL(st.Links.Approval) == nil {
		p.ApprovalURL = st.Links.Approval
	}
	p.Scope = cloneScope(a.req.Scope)
	if st.Status == pass.StatusPending && g.AuthorityConfiguration.Extensions.Has(pass.ExtCompile) {
		// One read with the holder proof: the proposal is never in the
		// answer to the issuance request itself. A failure here is not the
		// request's failure; Wait reads the status again.
		statusURL := g.AuthorityConfiguration.StatusURL(g.RequestID)
		if next, _, err := c.getStatus(ctx, a, statusURL); err == nil && checkStatus(next, g, statusURL) == nil {
			c.noteProposal(a, next)
			p.Proposal = g.Proposal
		}
	}
	return p, nil
}

func cloneScope(s pass.Scope) pass.Scope {
	if s == nil {
		return nil
	}
	return append(pass.Scope{}, s...)
}

// Wait polls a request returned by Start (possibly by another process that
// persisted it) until a terminal status and returns the approved grant:
// the second half of [Client.Acquire]. If ctx ends first, the request
// stays open and Wait can be called again; use Cancel to give it up. After
// a terminal outcome the holder key is deleted from the KeyStore (an
// approved grant carries it).
func (c *Client) Wait(ctx context.Context, p *Pending) (*Grant, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	a, err := c.resume(ctx, p)
	if err != nil {
		return nil, err
	}
	st := &pass.IssuanceStatus{ID: p.RequestID, Status: pass.StatusPending}
	if p.ApprovalURL != "" {
		st.Links = &pass.Links{Approval: p.ApprovalURL}
	}
	g, err := c.finish(ctx, a, st, p.CreatedAt)
	if err != nil && (ctx.Err() != nil || retryable(err)) {
		return nil, err // the request may still be decided: keep it
	}
	c.forget(ctx, p)
	return g, err
}

// Cancel gives up a request returned by Start: the Authority is told when
// it speaks the mission extension (the mission ends abandoned and the
// approval page shows it); a plain Authority lets the request expire. The
// holder key is deleted either way.
func (c *Client) Cancel(ctx context.Context, p *Pending) error {
	if err := c.ready(); err != nil {
		return err
	}
	a, err := c.resume(ctx, p)
	if err != nil {
		return err
	}
	defer c.forget(ctx, p)
	m, ok := c.missionOf(a.grant)
	if !ok {
		return nil
	}
	_, err = m.Abandon(ctx, "the Harness gave up the request")
	return err
}

// resume rebuilds an acquisition from p: it checks p, loads its key, and
// fetches the Service's and the Authority's configurations again.
func (c *Client) resume(ctx context.Context, p *Pending) (*acquisition, error) {
	bad := func(what string) error { return fmt.Errorf("%w: Pending %s", ErrInvalidRequest, what) }
	switch {
	case p == nil:
		return nil, bad("is nil")
	case p.HarnessID != c.harnessID:
		return nil, bad("is for another harness id")
	case p.RequestID == "" || p.KeyRef == "" || p.TaskID == "":
		return nil, bad("has no request id, key or task id")
	case pass.CheckHTTPSURL(p.AuthorityConfigurationURL) != nil:
		return nil, bad("has no https authority configuration URL")
	}
	a, err := c.newAcquisition(Request{Service: p.Service, User: p.User, Task: pass.Task{ID: p.TaskID, Description: p.TaskDescription},
		Type: p.Type, Destination: p.Destination, Scope: p.Scope})
	if err != nil {
		return nil, err
	}
	g := a.grant
	g.RequestID, g.MissionID, g.Branch = p.RequestID, p.MissionID, p.Branch
	g.Proposal = keepProposal(p.Proposal, p.Scope)
	g.Key, err = c.keyStore.Load(ctx, p.KeyRef)
	if err != nil {
		return nil, fmt.Errorf("harness: loading the holder key: %w", err)
	}
	info, err := c.disc.DiscoverService(ctx, a.origin)
	if err != nil {
		return nil, fmt.Errorf("harness: discovering %s: %w", a.origin, err)
	}
	g.ServiceConfiguration = info.Configuration
	ref := pass.AuthorityRef{Authority: p.Authority, AuthorityConfigurationURL: p.AuthorityConfigurationURL}
	acfg, err := c.disc.AuthorityConfiguration(ctx, ref.AuthorityConfigurationURL)
	if err != nil {
		return nil, fmt.Errorf("harness: authority configuration of %s: %w", ref.Authority, err)
	}
	if err := checkAuthorityConfig(acfg, ref, g.Branch, g.ServiceConfiguration); err != nil {
		return nil, err
	}
	g.Authority, g.AuthorityConfiguration = acfg.Authority, acfg
	a.configURL = ref.AuthorityConfigurationURL
	a.statusOK = true
	return a, nil
}

// forget deletes p's key and stops following it for joins.
func (c *Client) forget(ctx context.Context, p *Pending) {
	if err := c.keyStore.Delete(ctx, p.KeyRef); err != nil {
		c.log.Warn("agentpass holder key not deleted", "error", err)
	}
	ps := &c.pending
	ps.mu.Lock()
	if key, ok := ps.byReqID[p.RequestID]; ok {
		delete(ps.byKey, key)
		delete(ps.byReqID, p.RequestID)
	}
	ps.mu.Unlock()
}
