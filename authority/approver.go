package authority

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Outcome is what an Approver decided.
type Outcome int

// Outcomes. The zero value is Pending, so a forgotten outcome never
// approves anything.
const (
	// Pending leaves the request for a person (Authority.Decide).
	Pending Outcome = iota
	// Approve grants Decision.Scope.
	Approve
	// Deny refuses the request with Decision.Reason.
	Deny
	// Cancel ends the request as "canceled" (for example when the User
	// withdraws it). Only Authority.Decide accepts it.
	Cancel
)

func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Approve:
		return "approve"
	case Deny:
		return "deny"
	case Cancel:
		return "cancel"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Decision is an Approver's or a person's answer to an issuance request.
type Decision struct {
	Outcome Outcome
	// Scope is, for Approve, the scope to grant: a subset of the request's
	// AvailableScope. Nil means the ProposedScope when there is one, else
	// every available scope. "*" is kept only when
	// Config.ScopeWildcardAllowed, otherwise it is replaced by the
	// available scopes. For Pending it is an optional proposal that a
	// person's approval without a scope grants.
	Scope pass.Scope
	// Reason is recorded, and sent to the Harness for Deny.
	Reason string
	// DecidedBy names who or what decided, for the evidence; e.g.
	// "human:alex@corp.example". Rules sets "rule:<name>". If empty,
	// "approver" (from an Approver) or "operator" (from Authority.Decide).
	DecidedBy string
	// AuthorizationTTL, if set, shortens the delegation lifetime below
	// Config.AuthorizationTTL; it never lengthens it.
	AuthorizationTTL time.Duration
	// MaxDepth, for Approve, lets the mission delegate to sub-agents this
	// many generations deep, capped by Config.MaxDelegationDepth. Zero,
	// the default, allows no delegation: an approval that did not think
	// about sub-agents does not grant them.
	MaxDepth int
	// DisclosureSHA256, for a person's decision, is the hex SHA-256 of the
	// canonical JSON (RFC 8785) of what the approval page showed: the
	// evidence that the person saw the proposal and its diff.
	DisclosureSHA256 string
}

// Approver decides issuance requests. Decide is called once per request,
// after the request was verified (attestations, Service discovery, available
// scopes) and before it is stored; r is a copy with ID, AvailableScope, Tier,
// AgentID and TaskAttested filled in. An error leaves the request pending
// (and is logged). Implementations must be safe for concurrent use.
//
// Decide is also asked whether an active mission may enter a stage whose
// gate is policy: r is then a copy of the mission's request whose
// AvailableScope is the stage's scope and whose Stage names the current
// stage (empty at issuance). Approve lets the move happen, Deny refuses
// it, and anything else leaves it to a person.
type Approver interface {
	Decide(ctx context.Context, r *Request) (Decision, error)
}

// ApproverFunc adapts a function to the Approver interface.
type ApproverFunc func(ctx context.Context, r *Request) (Decision, error)

// Decide calls f.
func (f ApproverFunc) Decide(ctx context.Context, r *Request) (Decision, error) { return f(ctx, r) }

// Manual is the human-in-the-loop Approver, the default: every request
// stays pending until Authority.Decide is called (Config.OnPending tells the
// application to ask someone). A request nobody decides expires after
// Config.RequestTTL.
type Manual struct{}

// Decide returns Pending.
func (Manual) Decide(context.Context, *Request) (Decision, error) {
	return Decision{Outcome: Pending}, nil
}

// ScopeFunc chooses scopes to grant from the available ones.
type ScopeFunc func(available pass.Scope) pass.Scope

// AllScopes grants every available scope.
func AllScopes() ScopeFunc {
	return func(available pass.Scope) pass.Scope { return available.Dedupe() }
}

// ScopesWithSuffix grants the available scopes ending in one of suffixes,
// e.g. ScopesWithSuffix(":read").
func ScopesWithSuffix(suffixes ...string) ScopeFunc {
	return filterScopes(func(s string) bool {
		return slices.ContainsFunc(suffixes, func(x string) bool { return strings.HasSuffix(s, x) })
	})
}

// ScopesWithPrefix grants the available scopes starting with one of
// prefixes, e.g. ScopesWithPrefix("tickets:").
func ScopesWithPrefix(prefixes ...string) ScopeFunc {
	return filterScopes(func(s string) bool {
		return slices.ContainsFunc(prefixes, func(x string) bool { return strings.HasPrefix(s, x) })
	})
}

// Scopes grants the listed scopes that are available.
func Scopes(names ...string) ScopeFunc {
	return filterScopes(func(s string) bool { return slices.Contains(names, s) })
}

