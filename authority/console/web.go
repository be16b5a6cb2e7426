package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// view is what page.html renders.
type view struct {
	Title     string
	Authority string
	Base      string
	Who       string // the signed-in person's name
	Logout    bool   // the Authenticator serves {base}/auth/logout
	History   *historyView
	CSRF      string
	Notice    *notice
	Detail    *requestView // the request page; nil on the list
	Mission   *missionView // the request page's mission record
	Pending   []requestView
	Moves     []transitionView // stage moves waiting for a person
	Active    []authzView
	Refresh   bool // nothing pending: refresh every few seconds
	Generated string
}

type notice struct {
	Kind string // ok, warn, error
	Text string
}

type scopeView struct {
	Name    string
	Effect  string // empty when the Authority does not classify effects
	Checked bool
	Danger  bool // deletes, acts outside the Service, administers, or unclassified
}

type requestView struct {
	ID, Short                 string
	User, HarnessID, AgentID  string
	Tier, TierClass, TierNote string
	Verified                  bool // the tier is attested or registered
	Task, TaskID              string
	TaskAttested              bool
	Type, Service, Dest       string
	Created, CreatedAbs       string
	Expires, ExpiresAbs       string
	Scopes                    []scopeView
	Status, StatusClass       string
	StatusLabel               string // the badge: Status, or "abandoned by the agent"
	Pending                   bool
	DecidedBy, Decided        string
	DecidedAbs                string
	Reason                    string
	Granted                   pass.Scope
	Stages                    []stageView   // the plan asked for, with its gates
	Proposal                  *proposalView // nil for a request without requested scope or proposal
	Shown                     string        // hash of what the page shows, posted back with a decision
	Disclosure                string        // the disclosure hash recorded with the decision
	ScopeBasis                string        // the recorded scope decision
}

// missionView is the mission record on a request's page: its state,
// version and history, with the verdict of VerifyHistory on its chain.
type missionView struct {
	ID, State, StateClass string
	Version               int64
	Ended                 string
	Head                  string
	Count                 int64
	Verified              bool
	VerifyError           string
	Events                []eventView
	Stages                []stageView     // the plan, the current stage marked
	Move                  *transitionView // a stage move waiting for a person
}

type eventView struct {
	Seq, Version   int64
	At, AtAbs      string
	Type, By       string
	Details        string
	Prev, Hash     string
	PrevOK, LinkOK bool
}

type authzView struct {
	ID, Short           string
	User, AgentID       string
	HarnessID           string
	Tier, TierClass     string
	Service, Type, Task string
	Scope               pass.Scope
	State, StateClass   string
	Created, CreatedAbs string
	Expires, ExpiresAbs string
	ApprovedBy          string
	// The delegation tree: Depth 0 for a delegation approved for its own
	// sake; a sub-agent's names its parent's authorization and agent, and
	// Descendants counts the live delegations a revoke ends with it.
	Depth                 int
	ParentID, ParentAgent string
	Descendants           int
}

// Error codes of the ?error= notice: fixed texts, never echoed input.
var errorTexts = map[string]string{
	"noscope":        "Choose at least one scope to approve, or deny the request.",
	"notpending":     "That request was already decided.",
	"expired":        "That request expired before your decision.",
	"notfound":       "That request or authorization no longer exists.",
	"scope":          "A chosen scope is not one the Service offered.",
	"stale":          "The request changed since this page was shown; look at it again before deciding.",
	"noscope-narrow": "Keep at least one scope when narrowing, or revoke the delegation.",
	"action":         "Unknown action.",
	"state":          "That authorization is no longer live.",
	"nostage":        "No stage move of that mission waits for a decision any more.",
	"internal":       "Something went wrong; see the server's log.",
}

func (p *Console) index(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := p.now()
	v := p.newView(w, r)
	pending, err := p.a.Pending(ctx, authority.ListOptions{Now: now})
	if err != nil {
		p.fail(w, err)
		return
	}
	for _, req := range pending {
		if p.may(r, req.User) {
			v.Pending = append(v.Pending, p.requestView(req, now))
		}
	}
	moves, err := p.pendingTransitions(ctx)
	if err != nil {
		p.fail(w, err)
		return
	}
	for i := range moves {
		if p.may(r, moves[i].User.Email) {
			v.Moves = append(v.Moves, transitionViewOf(&moves[i], now))
		}
	}
	tree, err := p.tree(ctx, now)
	if err != nil {
		p.fail(w, err)
		return
	}
	for _, a := range tree {
		if p.may(r, a.User) {
			v.Active = append(v.Active, a)
		}
	}
	v.Refresh = len(v.Pending) == 0 && len(v.Moves) == 0
	p.notice(ctx, r, v)
	p.render(w, v)
}

