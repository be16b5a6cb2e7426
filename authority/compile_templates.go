package authority

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jcs"
	"github.com/agentpass-go/agentpass/pass"
)

// ErrBadTemplates is wrapped by every error about a templates file or a
// template list.
var ErrBadTemplates = errors.New("authority: bad compile templates")

// Bounds of a templates file: it is operator input, but a typo must not
// produce a compiler that is slow on every request.
const (
	maxTemplatesFile = 1 << 20
	maxTemplates     = 1000
	maxKeywords      = 64  // per word list
	maxKeyword       = 64  // bytes
	maxRegexp        = 512 // bytes of a pattern
	maxSelectors     = 256 // per template
	maxTemplateList  = 64  // services, classes per template
	maxTemplateID    = 64  // bytes of an id or a version
)

// Template is an operator-authored rule from a kind of task to the scopes it
// needs. It matches when every condition it sets holds; at least one of
// All, Any, Regexp and Classes must be set.
type Template struct {
	// ID and Version name the template in every proposal it makes
	// ("ID@Version"), so a recorded grant can be traced to the exact text.
	ID      string `json:"id"`
	Version string `json:"version"`
	// Services restricts the template to these Service origins; empty means any.
	Services []string `json:"services,omitempty"`
	// Classes restricts the template to tasks tagged with one of these classes.
	Classes []string `json:"classes,omitempty"`
	// Tiers restricts the template to Harnesses of these trust tiers; the
	// task text and class come from the Harness, so a broad template can be
	// kept from Harnesses nobody vouches for.
	Tiers []dpop.Tier `json:"tiers,omitempty"`
	// All, Any and None are words of the task description (letters and
	// digits, matched case-insensitively): all of All, at least one of Any,
	// none of None.
	All  []string `json:"all,omitempty"`
	Any  []string `json:"any,omitempty"`
	None []string `json:"none,omitempty"`
	// Regexp must match the task description (RE2 syntax, at most 512 bytes).
	Regexp string `json:"regexp,omitempty"`
	// Scopes selects the proposed scopes among those the Service offers.
	Scopes []ScopeSelector `json:"scopes"`
	// Exclude names offered scopes to list as deliberately left out, with why.
	Exclude []ScopeSelector `json:"exclude,omitempty"`
	// Stages is an optional plan of 1 to 8 stages (names [a-z0-9_-]{1,32})
	// carried on the proposal, each stage's scope clamped to what the
	// template selected.
	Stages []pass.Stage `json:"stages,omitempty"`
}

