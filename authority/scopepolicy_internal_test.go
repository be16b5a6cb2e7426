package authority

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

// scope_basis in each view: operators see every reason and exclusion; the
// Harness sees reasons only about scopes it requested or was granted, and
// exclusions only of scopes it requested (a sanitizer drop of another
// scope would tell it what else the user holds); a Service sees the
// reasons for the granted scopes only.
func TestScopeBasisViews(t *testing.T) {
	r := &Request{
		RequestedScope: pass.Scope{"tickets:read", "tickets:delete"},
		ScopeDecision:  pass.ScopeNarrowed,
		Proposal: &Proposal{
			Scopes: []Rationale{
				{Scope: "tickets:comment", Basis: BasisModel, Why: "replies"},
				{Scope: "tickets:read", Basis: BasisTemplate, Source: "triage@3", Why: "reads"},
			},
			Excluded: []Rationale{
				{Scope: "billing:admin", Why: whyNotOffered},
				{Scope: "tickets:delete", Basis: BasisTemplate, Source: "triage@3", Why: "removes nothing"},
			},
			Compiler: "templates", Version: "v1", InputSHA256: "abc",
			Stages: []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}}},
		},
		Decision: &Evidence{Status: pass.StatusApproved, Scope: pass.Scope{"tickets:read"}, ScopeDecision: pass.ScopeNarrowed},
	}
	comment := pass.ScopeRationale{Scope: "tickets:comment", Basis: "model", Why: "replies", Untrusted: true}
	read := pass.ScopeRationale{Scope: "tickets:read", Basis: "template", Source: "triage@3", Why: "reads"}
	del := pass.ScopeRationale{Scope: "tickets:delete", Basis: "template", Source: "triage@3", Why: "removes nothing"}
	ref := &pass.CompilerRef{ID: "templates", Version: "v1"}
	for _, tt := range []struct {
		name string
		v    missionView
		want *pass.ScopeBasis
	}{
		{"operator", viewOperator, &pass.ScopeBasis{Requested: r.RequestedScope, Decision: pass.ScopeNarrowed, Compiler: ref, InputSHA256: "abc",
			Rationale: []pass.ScopeRationale{comment, read},
			Excluded:  []pass.ScopeRationale{{Scope: "billing:admin", Why: whyNotOffered}, del},
			Stages:    r.Proposal.Stages}},
		{"harness", viewHarness, &pass.ScopeBasis{Requested: r.RequestedScope, Decision: pass.ScopeNarrowed, Compiler: ref, InputSHA256: "abc",
			Rationale: []pass.ScopeRationale{read}, Excluded: []pass.ScopeRationale{del}}},
		{"service", viewService, &pass.ScopeBasis{Requested: pass.Scope{}, Decision: pass.ScopeNarrowed, Rationale: []pass.ScopeRationale{read}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, scopeBasis(r, tt.v)); d != "" {
				t.Errorf("scope_basis (-want +got):\n%s", d)
			}
		})
	}
	if scopeBasis(&Request{}, viewOperator) != nil {
		t.Error("a v0.1 request has a scope_basis")
	}
}

// Request.Diff compares what was named with the proposal; "*" and an
// empty request stand for the proposal itself.
func TestRequestDiff(t *testing.T) {
	p := &Proposal{Scopes: []Rationale{{Scope: "a"}, {Scope: "b"}}}
	for _, tt := range []struct {
		name      string
		requested pass.Scope
		proposal  *Proposal
		want      Diff
	}{
		{"within", pass.Scope{"a"}, p, Diff{Over: pass.Scope{}, Under: pass.Scope{"b"}}},
		{"over", pass.Scope{"a", "c", "c"}, p, Diff{Over: pass.Scope{"c"}, Under: pass.Scope{"b"}}},
		{"nothing requested", nil, p, Diff{Over: pass.Scope{}, Under: pass.Scope{}}},
		{"wildcard", pass.Scope{"*"}, p, Diff{Over: pass.Scope{}, Under: pass.Scope{}}},
		{"wildcard and more", pass.Scope{"*", "c"}, p, Diff{Over: pass.Scope{"c"}, Under: pass.Scope{}}},
		{"no proposal", pass.Scope{"a"}, nil, Diff{Over: pass.Scope{"a"}, Under: pass.Scope{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{RequestedScope: tt.requested, Proposal: tt.proposal}
			if d := cmp.Diff(tt.want, r.Diff()); d != "" {
				t.Errorf("Diff (-want +got):\n%s", d)
			}
		})
	}
}

type waitCompiler struct{}

func (waitCompiler) Compile(ctx context.Context, _ CompileInput) (*Proposal, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

type ignoreCompiler struct{ release chan struct{} }

func (c ignoreCompiler) Compile(context.Context, CompileInput) (*Proposal, error) {
	<-c.release // ignores its context
	return &Proposal{Scopes: []Rationale{{Scope: "a", Basis: BasisRule, Why: "late"}}}, nil
}

// C6 on a fake clock: compilation ends at exactly CompileTimeout, also
// when the compiler ignores its context, and its late answer is dropped.
func TestCompileTimeoutFakeClock(t *testing.T) {
	in := CompileInput{Service: "https://svc.example", Task: "t", Available: []AvailableScope{{Name: "a"}}}
	for _, ignores := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			var c Compiler = waitCompiler{}
			if ignores {
				c = ignoreCompiler{release: make(chan struct{})} // made in the bubble, so blocking on it is durable
			}
			a := &Authority{compiler: c, compileTimeout: 2 * time.Second, log: slog.New(slog.DiscardHandler)}
			start := time.Now()
			p, err := a.compile(t.Context(), &in)
			if p != nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("compile = %+v, %v; want the deadline", p, err)
			}
			if d := time.Since(start); d != 2*time.Second {
				t.Errorf("compile took %v, want exactly 2s", d)
			}
			if ic, ok := c.(ignoreCompiler); ok {
				close(ic.release)
			}
			synctest.Wait()
		})
	}
}

type panicCompiler struct{}

func (panicCompiler) Compile(context.Context, CompileInput) (*Proposal, error) { panic("boom") }

// A compiler that panics, or answers nothing, is a failed compilation,
// never a crash of the issuance endpoint.
func TestCompileMisbehaving(t *testing.T) {
	in := CompileInput{Service: "https://svc.example", Task: "t", Available: []AvailableScope{{Name: "a"}}}
	for _, c := range []Compiler{panicCompiler{}, compilerOf(nil, nil)} {
		a := &Authority{compiler: c, compileTimeout: time.Second, log: slog.New(slog.DiscardHandler)}
		if p, err := a.compile(t.Context(), &in); p != nil || err == nil || errors.Is(err, ErrNoProposal) {
			t.Errorf("compile with %T = %+v, %v; want a failure", c, p, err)
		}
	}
}

type compilerFunc func() (*Proposal, error)

func (f compilerFunc) Compile(context.Context, CompileInput) (*Proposal, error) { return f() }

func compilerOf(p *Proposal, err error) Compiler {
	return compilerFunc(func() (*Proposal, error) { return p, err })
}
