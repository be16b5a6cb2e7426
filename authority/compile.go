package authority

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jcs"
	"github.com/agentpass-go/agentpass/pass"
)

// Bounds of compilation. A proposal is shown to a person, so it stays small
// enough to read; a compiler cannot grow it past these whatever it returns.
const (
	maxProposalScopes = 256 // scopes kept in one proposal
	maxExcluded       = 256 // exclusions listed; further drops are counted
	maxWhy            = 256 // bytes of a reason
)

// ErrNoProposal is returned by a Compiler that has nothing to propose for a
// task: no template matched, or nothing it named survived sanitizing. It is
// not a failure: a person decides the scope instead.
var ErrNoProposal = errors.New("authority: no scope proposal for the task")

// Compiler turns a task into a proposed minimal scope. Its output is a
// proposal shown to approvers, never authority: it has been intersected with
// the scopes the Service offers, and policy and a person still decide.
type Compiler interface {
	// Compile returns a proposal with at least one scope, or an error;
	// ErrNoProposal when it has nothing to propose.
	Compile(ctx context.Context, in CompileInput) (*Proposal, error)
}

// CompileInput is what a compiler sees of an issuance request. Every member
// is untrusted data from the Harness or the Service.
type CompileInput struct {
	// Service is the Service's origin.
	Service string `json:"service"`
	// Task is the task description, at most 4 KiB (longer input is refused).
	Task string `json:"task"`
	// TaskClass is the optional task class tag the Harness sent.
	TaskClass string `json:"task_class,omitempty"`
	// Requested is the scope the Harness asked for; nil when it asked for none.
	Requested pass.Scope `json:"requested,omitempty"`
	// Available lists the scopes the Service offers the user.
	Available []AvailableScope `json:"available"`
	// Tier is the Harness's trust tier.
	Tier dpop.Tier `json:"tier,omitempty"`
}

// AvailableScope is one scope a Service offers, with the effect it declared
// (empty when it declared none).
type AvailableScope struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Effect      Effect `json:"effect,omitempty"`
}

// Basis says where a proposed scope came from.
type Basis string

// The bases of a proposed scope.
const (
	BasisTemplate Basis = "template" // an operator-authored template
	BasisRule     Basis = "rule"     // an operator-authored rule
	BasisModel    Basis = "model"    // a model's answer: its reason is untrusted text
)

// Rationale is one proposed or excluded scope with the reason for it.
type Rationale struct {
	Scope string `json:"scope"`
	// Basis and Source (such as "support-triage@3") are empty for exclusions
	// made by the sanitizer.
	Basis  Basis  `json:"basis,omitempty"`
	Source string `json:"source,omitempty"`
	// Why is at most 256 bytes of printable text.
	Why string `json:"why"`
}

// Untrusted reports whether Why was written by a model, which may have been
// steered by text in the task description; approvers must be told so.
func (r Rationale) Untrusted() bool { return r.Basis == BasisModel }

// Proposal is a compiler's sanitized answer.
type Proposal struct {
	// Scopes lists the proposed scopes, sorted by name, each offered by the
	// Service, at most 256.
	Scopes []Rationale `json:"scopes"`
	// Excluded lists scopes left out and why (at most 256); Omitted counts
	// the exclusions beyond those.
	Excluded []Rationale `json:"excluded,omitempty"`
	Omitted  int         `json:"omitted,omitempty"`
	// Compiler and Version identify the compiler that made the proposal.
	Compiler string `json:"compiler"`
	Version  string `json:"version"`
	// Stages is an optional plan of 1 to 8 stages over the proposed scopes
	// (from a template), each stage's scope clamped to Scopes; nil for none.
	Stages []pass.Stage `json:"stages,omitempty"`
	// InputSHA256 is the hex SHA-256 of the canonical JSON (RFC 8785) of the
	// CompileInput, so a recorded proposal can be tied to what it was made from.
	InputSHA256 string `json:"input_sha256"`
}