// tree lists the live delegations as a forest: each sub-agent's delegation
// right under its parent's, so a person sees what a revoke ends with it.
// A delegation whose parent is no longer live is shown as a root.
func (p *Console) tree(ctx context.Context, now time.Time) ([]authzView, error) {
	auths, err := p.a.Authorizations(ctx, authority.ListOptions{Now: now})
	if err != nil {
		return nil, err
	}
	views := make([]authzView, len(auths))
	byMission := make(map[string]int, len(auths))
	parent := make([]string, len(auths)) // the parent mission of each
	for i, a := range auths {
		views[i] = authzViewOf(a, now)
		if a.MissionID == "" {
			continue
		}
		if _, ok := byMission[a.MissionID]; !ok {
			byMission[a.MissionID] = i
		}
		m, err := p.a.Mission(ctx, a.MissionID)
		switch {
		case errors.Is(err, authority.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		}
		if d := m.Delegation; d != nil && d.Parent != nil {
			parent[i] = *d.Parent
		}
	}
	children := make(map[int][]int)
	var roots []int
	for i := range auths {
		if pi, ok := byMission[parent[i]]; ok && parent[i] != "" && pi != i {
			children[pi] = append(children[pi], i)
		} else {
			roots = append(roots, i)
		}
	}
	out := make([]authzView, 0, len(views))
	seen := make([]bool, len(views))
	var walk func(i, from, depth int) int
	walk = func(i, from, depth int) int {
		if seen[i] {
			return 0
		}
		seen[i] = true
		v := views[i]
		v.Depth = depth
		if from >= 0 {
			v.ParentID, v.ParentAgent = views[from].ID, views[from].HarnessID
			if strings.HasPrefix(v.ApprovedBy, "delegation:") { // no person: the parent's grant bounds it
				v.ApprovedBy = "delegation"
			}
		}
		at := len(out)
		out = append(out, v)
		n := 0
		for _, c := range children[i] {
			if !seen[c] {
				n += 1 + walk(c, i, depth+1)
			}
		}
		out[at].Descendants = n
		return n
	}
	for _, r := range roots {
		walk(r, -1, 0)
	}
	for i := range views { // a cycle the store should never hold: still list it
		walk(i, -1, 0)
	}
	return out, nil
}

// descendants returns the authorization ids of the live delegations below
// id in the tree.
func descendants(tree []authzView, id string) []string {
	for i, v := range tree {
		if v.ID != id {
			continue
		}
		var out []string
		for _, c := range tree[i+1 : i+1+v.Descendants] {
			out = append(out, c.ID)
		}
		return out
	}
	return nil
}

func (p *Console) detail(w http.ResponseWriter, r *http.Request) {
	now := p.now()
	req, err := p.a.Request(r.Context(), r.PathValue("id"))
	if err == nil && !p.may(r, req.User) {
		err = authority.ErrNotFound // another domain's request: not confirmed to exist
	}
	if errors.Is(err, authority.ErrNotFound) {
		v := p.newView(w, r)
		v.Notice = &notice{"warn", "This request is unknown here: it may have expired and been removed."}
		w.WriteHeader(http.StatusNotFound)
		p.render(w, v)
		return
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	v := p.newView(w, r)
	rv := p.requestView(req, now)
	v.Detail = &rv
	if v.Mission, err = p.missionView(r.Context(), req.MissionID, now); err != nil {
		p.fail(w, err)
		return
	}
	p.notice(r.Context(), r, v)
	p.render(w, v)
}

// missionView renders the operator view of a mission with its history, and
// whether the history's hash chain verifies.
func (p *Console) missionView(ctx context.Context, id string, now time.Time) (*missionView, error) {
	m, err := p.a.Mission(ctx, id)
	if err != nil {
		return nil, err
	}
	mv := &missionView{ID: m.ID, State: string(m.State), StateClass: "status-" + string(m.State), Version: m.Version,
		Head: m.History.Head, Count: m.History.Count, Verified: true,
		Stages: planView(m.AuthorityModel.Stages, m.AuthorityModel.Stage)}
	if m.AuthorityModel.PendingTransition != nil {
		t := transitionViewOf(m, now)
		mv.Move = &t
	}
	if e := m.Ended; e != nil {
		mv.Ended = fmt.Sprintf("%s by %s (%s)", ago(e.At, now), e.By, e.Cause)
		if abandoned(e) {
			mv.Ended = fmt.Sprintf("abandoned by the agent %s", ago(e.At, now))
		}
		if e.Reason != "" {
			mv.Ended += " — “" + e.Reason + "”"
		}
	}
	if err := p.a.VerifyHistory(ctx, id); err != nil {
		mv.Verified = false
		var he *authority.HistoryError
		if errors.As(err, &he) {
			mv.VerifyError = fmt.Sprintf("the chain breaks at entry %d", he.Seq)
		} else {
			return nil, err
		}
	}
	prev := ""
	for _, e := range m.History.Events {
		ev := eventView{Seq: e.Seq, Version: e.Version, At: ago(e.At, now), AtAbs: abs(e.At), Type: e.Type, By: e.By,
			Prev: shortHash(e.Prev), Hash: shortHash(e.Hash), LinkOK: e.Prev == prev}
		if len(e.Details) > 0 {
			if b, err := json.Marshal(e.Details); err == nil {
				ev.Details = string(b)
			}
		}
		prev = e.Hash
		mv.Events = append(mv.Events, ev)
	}
	return mv, nil
}

// abandoned tells a request the agent gave up (its Harness ended the
// pending mission) from one an operator canceled, so that a person does
// not read the agent's retreat as someone else's decision.
func abandoned(e *pass.MissionEnd) bool {
	return e != nil && e.Cause == pass.CauseCanceled && strings.HasPrefix(e.By, "harness:")
}

// shortHash shortens "sha256:<hex>" for display.
func shortHash(h string) string {
	if len(h) > 19 {
		return h[:19] + "…"
	}
	return h
}

func (p *Console) newView(w http.ResponseWriter, r *http.Request) *view {
	return &view{
		Title:     p.title,
		Authority: p.a.Identifier(),
		Base:      p.base,
		Who:       cmp.Or(who(r).Name, who(r).Subject),
		Logout:    p.login,
		CSRF:      p.csrfToken(w, r),
		Generated: p.now().UTC().Format("15:04:05 UTC"),
	}
}

// notice fills the banner from ?decided=, ?revoked=, ?named= or ?error=,
// always from the store or fixed texts.
func (p *Console) notice(ctx context.Context, r *http.Request, v *view) {
	q := r.URL.Query()
	switch {
	case q.Get("error") != "":
		if t, ok := errorTexts[q.Get("error")]; ok {
			v.Notice = &notice{"error", t}
		}
	case q.Get("decided") != "":
		req, err := p.a.Request(ctx, q.Get("decided"))
		if err != nil || req.Decision == nil || !p.may(r, req.User) {
			return
		}
		switch req.Decision.Status {
		case pass.StatusApproved:
			v.Notice = &notice{"ok", fmt.Sprintf("Approved %s for %s with %s. The agent receives its pass at its next poll.", req.MissionID, req.User, strings.Join(req.Decision.Scope, ", "))}
		case pass.StatusDenied:
			v.Notice = &notice{"warn", fmt.Sprintf("Denied %s for %s.", req.MissionID, req.User)}
		default:
			v.Notice = &notice{"warn", fmt.Sprintf("Request %s is %s.", req.MissionID, req.Decision.Status)}
		}
	case q.Get("revoked") != "":
		a, err := p.a.Authorization(ctx, q.Get("revoked"))
		if err == nil && p.may(r, a.User) {
			v.Notice = &notice{"warn", fmt.Sprintf("Revoked %s: %s's agent at %s is refused at the Service's next check.", short(a.ID), a.User, a.Service)}
			// The sub-agents it ended with it, as the store has them now.
			var ended []string
			for _, id := range q["ended"][:min(len(q["ended"]), maxEndedNotice)] {
				if c, err := p.a.Authorization(ctx, id); err == nil && c.StateAt(p.now()) == pass.DelegationRevoked {
					ended = append(ended, c.HarnessID)
				}
			}
			if len(ended) > 0 {
				v.Notice.Text += fmt.Sprintf(" Its sub-agents' delegations ended with it: %s.", strings.Join(ended, ", "))
			}
		}
	case q.Get("staged") != "":
		v.Notice = p.stageNotice(r, q.Get("staged"))
	case q.Get("changed") != "":
		if m, err := p.a.Mission(ctx, q.Get("changed")); err == nil && p.may(r, m.User.Email) {
			v.Notice = &notice{"ok", fmt.Sprintf("Mission %s of %s is now %s.", short(m.ID), m.User.Email, m.State)}
		}
	}
}

func (p *Console) render(w http.ResponseWriter, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := tmpl.Execute(w, v); err != nil {
		p.log.Error("approval page: render", "err", err)
	}
}

func (p *Console) fail(w http.ResponseWriter, err error) {
	p.log.Error("approval page", "err", err)
	http.Error(w, "Internal error; see the devnet's log.", http.StatusInternalServerError)
}

// back redirects after a form: to the request page when the form came from
// it, else to the list; with a query naming the outcome.
func (p *Console) back(w http.ResponseWriter, r *http.Request, id, key, val string) {
	target := p.base + "/"
	if r.PostFormValue("from") == "detail" && id != "" {
		target = p.base + "/requests/" + url.PathEscape(id)
	}
	http.Redirect(w, r, target+"?"+url.Values{key: {val}}.Encode(), http.StatusSeeOther)
}

func (p *Console) decide(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	by, ok := p.permitted(w, r, id)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	// What the person saw is recorded with the decision: the page posts
	// back the hash of what it showed, and the decision records the hash
	// of that disclosure with the granted scope.
	stored, err := p.a.Request(r.Context(), id)
	if err != nil {
		p.back(w, r, id, "error", errorCode(err))
		return
	}
	shown := proposalOf(stored)
	if seen := r.PostFormValue("shown"); seen != disclosureHash(stored, shown, nil) && (seen != "" || shown != nil) {
		p.back(w, r, id, "error", "stale")
		return
	}
	var d authority.Decision
	switch r.PostFormValue("action") {
	case "approve":
		scope := pass.Scope(r.PostForm["scope"]).Dedupe()
		if len(scope) == 0 {
			p.back(w, r, id, "error", "noscope")
			return
		}
		d = authority.Decision{Outcome: authority.Approve, Scope: scope, Reason: reason, DecidedBy: by,
			DisclosureSHA256: disclosureHash(stored, shown, scope)}
		if r.PostFormValue("delegate") == "1" {
			d.MaxDepth = 1 // sub-agents may get a part of what is granted here
		}
	case "deny":
		if reason == "" {
			reason = "denied by " + by
		}
		d = authority.Decision{Outcome: authority.Deny, Reason: reason, DecidedBy: by, DisclosureSHA256: disclosureHash(stored, shown, nil)}
	default:
		p.back(w, r, id, "error", "action")
		return
	}
	req, err := p.a.Decide(r.Context(), id, d)
	if err != nil {
		p.back(w, r, id, "error", errorCode(err))
		return
	}
	p.log.Info("approval page: decision", "request_id", short(id), "user", req.User, "outcome", string(req.Status), "decided_by", by)
	p.back(w, r, id, "decided", id)
}

func (p *Console) revoke(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	by, ok := p.permitted(w, r, id)
	if !ok {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		reason = "revoked on the approval console"
	}
	// Revoking a mission ends its sub-agents' missions too (at the
	// Authority, in the same step): note which, to show it.
	tree, err := p.tree(r.Context(), p.now())
	if err != nil {
		p.fail(w, err)
		return
	}
	ended := descendants(tree, id)
	a, err := p.a.Revoke(r.Context(), id, by, reason)
	if err != nil {
		p.back(w, r, "", "error", errorCode(err))
		return
	}
	p.log.Info("approval page: revoked", "authorization_id", short(id), "user", a.User, "by", by, slog.String("reason", reason),
		slog.Int("sub_agents", len(ended)))
	q := url.Values{"revoked": {id}, "ended": ended[:min(len(ended), maxEndedNotice)]}
	http.Redirect(w, r, p.base+"/?"+q.Encode(), http.StatusSeeOther)
}

// maxEndedNotice bounds the sub-agents the revoke notice names.
const maxEndedNotice = 20

// permitted checks that the signed-in person may decide for the user of id
// (a mission or authorization id) and returns the Subject to record; else
// it sends them back with an error, as if id did not exist.
func (p *Console) permitted(w http.ResponseWriter, r *http.Request, id string) (string, bool) {
	user, err := p.userOf(r.Context(), id)
	if err == nil && !p.may(r, user) {
		err = authority.ErrNotFound
	}
	if err != nil {
		p.back(w, r, "", "error", errorCode(err))
		return "", false
	}
	return who(r).Subject, true
}

// suspend, resume and narrow change a live delegation's mission; the
// Authority applies the change to its sub-agents' missions too.
func (p *Console) suspend(w http.ResponseWriter, r *http.Request) {
	p.change(w, r, func(id, by string) (*pass.MissionRecord, error) {
		reason := cmp.Or(strings.TrimSpace(r.PostFormValue("reason")), "suspended on the approval console")
		return p.a.Suspend(r.Context(), id, by, reason)
	})
}

func (p *Console) resume(w http.ResponseWriter, r *http.Request) {
	p.change(w, r, func(id, by string) (*pass.MissionRecord, error) { return p.a.Resume(r.Context(), id, by) })
}

func (p *Console) narrow(w http.ResponseWriter, r *http.Request) {
	scope := pass.Scope(r.PostForm["scope"]).Dedupe()
	if len(scope) == 0 {
		p.back(w, r, "", "error", "noscope-narrow")
		return
	}
	p.change(w, r, func(id, by string) (*pass.MissionRecord, error) { return p.a.NarrowScope(r.Context(), id, by, scope) })
}

func (p *Console) change(w http.ResponseWriter, r *http.Request, op func(id, by string) (*pass.MissionRecord, error)) {
	id := r.PostFormValue("id")
	by, ok := p.permitted(w, r, id)
	if !ok {
		return
	}
	m, err := op(id, by)
	if err != nil {
		p.back(w, r, "", "error", errorCode(err))
		return
	}
	p.log.Info("approval console: mission changed", "mission_id", m.ID, "state", string(m.State), "version", m.Version, "by", by)
	http.Redirect(w, r, p.base+"/?"+url.Values{"changed": {m.ID}}.Encode(), http.StatusSeeOther)
}

func errorCode(err error) string {
	switch {
	case errors.Is(err, authority.ErrNotFound):
		return "notfound"
	case errors.Is(err, authority.ErrNotPending):
		return "notpending"
	case errors.Is(err, authority.ErrExpired):
		return "expired"
	case errors.Is(err, authority.ErrScopeNotAvailable), errors.Is(err, authority.ErrInvalidDecision):
		return "scope"
	case errors.Is(err, authority.ErrState):
		return "state"
	}
	return "internal"
}

func (p *Console) requestView(r *authority.Request, now time.Time) requestView {
	status := r.StatusAt(now)
	v := requestView{
		ID: r.MissionID, Short: r.MissionID,
		User: r.User, HarnessID: r.HarnessID, AgentID: r.AgentID,
		Tier: tierLabel(r.Tier), TierClass: tierClass(r.Tier), TierNote: tierNote(r.Tier), Verified: verified(r.Tier),
		Task: r.TaskDescription, TaskID: r.TaskID, TaskAttested: r.TaskAttested,
		Type: typeLabel(r.Type), Service: r.Service, Dest: r.DestinationURL,
		Created: ago(r.CreatedAt, now), CreatedAbs: abs(r.CreatedAt),
		Expires: ago(r.ExpiresAt, now), ExpiresAbs: abs(r.ExpiresAt),
		Status: string(status), StatusClass: "status-" + string(status),
		StatusLabel: string(status), Pending: status == pass.StatusPending,
	}
	if status == pass.StatusCanceled && abandoned(r.Ended) {
		v.Status, v.StatusLabel = "abandoned", "abandoned by the agent"
	}
	if v.AgentID == v.HarnessID {
		v.AgentID = ""
	}
	checked := r.ProposedScope
	if len(checked) == 0 {
		checked = r.AvailableScope
	}
	for _, s := range r.AvailableScope.Dedupe() {
		sv := scopeView{Name: s, Danger: destructive(r, s)}
		if e, ok := r.Effects[s]; ok {
			sv.Effect = string(e)
		}
		// A destructive scope is granted by a person's own tick, never
		// by leaving a box as it was.
		sv.Checked = slices.Contains(checked, s) && !sv.Danger
		v.Scopes = append(v.Scopes, sv)
	}
	if d := r.Decision; d != nil {
		v.DecidedBy, v.Decided, v.DecidedAbs, v.Reason, v.Granted = d.DecidedBy, ago(d.DecidedAt, now), abs(d.DecidedAt), d.Reason, d.Scope
		v.Disclosure, v.ScopeBasis = d.DisclosureSHA256, d.ScopeDecision
	}
	v.Stages = planView(r.Stages, "")
	v.Proposal = proposalOf(r)
	v.Shown = disclosureHash(r, v.Proposal, nil)
	return v
}

func authzViewOf(a *authority.Authorization, now time.Time) authzView {
	state := a.StateAt(now)
	v := authzView{
		ID: a.ID, Short: short(a.ID), User: a.User, AgentID: a.AgentID, HarnessID: a.HarnessID,
		Tier: tierLabel(a.Tier), TierClass: tierClass(a.Tier),
		Service: a.Service, Type: typeLabel(a.Type), Task: a.TaskDescription, Scope: a.Scope,
		State: string(state), StateClass: "status-" + string(state),
		Created: ago(a.CreatedAt, now), CreatedAbs: abs(a.CreatedAt),
		Expires: ago(a.ExpiresAt, now), ExpiresAbs: abs(a.ExpiresAt),
		ApprovedBy: a.Approval.DecidedBy,
	}
	if v.AgentID == v.HarnessID {
		v.AgentID = ""
	}
	return v
}

// destructive reports whether granting scope deletes, acts outside the
// Service, administers, or does what nobody classified. When the Authority
// does not classify effects at all, the scope's name decides: a name ending
// in delete or admin is destructive.
func destructive(r *authority.Request, scope string) bool {
	e, ok := r.Effects[scope]
	switch {
	case !ok && r.Effects != nil: // the Authority classifies, but not this one
		e = authority.EffectUnknown
	case !ok:
		e = authority.EffectRules{":read": authority.EffectRead, ".read": authority.EffectRead, "": authority.EffectWrite,
			":delete": authority.EffectDelete, ".delete": authority.EffectDelete, ":admin": authority.EffectAdmin,
			".admin": authority.EffectAdmin}.Of(scope, "")
	}
	return e.Compare(authority.EffectDelete) >= 0
}

func verified(t dpop.Tier) bool { return t == dpop.TierAttested || t == dpop.TierRegistered }

// tierLabel says the tier plainly, so "unverified" is never mistaken for a
// credential.
func tierLabel(t dpop.Tier) string {
	switch t {
	case dpop.TierAttested:
		return "verified: attested"
	case dpop.TierRegistered:
		return "verified: registered"
	}
	return "unverified harness"
}

func tierClass(t dpop.Tier) string {
	switch t {
	case dpop.TierAttested:
		return "tier-attested"
	case dpop.TierRegistered:
		return "tier-registered"
	}
	return "tier-unverified"
}

func tierNote(t dpop.Tier) string {
	switch t {
	case dpop.TierAttested:
		return "the harness vendor vouches for this agent"
	case dpop.TierRegistered:
		return "the harness key was registered with this Authority"
	}
	return "the harness id is self-asserted: nobody vouches for it"
}

func typeLabel(t pass.PassType) string {
	switch t {
	case pass.BrowserSession:
		return "browser session"
	case pass.BearerToken:
		return "API token"
	}
	return string(t)
}

// short abbreviates an id for display.
func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}

func abs(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ago says how far t is from now: "just now", "2 min ago", "in 9 min".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 5*time.Second:
		if future {
			return "in a moment"
		}
		return "just now"
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}
