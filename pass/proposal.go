package pass

// This file holds the wire types of the scope compilation extension
// (ExtCompile): the Authority's proposal of a minimal scope for a task, and
// the basis of the scope a mission was granted. Proposals are never
// authority; they only inform the approval.

// Scope decisions (ScopeBasis.Decision): how the granted scope relates to
// what the Harness requested and what the Authority proposed.
const (
	ScopeProposalAdopted  = "proposal_adopted"  // the Harness requested nothing
	ScopeAsRequested      = "as_requested"      // the request was within the proposal
	ScopeNarrowed         = "narrowed"          // requested ∩ proposed, or narrower by policy
	ScopeWildcardReplaced = "wildcard_replaced" // "*" was replaced by the proposal
	ScopeHumanEdited      = "human_edited"      // a person chose the scope, having seen the diff
	ScopeNoBasis          = "none"              // no proposal: the scope was chosen without one
)

// Proposal outcomes (ScopeProposal.Outcome).
const (
	ProposalProposed = "proposed" // a proposal exists
	ProposalNone     = "none"     // no proposal (no template matched, or the compiler failed): a person decides
)

// ScopeProposal is the proposal member of a pending issuance status. It
// speaks only about scopes the Harness requested, so a status reader
// learns nothing of the user's other entitlements.
type ScopeProposal struct {
	Outcome string `json:"outcome"`
	// Scope lists the requested scopes the proposal includes.
	Scope Scope `json:"scope"`
	// Rationale gives the reason for each scope of Scope.
	Rationale []ScopeRationale `json:"rationale"`
	// Excluded gives the reasons requested scopes were left out, where the
	// compiler gave one.
	Excluded []ScopeRationale `json:"excluded,omitempty"`
	// Diff compares the request with the proposal.
	Diff     ScopeDiff    `json:"diff"`
	Compiler *CompilerRef `json:"compiler,omitempty"`
}

// ScopeRationale is the reason for one proposed or excluded scope. Basis
// is template, rule or model; Untrusted marks text a model wrote, which
// the task description may have steered.
type ScopeRationale struct {
	Scope     string `json:"scope"`
	Basis     string `json:"basis,omitempty"`
	Source    string `json:"source,omitempty"`
	Why       string `json:"why"`
	Untrusted bool   `json:"untrusted,omitempty"`
}

// ScopeDiff compares requested and proposed scopes: Over were requested
// but not proposed, Under proposed but not requested (operators only).
type ScopeDiff struct {
	Over  Scope `json:"over"`
	Under Scope `json:"under,omitempty"`
}

// CompilerRef names the compiler that made a proposal, and its version.
type CompilerRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// ScopeBasis is the scope_basis member of a mission record: how its scope
// was derived.
type ScopeBasis struct {
	// Requested is what the Harness asked for; empty when it asked for
	// nothing.
	Requested Scope  `json:"requested"`
	Decision  string `json:"decision"`
	// Compiler and InputSHA256 tie the proposal to the compiler and the
	// exact input it was made from (hex SHA-256 of its canonical JSON).
	Compiler    *CompilerRef     `json:"compiler,omitempty"`
	InputSHA256 string           `json:"input_sha256,omitempty"`
	Rationale   []ScopeRationale `json:"rationale"`
	Excluded    []ScopeRationale `json:"excluded,omitempty"`
	Stages      []Stage          `json:"stages,omitempty"`
}

// maxRequestedScope bounds the scope an issuance request may ask for.
const maxRequestedScope = 256

// checkRequestedScope checks an optional requested scope: at most 256
// values, each a non-empty scope token of at most 256 bytes.
func checkRequestedScope(field string, s Scope) error {
	if len(s) > maxRequestedScope {
		return invalid(field, "more than 256 values")
	}
	for _, v := range s {
		if v == "" || len(v) > maxScopeValue || !scopeToken(v) {
			return invalid(field, "values must be scope tokens of 1 to 256 bytes")
		}
	}
	return nil
}

// taskClass reports whether s is 1 to 64 ASCII letters, digits, '.', '_'
// or '-'.
func taskClass(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