// clone returns a deep copy of p (nil for nil).
func (p *Proposal) clone() *Proposal {
	if p == nil {
		return nil
	}
	c := *p
	c.Scopes = slices.Clone(p.Scopes)
	c.Excluded = slices.Clone(p.Excluded)
	c.Stages = cloneStages(p.Stages)
	return &c
}

func cloneStages(in []pass.Stage) []pass.Stage {
	if in == nil {
		return nil
	}
	out := make([]pass.Stage, len(in))
	for i, s := range in {
		out[i] = pass.Stage{Name: s.Name, Scope: cloneScope(s.Scope), Gate: s.Gate}
	}
	return out
}

// Bounds of a stage plan: a person reads it, and stage names travel in
// tokens and URLs.
const (
	maxStages    = 8
	maxStageName = 32
)

// checkStages validates a stage plan: 1 to 8 stages, each with a unique
// name of 1 to 32 characters [a-z0-9_-], at least one valid scope name
// and no wildcard, and a gate of the same characters (or none).
func checkStages(stages []pass.Stage) error {
	if len(stages) == 0 || len(stages) > maxStages {
		return fmt.Errorf("a stage plan has 1 to %d stages", maxStages)
	}
	names := make(map[string]bool, len(stages))
	for _, st := range stages {
		if !stageName(st.Name) || names[st.Name] {
			return fmt.Errorf("stage name %q is not unique or not 1-%d characters [a-z0-9_-]", st.Name, maxStageName)
		}
		names[st.Name] = true
		if st.Gate != "" && !stageName(st.Gate) {
			return fmt.Errorf("stage %q: gate %q is not 1-%d characters [a-z0-9_-]", st.Name, st.Gate, maxStageName)
		}
		if len(st.Scope) == 0 || len(st.Scope) > maxSelectors {
			return fmt.Errorf("stage %q needs 1 to %d scopes", st.Name, maxSelectors)
		}
		for _, s := range st.Scope {
			if s == pass.Wildcard || !validScopeName(s) {
				return fmt.Errorf("stage %q: invalid scope %q", st.Name, s)
			}
		}
	}
	return nil
}

