package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/jcs"
	"github.com/agentpass-go/agentpass/pass"
)

// proposalView is what the page shows of a request's scope proposal: each
// scope the request or the proposal names, on which side it is, and each
// side's reason. A model's reason is marked as untrusted, because text in
// the task description may have steered it.
type proposalView struct {
	Compiler   string // "templates@2026-11-01", empty without a proposal
	None       bool   // no proposal: the compiler failed or had nothing to propose
	Failed     bool   // the compiler failed or timed out
	Decision   string // the planned scope decision
	Requested  pass.Scope
	Rows       []diffRow
	Over       int // requested but not proposed
	Under      int // proposed but not requested
	Stages     []pass.Stage
	Disclosure string // hex SHA-256 of what this page shows (without the granted scope)
}

// diffRow is one scope of the comparison.
type diffRow struct {
	Scope      string
	Effect     string
	Requested  bool
	Proposed   bool
	Side       string // "both", "over" (requested only), "under" (proposed only)
	Why        string // the proposal's reason, or why it excluded the scope
	Basis      string // template, rule, model, or empty for the sanitizer
	Source     string
	Untrusted  bool
	ExcludedBy bool // Why explains an exclusion
}

// disclosure is the canonical record of what a person was shown: the
// task, the requested scope, the proposal and its diff, the stage plan,
// and (when deciding) the granted scope and delegation rights. Its
// SHA-256 goes into the mission's approval evidence.
type disclosure struct {
	Mission   string           `json:"mission"`
	Task      string           `json:"task"`
	Service   string           `json:"service"`
	Requested []string         `json:"requested"`
	Proposal  string           `json:"proposal"` // "none", or compiler@version
	Rows      []disclosureRow  `json:"rows"`
	Stages    []disclosureStep `json:"stages"`
	Granted   []string         `json:"granted,omitempty"`
	MaxDepth  int              `json:"max_depth"`
}

type disclosureRow struct {
	Scope     string `json:"scope"`
	Side      string `json:"side"`
	Effect    string `json:"effect"`
	Why       string `json:"why"`
	Basis     string `json:"basis"`
	Untrusted bool   `json:"untrusted"`
}

type disclosureStep struct {
	Name  string   `json:"name"`
	Scope []string `json:"scope"`
	Gate  string   `json:"gate"`
}

// proposalOf builds the proposal view of r, or nil when r has neither a
// requested scope nor a proposal (a plain v0.1 request).
func proposalOf(r *authority.Request) *proposalView {
	if r.Proposal == nil && r.RequestedScope == nil && !r.CompileFailed {
		return nil
	}
	v := &proposalView{None: r.Proposal == nil, Failed: r.CompileFailed, Decision: r.ScopeDecision, Requested: r.RequestedScope}
	byScope := map[string]*diffRow{}
	row := func(s string) *diffRow {
		if d, ok := byScope[s]; ok {
			return d
		}
		d := &diffRow{Scope: s, Effect: string(r.Effects[s])}
		if d.Effect == "" && r.Effects != nil {
			d.Effect = string(authority.EffectUnknown)
		}
		byScope[s] = d
		v.Rows = append(v.Rows, *d)
		return d
	}
	// Rows are built in a fixed order (requested, then proposed), then
	// copied back, so the page and its disclosure hash are deterministic.
	for _, s := range r.RequestedScope.Dedupe() {
		row(s).Requested = true
	}
	if p := r.Proposal; p != nil && !r.CompileFailed {
		v.Compiler = p.Compiler + "@" + p.Version
		for _, ra := range p.Scopes {
			d := row(ra.Scope)
			d.Proposed, d.Why, d.Basis, d.Source, d.Untrusted = true, ra.Why, string(ra.Basis), ra.Source, ra.Untrusted()
		}
		for _, ra := range p.Excluded {
			if d, ok := byScope[ra.Scope]; ok && !d.Proposed {
				d.Why, d.Basis, d.Source, d.Untrusted, d.ExcludedBy = ra.Why, string(ra.Basis), ra.Source, ra.Untrusted(), true
			}
		}
		v.Stages = p.Stages
	}
	for i := range v.Rows {
		d := byScope[v.Rows[i].Scope]
		switch {
		case d.Requested && d.Proposed:
			d.Side = "both"
		case d.Requested:
			d.Side = "over"
			if d.Scope != pass.Wildcard && !v.None {
				v.Over++
			}
		default:
			d.Side = "under"
			v.Under++
		}
		v.Rows[i] = *d
	}
	v.Disclosure = disclosureHash(r, v, nil)
	return v
}

// disclosureHash is the hex SHA-256 of the canonical JSON (RFC 8785) of the
// disclosure of r as shown in v, with the granted scope when deciding.
func disclosureHash(r *authority.Request, v *proposalView, granted pass.Scope) string {
	d := disclosure{Mission: r.MissionID, Task: r.TaskDescription, Service: r.Service, Requested: []string{},
		Proposal: "none", Rows: []disclosureRow{}, Stages: []disclosureStep{}}
	if v != nil {
		d.Requested = append(d.Requested, v.Requested...)
		if v.Compiler != "" {
			d.Proposal = v.Compiler
		}
		for _, row := range v.Rows {
			d.Rows = append(d.Rows, disclosureRow{Scope: row.Scope, Side: row.Side, Effect: row.Effect, Why: row.Why, Basis: row.Basis, Untrusted: row.Untrusted})
		}
		for _, st := range v.Stages {
			d.Stages = append(d.Stages, disclosureStep{Name: st.Name, Scope: slices.Clone([]string(st.Scope)), Gate: st.Gate})
		}
	}
	if granted != nil {
		d.Granted = slices.Clone([]string(granted))
		slices.Sort(d.Granted)
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return ""
	}
	b, err := jcs.Canonicalize(raw)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