func filterScopes(keep func(string) bool) ScopeFunc {
	return func(available pass.Scope) pass.Scope {
		out := pass.Scope{}
		for _, s := range available.Dedupe() {
			if s != pass.Wildcard && keep(s) {
				out = append(out, s)
			}
		}
		return out
	}
}

// Rule is one rule of a Rules approver. A rule matches when every condition
// that is set holds; unset conditions match everything.
type Rule struct {
	// Name identifies the rule in the evidence ("rule:<Name>"). Required
	// for a useful audit trail.
	Name string

	// Users are e-mail addresses (compared case-insensitively).
	Users []string
	// Domains are e-mail domains, e.g. "corp.example" (compared in
	// canonical form).
	Domains []string
	// Harnesses are harness ids (exact).
	Harnesses []string
	// Agents are agent ids as vouched for by the Authority (exact).
	Agents []string
	// Services are Service origins.
	Services []string
	// Tiers are trust tiers.
	Tiers []dpop.Tier
	// Types are pass types.
	Types []pass.PassType
	// RequireTaskAttestation matches only requests whose task attestation
	// verified.
	RequireTaskAttestation bool
	// Match, if set, is an extra condition.
	Match func(r *Request) bool
	// WithinProposal matches only when every scope the rule would grant
	// (the request, or the proposal standing for it) was proposed by a
	// template or a rule: a scope only a model proposed never counts,
	// because text in the task description can steer a model.
	WithinProposal bool
	// MaxEffect, if set, is the highest effect this rule may grant: a rule
	// whose grant holds a scope of a higher effect does not match, and a
	// scope the Authority does not classify counts as unknown (above
	// admin). Whatever it says, no rule grants delete, external, admin or
	// unknown scopes without a person when the Authority classifies
	// effects.
	MaxEffect Effect

	// Outcome is what the rule decides when it matches.
	Outcome Outcome
	// Grant chooses the scope for Approve (and the proposal for Pending).
	// If nil, AllScopes. An Approve rule whose Grant yields no scope does
	// not match, so the next rule is tried.
	Grant ScopeFunc
	// Reason is recorded (and sent to the Harness for Deny).
	Reason string
	// AuthorizationTTL is passed on in the Decision.
	AuthorizationTTL time.Duration
	// MaxDepth is passed on in the Decision: the sub-agent generations
	// an approval by this rule allows.
	MaxDepth int
}

func (ru *Rule) matches(r *Request) bool {
	if len(ru.Users) > 0 && !slices.ContainsFunc(ru.Users, func(u string) bool { return pass.SameEmail(u, r.User) }) {
		return false
	}
	if len(ru.Domains) > 0 {
		d, err := pass.EmailDomain(r.User)
		if err != nil || !slices.ContainsFunc(ru.Domains, func(x string) bool {
			c, err := pass.CanonicalDomain(x)
			return err == nil && c == d
		}) {
			return false
		}
	}
	if len(ru.Harnesses) > 0 && !slices.Contains(ru.Harnesses, r.HarnessID) {
		return false
	}
	if len(ru.Agents) > 0 && !slices.Contains(ru.Agents, r.AgentID) {
		return false
	}
	if len(ru.Services) > 0 && !slices.ContainsFunc(ru.Services, func(s string) bool { return pass.SameOrigin(s, r.Service) }) {
		return false
	}
	if len(ru.Tiers) > 0 && !slices.Contains(ru.Tiers, r.Tier) {
		return false
	}
	if len(ru.Types) > 0 && !slices.Contains(ru.Types, r.Type) {
		return false
	}
	if ru.RequireTaskAttestation && !r.TaskAttested {
		return false
	}
	return ru.Match == nil || ru.Match(r)
}

// RuleSet is a first-match-wins policy Approver; see Rules.
type RuleSet struct {
	rules []Rule
}

// Rules returns an Approver that applies the first matching rule. When no
// rule matches, the request stays pending for a person. A typical policy:
//
//	authority.Rules(
//		authority.Rule{Name: "blocked-harness", Harnesses: []string{"evil"}, Outcome: authority.Deny, Reason: "harness blocked"},
//		authority.Rule{Name: "attested-read", Tiers: []dpop.Tier{dpop.TierAttested},
//			Outcome: authority.Approve, Grant: authority.ScopesWithSuffix(":read")},
//		// anything else: pending, a person decides
//	)
func Rules(rules ...Rule) *RuleSet { return &RuleSet{rules: slices.Clone(rules)} }

