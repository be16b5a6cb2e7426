package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// serviceTarget is the Service under test, once discovered.
type serviceTarget struct {
	origin    string
	configURL string
	cfg       *pass.ServiceConfiguration
	raw       []byte
	header    http.Header
	// resolved is the Authority the Service names for the test user.
	resolved *pass.AuthorityRef
	err      error
}

// authorityTarget is an Authority the kit talks to.
type authorityTarget struct {
	configURL string
	cfg       *pass.AuthorityConfiguration
	raw       []byte
	header    http.Header
	err       error
}

func (a *authorityTarget) usable() bool { return a != nil && a.cfg != nil }
func (s *serviceTarget) usable() bool   { return s != nil && s.cfg != nil }

// grant is a pass the kit obtained as a Harness.
type grant struct {
	key       *dpop.Key
	harnessID string
	typ       pass.PassType
	service   string
	auth      *authorityTarget
	req       pass.IssuanceRequest
	status    pass.IssuanceStatus
	statusURL string
	pending   Pending
	value     string
	// statuses are the raw status documents seen, for the schema checks.
	statuses []statusSeen
	// approverCalled says a person or tool had to decide.
	approverCalled bool
}

type statusSeen struct {
	status int
	body   []byte
	header http.Header
}

// nextTask returns a task id and a description unique in the run. The
// description only reads, so that policies approving read-only tasks at
// once (the devnet's) need no person.
func (r *runner) nextTask() (id, desc string) {
	r.grantMu.Lock()
	r.seq++
	n := r.seq
	r.grantMu.Unlock()
	return fmt.Sprintf("conf-%s-%d", r.runID, n), fmt.Sprintf("Conformance run %s, step %d: read and list my items", r.runID, n)
}

// issuanceRequest builds a v0.1 issuance request bound to a fresh key,
// with a task attestation.
func (r *runner) issuanceRequest(typ pass.PassType, service string) (*dpop.Key, pass.IssuanceRequest, error) {
	key, err := es256Key()
	if err != nil {
		return nil, pass.IssuanceRequest{}, err
	}
	id, desc := r.nextTask()
	att, err := key.TaskAttestation(r.cfg.HarnessID, id, desc, 0, time.Time{})
	if err != nil {
		return nil, pass.IssuanceRequest{}, err
	}
	return key, pass.IssuanceRequest{
		Type: typ, Service: pass.ServiceRef{Origin: service}, User: pass.User{Email: r.cfg.User},
		Harness: pass.HarnessInfo{ID: r.cfg.HarnessID, Cnf: &pass.Cnf{JWK: key.PublicJSON()}},
		Task:    pass.Task{ID: id, Description: desc, Attestation: &pass.JWTContainer{JWT: att}},
	}, nil
}

var errNoPass = errors.New("no pass")

// acquire asks auth for a pass of type typ for service, as a plain v0.1
// Harness with holder binding, and waits for the decision (asking the
// Approver when the request stays pending). Exchanges go to c when it is
// not nil (the first status poll and the last only).
func (r *runner) acquire(ctx context.Context, c *check, auth *authorityTarget, service string, typ pass.PassType) (*grant, error) {
	return r.acquireWith(ctx, c, auth, service, typ, nil)
}

// hardened lists the holder-binding extension in harness.extensions.
func hardened(req *pass.IssuanceRequest) {
	req.Harness.Extensions = append(req.Harness.Extensions, pass.ExtHolderBinding)
}

