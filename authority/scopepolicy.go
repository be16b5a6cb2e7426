package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// defaultCompileTimeout bounds one compilation at issuance.
const defaultCompileTimeout = 2 * time.Second

// WildcardPolicy says what a request for "*" gets.
type WildcardPolicy string

// Wildcard policies. The zero value is WildcardReplace.
const (
	// WildcardReplace reads "*" as "what the task needs": the proposal
	// becomes the request. Without a proposal a person decides.
	WildcardReplace WildcardPolicy = "replace"
	// WildcardRefuse answers 403 scope_wildcard_refused.
	WildcardRefuse WildcardPolicy = "refuse"
	// WildcardHuman leaves the request to a person, with the proposal
	// preselected.
	WildcardHuman WildcardPolicy = "human"
)

// OverScopePolicy says what a request asking for scopes beyond the
// proposal gets.
type OverScopePolicy string

// Over-scope policies. The zero value is OverScopeHuman.
const (
	// OverScopeHuman leaves the request to a person, who sees the diff.
	OverScopeHuman OverScopePolicy = "human"
	// OverScopeNarrow reduces the request to requested ∩ proposed, which
	// the Approver may then approve.
	OverScopeNarrow OverScopePolicy = "narrow"
	// OverScopeDeny answers 403 scope_over_proposal.
	OverScopeDeny OverScopePolicy = "deny"
)

// ScopePolicy is how the Authority weighs a request's scope against its
// compiler's proposal. The zero value replaces "*" with the proposal and
// sends requests beyond the proposal to a person.
type ScopePolicy struct {
	Wildcard  WildcardPolicy
	OverScope OverScopePolicy
	// RequireProposal approves nothing automatically without a usable
	// proposal (none, or the compiler failed): a person decides.
	RequireProposal bool
}

func (p ScopePolicy) check() error {
	switch p.Wildcard {
	case "", WildcardReplace, WildcardRefuse, WildcardHuman:
	default:
		return fmt.Errorf("%w: ScopePolicy.Wildcard must be replace, refuse or human", ErrInvalidConfig)
	}
	switch p.OverScope {
	case "", OverScopeHuman, OverScopeNarrow, OverScopeDeny:
	default:
		return fmt.Errorf("%w: ScopePolicy.OverScope must be human, narrow or deny", ErrInvalidConfig)
	}
	return nil
}

// Diff compares a request's scope with the proposal: Over was requested
// but not proposed (never approved without a person), Under was proposed
// but not requested.
type Diff struct {
	Over, Under pass.Scope
}

// Diff returns the comparison of RequestedScope with the proposal. Without
// a proposal every requested scope is Over; a request for "*" or for
// nothing is compared as the proposal it stands for, so only what the
// Harness named explicitly can be Over.
func (r *Request) Diff() Diff {
	var proposed pass.Scope
	if r.Proposal != nil {
		proposed = r.Proposal.Names()
	}
	req := r.RequestedScope
	if req == nil || req.HasWildcard() {
		req = proposed
		if r.RequestedScope.HasWildcard() {
			req = append(cloneScope(proposed), concrete(r.RequestedScope)...)
		}
	}
	return Diff{Over: minus(req, proposed), Under: minus(proposed, req)}
}

// concrete returns s without the wildcard and duplicates.
func concrete(s pass.Scope) pass.Scope {
	out := pass.Scope{}
	for _, v := range s.Dedupe() {
		if v != pass.Wildcard {
			out = append(out, v)
		}
	}
	return out
}

// minus returns the values of a not in b, once each, in a's order.
func minus(a, b pass.Scope) pass.Scope {
	out := pass.Scope{}
	for _, v := range a.Dedupe() {
		if !b.Has(v) {
			out = append(out, v)
		}
	}
	return out
}

// sameScope reports whether a and b hold the same values.
func sameScope(a, b pass.Scope) bool { return a.SubsetOf(b) && b.SubsetOf(a) }

// withinProposal reports whether granting s stays inside the part of r's
// proposal an operator authored: every scope of s proposed by a template or
// a rule (so none of Diff().Over).
func withinProposal(r *Request, s pass.Scope) bool {
	if r.Proposal == nil || r.CompileFailed || len(s) == 0 || s.HasWildcard() {
		return false
	}
	authored := make(map[string]bool, len(r.Proposal.Scopes))
	for _, ra := range r.Proposal.Scopes {
		authored[ra.Scope] = ra.Basis == BasisTemplate || ra.Basis == BasisRule
	}
	for _, v := range s {
		if !authored[v] {
			return false
		}
	}
	return true
}

