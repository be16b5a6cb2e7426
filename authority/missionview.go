package authority

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/pass"
)

// HistoryError reports a mission history whose hash chain does not verify:
// Seq is the first entry that is not what the chain committed to.
type HistoryError struct {
	MissionID string
	Seq       int64
	Err       error
}

func (e *HistoryError) Error() string {
	return fmt.Sprintf("authority: history of %s broken at seq %d: %v", e.MissionID, e.Seq, e.Err)
}

func (e *HistoryError) Unwrap() error { return e.Err }

// VerifyHistory recomputes the hash chain of the mission's stored history
// and checks that it ends at the head the mission records. It returns nil,
// a *HistoryError naming the first bad entry, or a store error.
func (a *Authority) VerifyHistory(ctx context.Context, missionID string) error {
	if err := a.ready(); err != nil {
		return err
	}
	r, err := a.store.Request(ctx, missionID)
	if err != nil {
		return err
	}
	recs, err := a.store.History(ctx, missionID)
	if err != nil {
		return err
	}
	bodies, hashes := make([][]byte, len(recs)), make([]string, len(recs))
	for i, rec := range recs {
		bodies[i], hashes[i] = rec.Body, rec.Hash
	}
	if seq, err := missionlog.Verify(bodies, hashes); err != nil {
		return &HistoryError{MissionID: missionID, Seq: seq, Err: err}
	}
	if int64(len(recs)) != r.HistoryCount || len(recs) > 0 && hashes[len(hashes)-1] != r.HistoryHead {
		return &HistoryError{MissionID: missionID, Seq: int64(len(recs)), Err: fmt.Errorf("%w: the log does not end at the recorded head", missionlog.ErrBroken)}
	}
	return nil
}