func stageName(s string) bool {
	if s == "" || len(s) > maxStageName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// clampStages keeps of each stage the scopes in kept, dropping stages left
// empty; nil when nothing remains or the plan is invalid, so a plan never
// carries a scope the proposal does not.
func clampStages(stages []pass.Stage, kept pass.Scope) []pass.Stage {
	if len(stages) == 0 || checkStages(stages) != nil {
		return nil
	}
	var out []pass.Stage
	for _, st := range stages {
		s := st.Scope.Dedupe().Intersect(kept)
		if len(s) > 0 {
			out = append(out, pass.Stage{Name: st.Name, Scope: s, Gate: st.Gate})
		}
	}
	return out
}

// Names returns the proposed scope names.
func (p *Proposal) Names() pass.Scope {
	out := make(pass.Scope, len(p.Scopes))
	for i, r := range p.Scopes {
		out[i] = r.Scope
	}
	return out
}

// checkInput refuses input no compiler should see; it is cheap and runs
// before any work.
func checkInput(in *CompileInput) error {
	if len(in.Task) > maxTaskDescription {
		return fmt.Errorf("authority: task description longer than %d bytes", maxTaskDescription)
	}
	// Invalid UTF-8 would be replaced when hashing, so two different inputs
	// could share a digest; refuse it instead.
	valid := utf8.ValidString(in.Task) && utf8.ValidString(in.TaskClass) && utf8.ValidString(in.Service) && utf8.ValidString(string(in.Tier))
	for _, a := range in.Available {
		valid = valid && utf8.ValidString(a.Name) && utf8.ValidString(a.Description) && utf8.ValidString(string(a.Effect))
	}
	for _, r := range in.Requested {
		valid = valid && utf8.ValidString(r)
	}
	if !valid {
		return errors.New("authority: compile input is not valid UTF-8")
	}
	return nil
}

// inputDigest is the hex SHA-256 of the canonical JSON (RFC 8785) of in,
// members named and omitted as in its JSON encoding. The canonical text is
// written directly, members in sorted order, because this runs on every
// compilation; a test checks it against the general canonicaliser.
func inputDigest(in *CompileInput) string {
	b := make([]byte, 0, 256+len(in.Task)+64*len(in.Available))
	b = append(b, `{"available":`...)
	if in.Available == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, a := range in.Available {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if a.Description != "" {
				b = appendJCSString(append(b, `"description":`...), a.Description)
				b = append(b, ',')
			}
			if a.Effect != "" {
				b = appendJCSString(append(b, `"effect":`...), string(a.Effect))
				b = append(b, ',')
			}
			b = appendJCSString(append(b, `"name":`...), a.Name)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(in.Requested) > 0 {
		b = append(b, `,"requested":[`...)
		for i, r := range in.Requested {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJCSString(b, r)
		}
		b = append(b, ']')
	}
	b = appendJCSString(append(b, `,"service":`...), in.Service)
	b = appendJCSString(append(b, `,"task":`...), in.Task)
	if in.TaskClass != "" {
		b = appendJCSString(append(b, `,"task_class":`...), in.TaskClass)
	}
	if in.Tier != "" {
		b = appendJCSString(append(b, `,"tier":`...), string(in.Tier))
	}
	b = append(b, '}')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// appendJCSString appends s (valid UTF-8: the inputs were checked) as an
// RFC 8785 string, through the module's one canonicaliser.
func appendJCSString(b []byte, s string) []byte {
	out, err := jcs.AppendString(b, s)
	if err != nil {
		return append(b, `"\ufffd"`...) // unreachable for checked input; never a silent collision with valid text
	}
	return out
}

// Reasons the sanitizer gives for a drop. Stable text: operators filter on it.
const (
	whyNotOffered = "not offered by the Service"
	whyWildcard   = "the wildcard is never proposed"
	whyDuplicate  = "duplicate"
	whyBadName    = "not a valid scope name"
	whyTooMany    = "more than 256 scopes proposed"
	whyNoReason   = "(no reason given)"
)

// sanitize keeps the candidates that the Service offers, once each, at most
// maxProposalScopes, with cleaned reasons, sorted by name; everything else
// is recorded as excluded. Basis and Source are set by the caller, so a
// model cannot claim a template's authority.
//
// extra are exclusions the compiler adds (such as a template's); they are
// listed after the sanitizer's own, skipping scopes that were kept or are
// already listed.
func sanitize(in *CompileInput, cands, extra []Rationale, compiler, version string) (*Proposal, error) {
	offered := make(map[string]struct{}, len(in.Available))
	for _, a := range in.Available {
		if validScopeName(a.Name) {
			offered[a.Name] = struct{}{}
		}
	}
	p := &Proposal{Compiler: compiler, Version: version}
	exclude := func(e Rationale) {
		if len(p.Excluded) >= maxExcluded {
			p.Omitted++
			return
		}
		p.Excluded = append(p.Excluded, e)
	}
	seen := make(map[string]struct{}, min(len(cands), maxProposalScopes))
	for _, c := range cands {
		switch {
		case c.Scope == pass.Wildcard:
			exclude(Rationale{Scope: c.Scope, Why: whyWildcard})
			continue
		case !validScopeName(c.Scope):
			exclude(Rationale{Scope: printableName(c.Scope), Why: whyBadName})
			continue
		}
		if _, ok := offered[c.Scope]; !ok {
			exclude(Rationale{Scope: c.Scope, Why: whyNotOffered})
			continue
		}
		if _, dup := seen[c.Scope]; dup {
			exclude(Rationale{Scope: c.Scope, Why: whyDuplicate})
			continue
		}
		if len(p.Scopes) >= maxProposalScopes {
			exclude(Rationale{Scope: c.Scope, Why: whyTooMany})
			continue
		}
		seen[c.Scope] = struct{}{}
		c.Why = cleanWhy(c.Why)
		p.Scopes = append(p.Scopes, c)
	}
	if len(p.Scopes) == 0 {
		return nil, ErrNoProposal
	}
	listed := make(map[string]struct{}, len(p.Excluded))
	for _, e := range p.Excluded {
		listed[e.Scope] = struct{}{}
	}
	for _, e := range extra {
		name := e.Scope
		if !validScopeName(name) {
			name = printableName(name)
		}
		_, kept := seen[name]
		_, dup := listed[name]
		if kept || dup {
			continue
		}
		listed[name] = struct{}{}
		exclude(Rationale{Scope: name, Basis: e.Basis, Source: e.Source, Why: cleanWhy(e.Why)})
	}
	slices.SortFunc(p.Scopes, func(a, b Rationale) int { return strings.Compare(a.Scope, b.Scope) })
	p.InputSHA256 = inputDigest(in)
	return p, nil
}

// validScopeName reports whether s is usable as a scope name: non-empty, at
// most maxScopeName bytes, valid UTF-8, no control or space characters.
func validScopeName(s string) bool {
	if s == "" || len(s) > maxScopeName || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// printableName renders an invalid name for an exclusion record: quoted,
// ASCII only, and short.
func printableName(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strconv.QuoteToASCII(s)
}

// cleanWhy makes a reason safe to display: valid UTF-8, control characters
// as spaces, at most maxWhy bytes (cut at a rune boundary), and never empty.
func cleanWhy(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxWhy {
		cut := maxWhy
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if s == "" {
		return whyNoReason
	}
	return s
}

// FirstOf returns a Compiler that asks each compiler in order and returns
// the first proposal. A compiler with nothing to propose (ErrNoProposal)
// passes to the next; any other error stops the chain and is returned, so a
// failure is never hidden behind a weaker compiler's answer. Nil compilers
// are skipped.
func FirstOf(compilers ...Compiler) Compiler {
	return firstOf(slices.DeleteFunc(slices.Clone(compilers), func(c Compiler) bool { return c == nil }))
}

type firstOf []Compiler

func (f firstOf) Compile(ctx context.Context, in CompileInput) (*Proposal, error) {
	for _, c := range f {
		p, err := c.Compile(ctx, in)
		if errors.Is(err, ErrNoProposal) {
			continue
		}
		return p, err
	}
	return nil, ErrNoProposal
}

// CompileCase is one task of an evaluation corpus: an input and the scopes
// a careful person would grant for it (none when a person should decide).
type CompileCase struct {
	Name  string       `json:"name"`
	Input CompileInput `json:"input"`
	Want  []string     `json:"want"`
	// Source is the template the Templates compiler is expected to use
	// ("id@version"); evaluation ignores it.
	Source string `json:"source,omitempty"`
}

// EvaluateCompiler runs c over the corpus and returns the precision (the
// share of proposed scopes that were wanted) and recall (the share of wanted
// scopes that were proposed), pooled over all cases. A case without a
// proposal proposes nothing. With nothing proposed precision is 1, with
// nothing wanted recall is 1. Any compiler error other than ErrNoProposal
// stops the evaluation.
func EvaluateCompiler(ctx context.Context, c Compiler, corpus []CompileCase) (precision, recall float64, err error) {
	var proposed, wanted, hit int
	for _, cs := range corpus {
		p, err := c.Compile(ctx, cs.Input)
		if err != nil && !errors.Is(err, ErrNoProposal) {
			return 0, 0, fmt.Errorf("authority: evaluating case %q: %w", cs.Name, err)
		}
		want := pass.Scope(cs.Want).Dedupe()
		wanted += len(want)
		if p == nil {
			continue
		}
		for _, r := range p.Scopes {
			proposed++
			if want.Has(r.Scope) {
				hit++
			}
		}
	}
	precision, recall = 1, 1
	if proposed > 0 {
		precision = float64(hit) / float64(proposed)
	}
	if wanted > 0 {
		recall = float64(hit) / float64(wanted)
	}
	return precision, recall, nil
}