// Decide implements Approver.
func (s *RuleSet) Decide(ctx context.Context, r *Request) (Decision, error) {
	for i := range s.rules {
		ru := &s.rules[i]
		if !ru.matches(r) {
			continue
		}
		d := Decision{Outcome: ru.Outcome, Reason: ru.Reason, DecidedBy: "rule:" + ru.Name, AuthorizationTTL: ru.AuthorizationTTL, MaxDepth: ru.MaxDepth}
		if ru.Outcome == Approve || ru.Outcome == Pending {
			grant := ru.Grant
			if grant == nil {
				grant = AllScopes()
			}
			d.Scope = grant(r.AvailableScope)
			if r.ProposedScope != nil {
				// What the Harness asked for (or the proposal standing
				// for it) bounds what a rule grants.
				d.Scope = d.Scope.Intersect(r.ProposedScope)
			}
			if ru.Outcome == Approve && len(d.Scope) == 0 {
				continue
			}
		}
		judged := d.Scope
		if judged == nil {
			judged = r.ProposedScope
		}
		if ru.WithinProposal && !withinProposal(r, judged) {
			continue
		}
		// An unrecognised MaxEffect (a typo) matches nothing.
		if ru.MaxEffect != "" && (normalEffect(ru.MaxEffect) != ru.MaxEffect || r.maxEffect(judged).Compare(ru.MaxEffect) > 0) {
			continue
		}
		return d, nil
	}
	return Decision{Outcome: Pending}, nil
}

// Decision errors.
var (
	// ErrInvalidDecision: the decision is not usable (an unknown outcome,
	// Pending given to Authority.Decide, or an approval that grants
	// nothing).
	ErrInvalidDecision = errors.New("authority: invalid decision")
	// ErrScopeNotAvailable: an approval grants a scope the Service did not
	// offer for this request.
	ErrScopeNotAvailable = errors.New("authority: scope not available")
)

// grantScope turns an approval's scope into the scope recorded: nil means
// the proposal or everything available; "*" is kept only when allowed,
// otherwise expanded; every value must be available.
func (a *Authority) grantScope(r *Request, want pass.Scope) (pass.Scope, error) {
	if want == nil {
		want = r.ProposedScope
	}
	if want == nil {
		want = r.AvailableScope
	}
	avail := pass.Scope{}
	for _, s := range r.AvailableScope.Dedupe() {
		if s != pass.Wildcard {
			avail = append(avail, s)
		}
	}
	if want.HasWildcard() && !(a.wildcard && len(want.Dedupe()) == 1) {
		want = want.Expand(avail)
	}
	want = want.Dedupe()
	if len(want) == 0 {
		return nil, fmt.Errorf("%w: an approval must grant at least one scope", ErrInvalidDecision)
	}
	if !want.HasWildcard() {
		for _, s := range want {
			if !avail.Has(s) {
				return nil, fmt.Errorf("%w: %q", ErrScopeNotAvailable, s)
			}
		}
	}
	return want, nil
}

// evidence builds the evidence of a decision made at now.
func (a *Authority) evidence(r *Request, d Decision, now time.Time) (Evidence, error) {
	by := d.DecidedBy
	e := Evidence{DecidedBy: by, DecidedAt: now, Reason: d.Reason, DisclosureSHA256: d.DisclosureSHA256}
	if e.DisclosureSHA256 != "" && !sha256Hex(e.DisclosureSHA256) {
		return Evidence{}, fmt.Errorf("%w: DisclosureSHA256 must be 64 lowercase hex digits", ErrInvalidDecision)
	}
	switch d.Outcome {
	case Approve:
		scope, err := a.grantScope(r, d.Scope)
		if err != nil {
			return Evidence{}, err
		}
		ttl := a.authzTTL
		if d.AuthorizationTTL > 0 && d.AuthorizationTTL < ttl {
			ttl = d.AuthorizationTTL
		}
		e.Status = pass.StatusApproved
		e.Scope = scope
		e.PassExpiresAt = now.Add(a.passTTL)
		e.AuthorizationExpiresAt = now.Add(ttl)
		e.MaxDepth = min(max(d.MaxDepth, 0), a.maxDepth)
		if e.MaxDepth > 0 {
			e.MaxChildren = a.maxChildren
		}
	case Deny:
		e.Status = pass.StatusDenied
	case Cancel:
		e.Status = pass.StatusCanceled
	default:
		return Evidence{}, fmt.Errorf("%w: outcome %s is not a decision", ErrInvalidDecision, d.Outcome)
	}
	return e, nil
}

// sha256Hex reports whether s is a hex SHA-256 digest in lowercase.
func sha256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