// effectOf returns the effect of scope name for r: unknown when r holds no
// classification for it.
func (r *Request) effectOf(name string) Effect {
	if e, ok := r.Effects[name]; ok {
		return normalEffect(e)
	}
	return EffectUnknown
}

// maxEffect returns the highest effect of s for r (read for an empty s).
func (r *Request) maxEffect(s pass.Scope) Effect {
	top := EffectRead
	for _, v := range s {
		if e := r.effectOf(v); e.Compare(top) > 0 {
			top = e
		}
	}
	return top
}

// effectsOf classifies the available scopes: the higher of what the
// Service declared and Config.Effects. It returns nil when the Authority
// classifies nothing (no compiler, no rules and no declared effect), so a
// plain v0.1 deployment keeps its behaviour.
func (a *Authority) effectsOf(avail []AvailableScope) map[string]Effect {
	declared := false
	for _, s := range avail {
		declared = declared || s.Effect != ""
	}
	if a.compiler == nil && a.effects == nil && !declared {
		return nil
	}
	out := make(map[string]Effect, len(avail))
	for _, s := range avail {
		out[s.Name] = a.effects.Of(s.Name, s.Effect)
	}
	return out
}

// planScope runs the compiler on a new request and applies ScopePolicy:
// it sets RequestedScope, Proposal, CompileFailed, ProposedScope (what a
// plain approval grants) and ScopeDecision, and reports whether only a
// person may decide. A refused request is an error for the Harness.
func (a *Authority) planScope(ctx context.Context, req *Request, in *pass.IssuanceRequest, avail []AvailableScope) (person bool, err error) {
	if in.Scope != nil {
		req.RequestedScope = in.Scope.Dedupe()
	}
	wild := req.RequestedScope.HasWildcard()
	if wild && a.policy.Wildcard == WildcardRefuse {
		return false, pass.Fail(pass.CodeScopeWildcardRefused, "this Authority does not grant \"*\": request the scopes the task needs")
	}
	if a.compiler != nil {
		ci := CompileInput{Service: req.Service, Task: req.TaskDescription, TaskClass: in.Task.Class,
			Requested: cloneScope(req.RequestedScope), Available: avail, Tier: req.Tier}
		req.Proposal, err = a.compile(ctx, &ci)
		switch {
		case errors.Is(err, ErrNoProposal):
		case err != nil:
			req.CompileFailed = true
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass scope compiler failed; request left to a person",
				slog.String("mission_id", req.MissionID), slog.String("reason", err.Error()))
		}
		err = nil
	}
	var proposed pass.Scope
	if req.Proposal != nil {
		proposed = req.Proposal.Names()
	}
	target, decision := pass.Scope(nil), ""
	switch {
	case req.CompileFailed:
		// A person decides; a plain approval grants what was named.
		person = true
		if req.RequestedScope != nil && !wild {
			target = req.RequestedScope.Intersect(req.AvailableScope)
		}
	case req.RequestedScope == nil:
		if proposed != nil {
			target, decision = proposed, pass.ScopeProposalAdopted
		}
	case wild:
		// Only the concrete scopes next to "*" can be over the proposal.
		over := minus(concrete(req.RequestedScope), proposed)
		switch {
		case proposed == nil:
			person = true
		case a.policy.Wildcard == WildcardHuman || len(over) > 0:
			target, decision, person = proposed, pass.ScopeWildcardReplaced, true
		default:
			target, decision = proposed, pass.ScopeWildcardReplaced
		}
	case a.compiler == nil:
		// No compiler: the request bounds what may be granted.
		target, decision = req.RequestedScope.Intersect(req.AvailableScope), pass.ScopeAsRequested
		if len(target) < len(req.RequestedScope) {
			decision = pass.ScopeNarrowed
		}
		person = len(target) == 0
	default:
		over := minus(req.RequestedScope, proposed)
		switch {
		case proposed == nil:
			// Nothing to compare with: a person decides.
			target, person = req.RequestedScope.Intersect(req.AvailableScope), true
		case len(over) == 0:
			target, decision = req.RequestedScope, pass.ScopeAsRequested
		case a.policy.OverScope == OverScopeDeny:
			return false, pass.Failf(pass.CodeScopeOverProposal, "the request asks for %d scope(s) beyond what the task needs", len(over))
		case a.policy.OverScope == OverScopeNarrow && len(req.RequestedScope.Intersect(proposed)) > 0:
			target, decision = req.RequestedScope.Intersect(proposed), pass.ScopeNarrowed
		default:
			// A person sees the diff; a plain approval grants what the
			// Harness asked for, as far as the Service offers it.
			target, person = req.RequestedScope.Intersect(req.AvailableScope), true
		}
	}
	if len(target) > 0 {
		req.ProposedScope, req.ScopeDecision = cloneScope(target), decision
		req.ProposedBy = "harness:" + req.HarnessID
		if req.Proposal != nil && decision != pass.ScopeAsRequested {
			req.ProposedBy = "compiler:" + req.Proposal.Compiler + "@" + req.Proposal.Version
		}
	}
	if a.policy.RequireProposal && req.Proposal == nil {
		person = true
	}
	return person, nil
}