// ScopeSelector selects offered scopes: by exact Name, or by Prefix and/or
// Suffix. Why is the reason shown to approvers (at most 256 bytes).
type ScopeSelector struct {
	Name   string `json:"name,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Suffix string `json:"suffix,omitempty"`
	Why    string `json:"why"`
}

func (s *ScopeSelector) matches(name string) bool {
	if s.Name != "" {
		return name == s.Name
	}
	return strings.HasPrefix(name, s.Prefix) && strings.HasSuffix(name, s.Suffix)
}

// Templates is the deterministic default Compiler: the first template that
// matches the task and selects at least one offered scope makes the
// proposal; with none, there is no proposal and a person decides. The same
// input always gives a byte-identical proposal. It is immutable and safe for
// concurrent use.
type Templates struct {
	version string
	list    []compiledTemplate
}

type compiledTemplate struct {
	Template
	source         string
	all, any, none []string
	re             *regexp.Regexp
}

// templatesFile is the JSON form read by ParseTemplates.
type templatesFile struct {
	Version   string     `json:"version"`
	Templates []Template `json:"templates"`
}

// ParseTemplates reads a templates file: a JSON object
// {"version": "...", "templates": [Template...]}, at most 1 MiB. Parsing is
// strict: unknown or duplicate members, trailing data and any invalid
// template are refused, so a typo fails at startup instead of silently
// matching nothing.
func ParseTemplates(data []byte) (*Templates, error) {
	var f templatesFile
	if err := decodeStrict(data, maxTemplatesFile, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTemplates, err)
	}
	return NewTemplates(f.Version, f.Templates)
}

// NewTemplates validates the templates and returns the compiler; version
// names the set in every proposal.
func NewTemplates(version string, list []Template) (*Templates, error) {
	if !validID(version) {
		return nil, fmt.Errorf("%w: version must be 1-%d letters, digits, '.', '_' or '-'", ErrBadTemplates, maxTemplateID)
	}
	if len(list) == 0 || len(list) > maxTemplates {
		return nil, fmt.Errorf("%w: need 1 to %d templates, got %d", ErrBadTemplates, maxTemplates, len(list))
	}
	t := &Templates{version: version, list: make([]compiledTemplate, 0, len(list))}
	ids := make(map[string]bool, len(list))
	for i := range list {
		c, err := compileTemplate(list[i])
		if err != nil {
			return nil, fmt.Errorf("%w: template %d: %w", ErrBadTemplates, i, err)
		}
		if ids[c.ID] {
			return nil, fmt.Errorf("%w: template %d: duplicate id %q", ErrBadTemplates, i, c.ID)
		}
		ids[c.ID] = true
		t.list = append(t.list, c)
	}
	return t, nil
}

func compileTemplate(tp Template) (compiledTemplate, error) {
	c := compiledTemplate{Template: tp}
	// Copy the slices, so the caller's later edits cannot change a compiler
	// that is already in use.
	c.Services = slices.Clone(tp.Services)
	c.Classes = slices.Clone(tp.Classes)
	c.Tiers = slices.Clone(tp.Tiers)
	c.Scopes = slices.Clone(tp.Scopes)
	c.Exclude = slices.Clone(tp.Exclude)
	c.Stages = cloneStages(tp.Stages)
	if !validID(tp.ID) || !validID(tp.Version) {
		return c, fmt.Errorf("id and version must be 1-%d letters, digits, '.', '_' or '-'", maxTemplateID)
	}
	c.source = tp.ID + "@" + tp.Version
	if len(tp.Services) > maxTemplateList || len(tp.Classes) > maxTemplateList || len(tp.Tiers) > 3 {
		return c, errors.New("too many services, classes or tiers")
	}
	for _, s := range tp.Services {
		if s == "" || len(s) > maxScopeName || !utf8.ValidString(s) {
			return c, errors.New("invalid service origin")
		}
	}
	for _, s := range tp.Classes {
		if !validID(s) {
			return c, fmt.Errorf("invalid class %q", s)
		}
	}
	for _, tier := range tp.Tiers {
		if tier != dpop.TierAttested && tier != dpop.TierRegistered && tier != dpop.TierUnverified {
			return c, fmt.Errorf("unknown tier %q", tier)
		}
	}
	var err error
	if c.all, err = keywords(tp.All); err != nil {
		return c, err
	}
	if c.any, err = keywords(tp.Any); err != nil {
		return c, err
	}
	if c.none, err = keywords(tp.None); err != nil {
		return c, err
	}
	if tp.Regexp != "" {
		if len(tp.Regexp) > maxRegexp {
			return c, fmt.Errorf("regexp longer than %d bytes", maxRegexp)
		}
		if c.re, err = regexp.Compile(tp.Regexp); err != nil {
			return c, fmt.Errorf("regexp: %w", err)
		}
	}
	if len(c.all) == 0 && len(c.any) == 0 && c.re == nil && len(c.Classes) == 0 {
		return c, errors.New("no condition on the task (set all, any, regexp or classes)")
	}
	if len(tp.Scopes) == 0 || len(tp.Scopes) > maxSelectors || len(tp.Exclude) > maxSelectors {
		return c, fmt.Errorf("need 1 to %d scope selectors and at most %d exclusions", maxSelectors, maxSelectors)
	}
	for _, sel := range slices.Concat(tp.Scopes, tp.Exclude) {
		if err := checkSelector(sel); err != nil {
			return c, err
		}
	}
	if tp.Stages != nil {
		if err := checkStages(tp.Stages); err != nil {
			return c, err
		}
	}
	return c, nil
}

func checkSelector(s ScopeSelector) error {
	switch {
	case s.Name != "" && (s.Prefix != "" || s.Suffix != ""):
		return errors.New("a selector sets either name or prefix/suffix")
	case s.Name == "" && s.Prefix == "" && s.Suffix == "":
		return errors.New("a selector needs a name, a prefix or a suffix")
	case s.Name != "" && !validScopeName(s.Name):
		return fmt.Errorf("invalid scope name %q", s.Name)
	case s.Name == pass.Wildcard || s.Prefix == pass.Wildcard || s.Suffix == pass.Wildcard:
		return errors.New("a selector cannot name the wildcard")
	case len(s.Prefix) > maxScopeName || len(s.Suffix) > maxScopeName:
		return errors.New("prefix or suffix too long")
	case strings.TrimSpace(s.Why) == "" || len(s.Why) > maxWhy || !utf8.ValidString(s.Why):
		return fmt.Errorf("selector %q needs a why of 1 to %d bytes", s.Name+s.Prefix+"…"+s.Suffix, maxWhy)
	}
	return nil
}

// keywords lower-cases and checks a word list: each word is what the task
// tokenizer can produce (letters and digits only).
func keywords(in []string) ([]string, error) {
	if len(in) > maxKeywords {
		return nil, fmt.Errorf("more than %d words in a list", maxKeywords)
	}
	out := make([]string, 0, len(in))
	for _, w := range in {
		if w == "" || len(w) > maxKeyword || !utf8.ValidString(w) || strings.IndexFunc(w, notWordRune) >= 0 {
			return nil, fmt.Errorf("keyword %q must be 1-%d letters or digits", w, maxKeyword)
		}
		out = append(out, strings.ToLower(w))
	}
	return out, nil
}

func notWordRune(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }

// validID reports whether s is 1-64 ASCII letters, digits, '.', '_' or '-'.
func validID(s string) bool {
	if s == "" || len(s) > maxTemplateID {
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

// taskWords returns the set of lower-cased words of the description.
func taskWords(s string) map[string]struct{} {
	words := make(map[string]struct{}, 64)
	for _, w := range strings.FieldsFunc(s, notWordRune) {
		words[strings.ToLower(w)] = struct{}{}
	}
	return words
}

func (c *compiledTemplate) matches(in *CompileInput, words map[string]struct{}) bool {
	if len(c.Services) > 0 && !slices.Contains(c.Services, in.Service) {
		return false
	}
	if len(c.Tiers) > 0 && !slices.Contains(c.Tiers, in.Tier) {
		return false
	}
	if len(c.Classes) > 0 && !slices.Contains(c.Classes, in.TaskClass) {
		return false
	}
	for _, w := range c.none {
		if _, ok := words[w]; ok {
			return false
		}
	}
	for _, w := range c.all {
		if _, ok := words[w]; !ok {
			return false
		}
	}
	if len(c.any) > 0 && !slices.ContainsFunc(c.any, func(w string) bool { _, ok := words[w]; return ok }) {
		return false
	}
	return c.re == nil || c.re.MatchString(in.Task)
}

// Compile implements Compiler.
func (t *Templates) Compile(ctx context.Context, in CompileInput) (*Proposal, error) {
	if t == nil {
		return nil, ErrNoProposal
	}
	if err := checkInput(&in); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	words := taskWords(in.Task)
	for i := range t.list {
		c := &t.list[i]
		if !c.matches(&in, words) {
			continue
		}
		cands := c.selectScopes(in.Available)
		if len(cands) == 0 {
			continue
		}
		var extra []Rationale
		for _, sel := range c.Exclude {
			for _, a := range in.Available {
				if sel.matches(a.Name) {
					extra = append(extra, Rationale{Scope: a.Name, Basis: BasisTemplate, Source: c.source, Why: sel.Why})
				}
			}
		}
		for _, r := range in.Requested {
			extra = append(extra, Rationale{Scope: r, Why: "not selected by template " + c.source})
		}
		p, err := sanitize(&in, cands, extra, "templates", t.version)
		if errors.Is(err, ErrNoProposal) {
			continue
		}
		if p != nil {
			p.Stages = clampStages(c.Stages, p.Names())
		}
		return p, err
	}
	return nil, ErrNoProposal
}

// selectScopes returns the offered scopes the template selects, in selector
// order and then in the Service's order, once each.
func (c *compiledTemplate) selectScopes(avail []AvailableScope) []Rationale {
	var out []Rationale
	seen := make(map[string]struct{})
	for si := range c.Scopes {
		sel := &c.Scopes[si]
		for _, a := range avail {
			if _, dup := seen[a.Name]; dup || !sel.matches(a.Name) {
				continue
			}
			seen[a.Name] = struct{}{}
			out = append(out, Rationale{Scope: a.Name, Basis: BasisTemplate, Source: c.source, Why: sel.Why})
		}
	}
	return out
}

// decodeStrict decodes one JSON value of at most limit bytes into v,
// refusing unknown members, duplicate members, invalid UTF-8, numbers that
// are not exact integers, and trailing data.
func decodeStrict(data []byte, limit int, v any) error {
	if len(data) > limit {
		return fmt.Errorf("longer than %d bytes", limit)
	}
	if _, err := jcs.Canonicalize(data); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
