package harness

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/pass"
)

// Bounds of what a Harness asks for and keeps of a proposal: the same as
// an Authority accepts, so a bad request fails here, before any call.
const (
	maxRequestedScope = 256
	maxScopeValue     = 256
	maxProposalWhy    = 512
)

// checkScopeRequest checks Request.Scope and Task.Class.
func checkScopeRequest(scope pass.Scope, class string) error {
	if len(scope) > maxRequestedScope {
		return errors.New("request scope has more than 256 values")
	}
	for _, s := range scope {
		if s == "" || len(s) > maxScopeValue || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }) >= 0 {
			return errors.New("request scope values must be scope tokens of 1 to 256 bytes")
		}
	}
	if class != "" && (len(class) > 64 || strings.IndexFunc(class, func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) || r == '.' || r == '_' || r == '-')
	}) >= 0) {
		return errors.New("task class must be 1 to 64 letters, digits, '.', '_' or '-'")
	}
	return nil
}

// keepProposal returns what a Harness keeps of a status's proposal: the
// entries about scopes it requested, each reason cut to 512 bytes of
// printable text, or nil when nothing is left. The Authority promises no
// more; keeping no more means a misbehaving one cannot make the Harness
// show or store anything else.
func keepProposal(p *pass.ScopeProposal, requested pass.Scope) *pass.ScopeProposal {
	if p == nil || (p.Outcome != pass.ProposalProposed && p.Outcome != pass.ProposalNone) {
		return nil
	}
	named := pass.Scope{}
	for _, s := range requested.Dedupe() {
		if s != pass.Wildcard {
			named = append(named, s)
		}
	}
	out := &pass.ScopeProposal{Outcome: p.Outcome, Scope: p.Scope.Dedupe().Intersect(named), Rationale: []pass.ScopeRationale{},
		Diff: pass.ScopeDiff{Over: p.Diff.Over.Dedupe().Intersect(named)}}
	keep := func(in []pass.ScopeRationale) []pass.ScopeRationale {
		var kept []pass.ScopeRationale
		for _, r := range in {
			if named.Has(r.Scope) && len(kept) < len(named) {
				r.Why, r.Source, r.Basis = printable(cut(r.Why)), printable(cut(r.Source)), printable(cut(r.Basis))
				kept = append(kept, r)
			}
		}
		return kept
	}
	if r := keep(p.Rationale); r != nil {
		out.Rationale = r
	}
	out.Excluded = keep(p.Excluded)
	if c := p.Compiler; c != nil {
		out.Compiler = &pass.CompilerRef{ID: printable(cut(c.ID)), Version: printable(cut(c.Version))}
	}
	return out
}

// cut bounds peer text at a rune boundary.
func cut(s string) string {
	if len(s) <= maxProposalWhy {
		return s
	}
	n := maxProposalWhy
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// noteProposal keeps the proposal of a pending status on the grant and
// reports it once.
func (c *Client) noteProposal(a *acquisition, st *pass.IssuanceStatus) {
	g := a.grant
	if st.Status != pass.StatusPending || g.Proposal != nil {
		return
	}
	p := keepProposal(st.Proposal, a.req.Scope)
	if p == nil {
		return
	}
	g.Proposal = p
	c.emit(Progress{Event: EventProposal, Service: g.Service, User: g.User, TaskID: g.Task.ID, Authority: g.Authority,
		RequestID: g.RequestID, Status: st.Status, Proposal: p})
}