// acquireWith is acquire with the request changed by mod (when not nil).
// A request listing the holder-binding extension proves the key on every
// status read.
func (r *runner) acquireWith(ctx context.Context, c *check, auth *authorityTarget, service string, typ pass.PassType, mod func(*pass.IssuanceRequest)) (*grant, error) {
	if !auth.usable() {
		return nil, fmt.Errorf("%w: no usable Authority", errNoPass)
	}
	key, req, err := r.issuanceRequest(typ, service)
	if err != nil {
		return nil, err
	}
	if mod != nil {
		mod(&req)
	}
	proving := req.Harness.Extensions.Has(pass.ExtHolderBinding)
	g := &grant{key: key, harnessID: r.cfg.HarnessID, typ: typ, service: service, auth: auth, req: req}
	a := r.send(ctx, c, http.MethodPost, auth.cfg.Endpoints.Issuance, nil, req)
	if !a.ok() {
		return g, fmt.Errorf("%w: issuance answered %s", errNoPass, a)
	}
	g.statuses = append(g.statuses, statusSeen{a.status, a.body, a.header})
	if err := pass.Decode(a.body, &g.status); err != nil {
		return g, fmt.Errorf("%w: issuance answer: %v", errNoPass, err)
	}
	g.statusURL = auth.cfg.StatusURL(g.status.ID)
	r.secrets.add(g.statusURL)
	g.pending = Pending{Authority: auth.cfg.Authority, RequestID: g.status.ID, User: r.cfg.User, Task: req.Task.Description}
	if g.status.Mission != nil {
		g.pending.MissionID = g.status.Mission.ID
	}
	if g.status.Links != nil {
		g.pending.ApprovalURL = g.status.Links.Approval
	}
	deadline := time.Now().Add(r.cfg.ApprovalTimeout)
	polls := 0
	for g.status.Status == pass.StatusPending || (proving && g.status.Status == pass.StatusApproved && g.status.AgentPass == nil && polls == 0) {
		if g.status.Status == pass.StatusPending && !g.approverCalled {
			if r.cfg.Approver == nil {
				return g, fmt.Errorf("%w: the request is pending and no Approver is configured", errNoPass)
			}
			g.approverCalled = true
			if err := r.cfg.Approver.Approve(ctx, g.pending); err != nil {
				return g, fmt.Errorf("%w: approver: %v", errNoPass, err)
			}
		}
		if time.Now().After(deadline) {
			return g, fmt.Errorf("%w: still pending after %s", errNoPass, r.cfg.ApprovalTimeout)
		}
		wait := 250 * time.Millisecond
		if p := g.status.PollAfterMS; p != nil && *p > 0 {
			wait = min(time.Duration(*p)*time.Millisecond, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return g, ctx.Err()
		case <-t.C:
		}
		cc := c
		if polls > 0 {
			cc = nil
		}
		polls++
		var hdr http.Header
		if proving {
			hdr = http.Header{pass.ProofHeader: {g.statusProof()}}
		}
		a := r.send(ctx, cc, http.MethodGet, g.statusURL, hdr, nil)
		if !a.ok() {
			return g, fmt.Errorf("%w: status answered %s", errNoPass, a)
		}
		g.statuses = append(g.statuses, statusSeen{a.status, a.body, a.header})
		var st pass.IssuanceStatus
		if err := pass.Decode(a.body, &st); err != nil {
			return g, fmt.Errorf("%w: status answer: %v", errNoPass, err)
		}
		g.status = st
	}
	if g.status.Status != pass.StatusApproved || g.status.AgentPass == nil {
		return g, fmt.Errorf("%w: the request ended %q", errNoPass, g.status.Status)
	}
	g.value = g.status.AgentPass.Value
	r.secrets.add(g.value)
	return g, nil
}

// statusProof proves g's key to read its status (holder-binding
// extension): aud the Authority, htm GET, htu the status URL, aph the hash
// of the request id.
func (g *grant) statusProof() string {
	p, _ := g.key.HarnessProof(dpop.ProofParams{HarnessID: g.harnessID, Audience: g.auth.cfg.Authority,
		Method: http.MethodGet, URL: g.statusURL, AgentPass: g.status.ID, TTL: time.Minute})
	return p
}

// proof returns a plain v0.1 harness proof (iss, aud, iat, exp, jti) signed
// with g's key: what any v0.1 Harness sends.
func (g *grant) proof(aud string) (string, error) {
	now := time.Now()
	c := claimsAt(now, time.Minute)
	c["iss"], c["aud"] = g.harnessID, aud
	return newForge("", c).sign(g.key, false)
}

// redemption is a v0.1 redemption body with a fresh proof.
func (g *grant) redemption(aud string) (pass.RedemptionRequest, error) {
	p, err := g.proof(aud)
	if err != nil {
		return pass.RedemptionRequest{}, err
	}
	return pass.RedemptionRequest{
		AgentPass: pass.AgentPass{Type: g.typ, Value: g.value}, Authority: g.auth.cfg.Authority,
		User: pass.User{Email: g.pending.User}, HarnessProof: &pass.JWTContainer{JWT: p},
	}, nil
}