// Mission returns the operator view of the mission with the given id (or
// of the mission of an authorization id), with its whole history. A
// mission past a deadline is expired first (the first reader commits the
// expiry).
func (a *Authority) Mission(ctx context.Context, id string) (*pass.MissionRecord, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	mid, err := a.missionID(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := a.store.Request(ctx, mid)
	if err != nil {
		return nil, err
	}
	return a.view(ctx, r, viewOperator, "", true)
}

// MissionPage is one page of Authority.Missions. Next, when not nil, is
// the opts.After of the next page.
type MissionPage struct {
	Missions []pass.MissionRecord
	Next     *MissionCursor
}

// Missions lists missions in creation order, opts.Limit at a time (100
// by default, at most 1000); pass Next back as opts.After to continue. The
// records are operator views without history events.
func (a *Authority) Missions(ctx context.Context, opts MissionListOptions) (*MissionPage, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	rs, err := a.store.Missions(ctx, opts)
	if err != nil {
		return nil, err
	}
	page := &MissionPage{Missions: make([]pass.MissionRecord, 0, len(rs))}
	for _, r := range rs {
		v, err := a.view(ctx, r, viewOperator, "", false)
		if err != nil {
			return nil, err
		}
		page.Missions = append(page.Missions, *v)
	}
	if len(rs) == opts.EffectiveLimit() {
		last := rs[len(rs)-1]
		page.Next = &MissionCursor{CreatedAt: last.CreatedAt, MissionID: last.MissionID}
	}
	return page, nil
}

// expire commits the expiry of a mission whose deadline has passed; a
// concurrent reader that committed it first, or a mission that is not due,
// is fine.
func (a *Authority) expire(ctx context.Context, missionID string) {
	_, err := a.store.TransitionMission(ctx, missionID, MissionChange{To: pass.MissionExpired, By: "system"}, a.now())
	if err != nil && !errors.Is(err, ErrTerminal) && !errors.Is(err, ErrState) && !errors.Is(err, ErrNotFound) {
		a.log.WarnContext(ctx, "agentpass mission expiry failed", "mission_id", missionID, "reason", err.Error())
	}
}

// missionState returns r (re-read when its expiry was committed) and the
// state every surface reports for it: its own, or suspended or revoked
// because of an ancestor.
func (a *Authority) missionState(ctx context.Context, r *Request) (*Request, pass.MissionState, error) {
	now := a.now()
	if !r.State.Terminal() && r.missionStateAt(now) == pass.MissionExpired {
		a.expire(ctx, r.MissionID)
		fresh, err := a.store.Request(ctx, r.MissionID)
		if err != nil {
			return nil, "", err
		}
		r = fresh
	}
	ancestors, err := a.ancestors(ctx, r)
	if err != nil {
		return nil, "", err
	}
	return r, EffectiveMissionState(r, ancestors, now), nil
}

// ancestors returns r's ancestors, parent first. A missing ancestor (pruned
// after it ended) counts as ended.
func (a *Authority) ancestors(ctx context.Context, r *Request) ([]*Request, error) {
	var out []*Request
	for p := r.ParentMissionID; p != ""; {
		if len(out) >= maxMissionDepth {
			return nil, fmt.Errorf("authority: delegation chain of %s is deeper than %d", r.MissionID, maxMissionDepth)
		}
		pr, err := a.store.Request(ctx, p)
		if errors.Is(err, ErrNotFound) {
			return append(out, &Request{MissionID: p, State: pass.MissionRevoked}), nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, pr)
		p = pr.ParentMissionID
	}
	return out, nil
}

type missionView int

// The three views of a mission record: what an operator, the redeeming
// Service and the mission's Harness may see.
const (
	viewOperator missionView = iota
	viewService
	viewHarness
)

// view renders r for one audience. service is the Service asking (Service
// view: only its own authorizations); events includes the history entries
// (operator and Harness views).
func (a *Authority) view(ctx context.Context, r *Request, v missionView, service string, events bool) (*pass.MissionRecord, error) {
	r, state, err := a.missionState(ctx, r)
	if err != nil {
		return nil, err
	}
	ancestors, err := a.ancestors(ctx, r)
	if err != nil {
		return nil, err
	}
	var auths []*Authorization
	if r.AuthorizationID != "" {
		az, err := a.store.Authorization(ctx, r.AuthorizationID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err == nil {
			auths = append(auths, az)
		}
	}
	var children []string
	if v != viewService {
		kids, err := a.store.Missions(ctx, MissionListOptions{Parent: r.MissionID, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, k := range kids {
			children = append(children, k.MissionID)
		}
	}
	var hist []pass.HistoryEntry
	if events && v != viewService {
		recs, err := a.store.History(ctx, r.MissionID)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			e, err := missionlog.Decode(rec.Body, rec.Hash)
			if err != nil {
				return nil, err
			}
			hist = append(hist, e)
		}
	}
	m := renderMission(a.id, r, state, len(ancestors), children, auths, hist, v, service, a.discloseApprover)
	stageModel(&m.AuthorityModel, r, a.now())
	if v == viewHarness && (r.Decision == nil || r.Decision.Status != pass.StatusApproved) {
		// Before approval the plan may come from the proposal: the Harness
		// sees only the scopes it named.
		m.AuthorityModel.Stages = namedStages(m.AuthorityModel.Stages, r.RequestedScope)
	}
	return m, nil
}

// harnessDetails is what the Harness view shows of a history entry's
// details: never the available list or the proposal's scopes beyond what
// the Harness requested or was granted, so reading its own mission is no
// oracle on the user's entitlements at the Service.
func harnessDetails(r *Request, typ string, d map[string]any) map[string]any {
	switch typ {
	case "requested", "proposed":
	default:
		return d
	}
	out := make(map[string]any, len(d))
	for k, v := range d {
		out[k] = v
	}
	delete(out, "available")
	if typ == "proposed" {
		delete(out, "excluded")
		if listed, ok := out["scope"].([]any); ok {
			var granted pass.Scope
			if r.Decision != nil {
				granted = r.Decision.Scope
			}
			shown := []any{}
			for _, v := range listed {
				if s, ok := v.(string); ok && (r.RequestedScope.Has(s) || granted.Has(s)) {
					shown = append(shown, s)
				}
			}
			out["scope"] = shown
		} else {
			delete(out, "scope")
		}
	}
	return out
}

// namedStages keeps of stages the scopes in named, dropping stages left
// empty.
func namedStages(stages []pass.Stage, named pass.Scope) []pass.Stage {
	var out []pass.Stage
	for _, st := range stages {
		var s pass.Scope
		for _, v := range st.Scope {
			if named.Has(v) {
				s = append(s, v)
			}
		}
		if len(s) > 0 {
			out = append(out, pass.Stage{Name: st.Name, Scope: s, Gate: st.Gate})
		}
	}
	return out
}

// renderMission builds one view of a mission record. The member table:
//
//	member          operator  Service                    Harness
//	identity, times yes       yes, ended without by      yes
//	parties, task   yes       yes                        yes
//	authority_model yes       yes                        yes
//	approval        all       method, decided_at         all; decided_by only if disclosed
//	delegation      all       parent, depth, act         all
//	authorizations  all       its own                    all
//	history         all       head, count                events without approver ids unless disclosed
func renderMission(authority string, r *Request, state pass.MissionState, depth int, children []string, auths []*Authorization,
	hist []pass.HistoryEntry, v missionView, service string, disclose bool) *pass.MissionRecord {
	m := &pass.MissionRecord{
		ID: r.MissionID, Authority: authority, State: state, Version: r.Version, CreatedAt: r.CreatedAt.UTC(),
		Service: r.Service, User: pass.User{Email: r.User}, Agent: pass.Agent{ID: r.AgentID},
		Harness:        pass.MissionHarness{ID: r.HarnessID, Tier: string(r.Tier), JKT: jkt(r)},
		Task:           pass.MissionTask{ID: r.TaskID, Description: r.TaskDescription, Attested: r.TaskAttested},
		AuthorityModel: pass.AuthorityModel{Ceiling: pass.Scope{}, Scope: pass.Scope{}},
		Authorizations: []pass.MissionAuthorization{},
		History:        pass.History{Head: r.HistoryHead, Count: r.HistoryCount},
	}
	if r.TaskDescription != "" {
		sum := sha256.Sum256([]byte(r.TaskDescription))
		m.Task.DescriptionSHA256 = hex.EncodeToString(sum[:])
	}
	if !r.ActivatedAt.IsZero() {
		t := r.ActivatedAt.UTC()
		m.ActivatedAt = &t
	}
	exp := r.ExpiresAt.UTC()
	if r.Decision != nil && r.Decision.Status == pass.StatusApproved {
		exp = r.Decision.AuthorizationExpiresAt.UTC()
		m.AuthorityModel.Ceiling = cloneScope(r.Decision.Scope)
		m.AuthorityModel.Scope = cloneScope(r.Scope)
	}
	m.ExpiresAt = &exp
	if r.Ended != nil {
		e := *r.Ended
		if v == viewService || v == viewHarness && !disclose && personal(e.By) {
			e.By = ""
		}
		m.Ended = &e
	}
	if d := r.Decision; d != nil {
		at := d.DecidedAt.UTC()
		ap := &pass.Approval{Method: approvalMethod(d.DecidedBy), DecidedAt: &at}
		if v != viewService {
			ap.DisclosureSHA256 = d.DisclosureSHA256
		}
		if root, ok := strings.CutPrefix(d.DecidedBy, delegatedBy); ok {
			ap.Root = &root
		}
		if v != viewService {
			ap.Outcome, ap.Reason = string(d.Status), d.Reason
			if name, ok := strings.CutPrefix(d.DecidedBy, "rule:"); ok {
				ap.Policy = &pass.PolicyRef{ID: name}
			}
			if v == viewOperator || disclose {
				ap.DecidedBy = d.DecidedBy
			}
		}
		m.Approval = ap
	}
	m.ScopeBasis = scopeBasis(r, v)
	var parent *string
	if r.ParentMissionID != "" {
		p := r.ParentMissionID
		parent = &p
	}
	m.Delegation = &pass.MissionDelegation{Depth: depth, Parent: parent}
	if r.Decision != nil {
		m.Delegation.MaxDepth, m.Delegation.MaxChildren = r.Decision.MaxDepth, r.Decision.MaxChildren
	}
	if v != viewService {
		m.Delegation.Children = append([]string{}, children...)
	}
	for _, az := range auths {
		if v == viewService && az.Service != service {
			continue
		}
		m.Authorizations = append(m.Authorizations, pass.MissionAuthorization{
			ID: az.ID, Service: az.Service, RedeemedAt: az.CreatedAt.UTC(), State: string(az.State),
		})
	}
	if v != viewService && hist != nil {
		m.History.Events = make([]pass.HistoryEntry, 0, len(hist))
		for _, e := range hist {
			if v == viewHarness && !disclose && personal(e.By) {
				e.By = "human"
			}
			if v == viewHarness {
				e.Details = harnessDetails(r, e.Type, e.Details)
			}
			m.History.Events = append(m.History.Events, e)
		}
	}
	return m
}

// approvalMethod classifies a decider: rules and approvers are policy,
// anyone else acting through the operator API is a person.
func approvalMethod(by string) string {
	if strings.HasPrefix(by, delegatedBy) {
		return pass.ApprovalDelegation
	}
	if strings.HasPrefix(by, "rule:") || strings.HasPrefix(by, "policy:") || by == "approver" || by == "authority" {
		return pass.ApprovalPolicy
	}
	return pass.ApprovalHuman
}

// jkt returns the RFC 7638 thumbprint of the mission's holder key, or "".
func jkt(r *Request) string {
	if r.Cnf == nil {
		return ""
	}
	k, err := dpop.ParsePublicJWK(r.Cnf)
	if err != nil {
		return ""
	}
	t, err := dpop.Thumbprint(k)
	if err != nil {
		return ""
	}
	return t
}

// personal reports whether by may name a person: anything but the parties
// and rules the SDK itself writes. The operator API takes free text ("lee",
// "lee@corp.example"), so the Harness view redacts by an allow-list of the
// impersonal forms, not by looking for "human:".
func personal(by string) bool {
	for _, p := range []string{"harness:", "service:", "rule:", "policy:", delegatedBy} {
		if strings.HasPrefix(by, p) {
			return false
		}
	}
	return by != "system" && by != ""
}