// compile runs the compiler with the configured timeout and sanitizes its
// answer again, so that no compiler, whoever wrote it, can put a scope the
// Service does not offer, "*", or an unexplained scope in front of an
// approver.
func (a *Authority) compile(ctx context.Context, in *CompileInput) (*Proposal, error) {
	if err := checkInput(in); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.compileTimeout)
	defer cancel()
	type result struct {
		p   *Proposal
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- result{nil, fmt.Errorf("authority: compiler panicked: %v", v)}
			}
		}()
		p, err := a.compiler.Compile(ctx, *in)
		done <- result{p, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// A compiler that ignores its context finishes in the background;
		// its answer is dropped.
		return nil, fmt.Errorf("authority: compiler: %w", ctx.Err())
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.p == nil {
		return nil, errors.New("authority: compiler returned no proposal and no error")
	}
	p, err := sanitize(in, r.p.Scopes, r.p.Excluded, r.p.Compiler, r.p.Version)
	if err != nil {
		return nil, err
	}
	p.Omitted += max(r.p.Omitted, 0)
	p.Stages = clampStages(r.p.Stages, p.Names())
	return p, nil
}

// gate applies the rules no Approver can override to an automatic
// decision: a request for a person stays pending, and an approval never
// grants a scope over the proposal, nor (when effects are classified) a
// scope whose effect is above write.
func (a *Authority) gate(ctx context.Context, req *Request, person bool, d Decision) Decision {
	if d.Outcome != Approve {
		return d
	}
	scope := d.Scope
	if scope == nil {
		scope = req.ProposedScope
	}
	if scope == nil {
		scope = req.AvailableScope
	}
	if req.ProposedScope != nil && d.Scope != nil {
		scope = d.Scope.Intersect(req.ProposedScope)
		d.Scope = scope
	}
	why := ""
	switch {
	case person:
		why = "the scope needs a person (policy, or no usable proposal)"
	case len(scope) == 0:
		why = "the approval grants nothing the Harness asked for"
	case req.Proposal != nil && len(scope.Intersect(req.Diff().Over)) > 0:
		// Without a proposal (no compiler) the request itself bounds the
		// grant, as planScope set it; nothing is "beyond" a proposal.
		why = "the approval grants scopes beyond the proposal"
	case req.Effects != nil && req.maxEffect(entered(req, scope)).Compare(EffectWrite) > 0:
		why = "the approval grants a scope whose effect needs a person"
	}
	if why == "" {
		return d
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass automatic approval held for a person",
		slog.String("mission_id", req.MissionID), slog.String("decided_by", d.DecidedBy), slog.String("reason", why))
	return Decision{Outcome: Pending, DecidedBy: d.DecidedBy}
}

// scopeDecision is the ScopeDecision recorded for granting scope: the
// planned decision when the grant is the planned scope; human_edited when a
// person chose otherwise (or no proposal could be made); narrowed when a
// rule granted less.
func scopeDecision(req *Request, scope pass.Scope, byPerson bool) string {
	if req.Proposal == nil && req.RequestedScope == nil && !req.CompileFailed {
		return ""
	}
	switch {
	case req.ScopeDecision != "" && !req.CompileFailed && sameScope(scope, req.ProposedScope):
		return req.ScopeDecision
	case byPerson:
		return pass.ScopeHumanEdited
	case req.ProposedScope != nil && scope.SubsetOf(req.ProposedScope):
		return pass.ScopeNarrowed
	}
	return pass.ScopeNoBasis
}

// rationale converts a compiler's rationale to its wire form.
func (r Rationale) wire() pass.ScopeRationale {
	return pass.ScopeRationale{Scope: r.Scope, Basis: string(r.Basis), Source: r.Source, Why: r.Why, Untrusted: r.Untrusted()}
}

// statusProposal is the proposal member of a pending status: only about
// the scopes the Harness named, so reading it reveals nothing else of the
// user's entitlements or of the compiler's view. Nil without a compiler.
func (a *Authority) statusProposal(req *Request) *pass.ScopeProposal {
	if a.compiler == nil {
		return nil
	}
	named := concrete(req.RequestedScope)
	out := &pass.ScopeProposal{Outcome: pass.ProposalNone, Scope: pass.Scope{}, Rationale: []pass.ScopeRationale{},
		Diff: pass.ScopeDiff{Over: named}}
	p := req.Proposal
	if p == nil || req.CompileFailed {
		return out
	}
	out.Outcome = pass.ProposalProposed
	out.Compiler = &pass.CompilerRef{ID: p.Compiler, Version: p.Version}
	for _, r := range p.Scopes {
		if named.Has(r.Scope) {
			out.Scope = append(out.Scope, r.Scope)
			out.Rationale = append(out.Rationale, r.wire())
		}
	}
	for _, r := range p.Excluded {
		if named.Has(r.Scope) {
			out.Excluded = append(out.Excluded, r.wire())
		}
	}
	out.Diff.Over = minus(named, p.Names())
	return out
}

// scopeBasis renders the scope_basis member of a mission record for view
// v: operators see everything; a Harness sees reasons about the scopes it
// requested or was granted; a Service sees the reasons for the granted
// scopes only. Nil for a mission without a requested scope or a proposal.
func scopeBasis(r *Request, v missionView) *pass.ScopeBasis {
	if r.Proposal == nil && r.RequestedScope == nil && !r.CompileFailed {
		return nil
	}
	b := &pass.ScopeBasis{Requested: cloneScope(r.RequestedScope), Decision: r.ScopeDecision, Rationale: []pass.ScopeRationale{}}
	var granted pass.Scope
	if d := r.Decision; d != nil {
		b.Decision = d.ScopeDecision
		granted = d.Scope
	}
	if b.Decision == "" {
		b.Decision = pass.ScopeNoBasis
	}
	if b.Requested == nil {
		b.Requested = pass.Scope{}
	}
	p := r.Proposal
	if p == nil {
		if v == viewService {
			return &pass.ScopeBasis{Requested: pass.Scope{}, Decision: b.Decision, Rationale: b.Rationale}
		}
		return b
	}
	shown := func(scope string, excluded bool) bool {
		switch v {
		case viewOperator:
			return true
		case viewHarness:
			return r.RequestedScope.Has(scope) || !excluded && granted.Has(scope)
		}
		return !excluded && granted.Has(scope)
	}
	for _, ra := range p.Scopes {
		if shown(ra.Scope, false) {
			b.Rationale = append(b.Rationale, ra.wire())
		}
	}
	if v == viewService {
		return &pass.ScopeBasis{Requested: pass.Scope{}, Decision: b.Decision, Rationale: b.Rationale}
	}
	b.Compiler = &pass.CompilerRef{ID: p.Compiler, Version: p.Version}
	b.InputSHA256 = p.InputSHA256
	for _, ra := range p.Excluded {
		if shown(ra.Scope, true) {
			b.Excluded = append(b.Excluded, ra.wire())
		}
	}
	if v == viewOperator {
		b.Stages = cloneStages(p.Stages)
	}
	return b
}

// entered is the part of scope the mission holds once approved: with a
// stage plan, its first stage's (later stages are gated by their own gates
// when the mission moves to them); without one, all of it.
func entered(req *Request, scope pass.Scope) pass.Scope {
	if len(req.Stages) == 0 {
		return scope
	}
	return scope.Intersect(req.Stages[0].Scope)
}
