package service

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// credentialOfReference is credentialOf's reading of the Authorization
// header without its fast paths: split at the first space, trim the
// token. long reports a token of ours over 512 bytes.
func credentialOfReference(h string) (kind CredentialKind, tok string, long bool) {
	scheme, tok, _ := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	switch {
	case !strings.HasPrefix(tok, prefixToken):
		return "", "", false
	case len(tok) > 512:
		return "", "", true
	case strings.EqualFold(scheme, "Bearer"):
		return KindBearer, tok, false
	case strings.EqualFold(scheme, "DPoP"):
		return KindDPoP, tok, false
	}
	return "", "", false
}

// FuzzCredentialOf: the fast paths of credentialOf (the usual "Bearer "
// spelling, a token with nothing to trim) read every header as the plain
// split-and-trim does.
func FuzzCredentialOf(f *testing.F) {
	for _, h := range []string{"Bearer apt_abc", "bearer apt_abc", "Bearer  apt_abc ", "Bearer apt_abc\u00a0",
		"Bearer apt_abc\u0085", "DPoP apt_x", "Bearer \tapt_x\t", "Bearer apt_", "Bearer", "Bearer ", "Basic apt_x",
		"Bearer apt_abc\x7f", "Bearer apt_" + strings.Repeat("a", 600),
		"Bearer apt_" + strings.Repeat("a", 508), "Bearer apt_" + strings.Repeat("a", 509)} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		kind, tok, err := credentialOf(r)
		wantKind, wantTok, long := credentialOfReference(h)
		switch {
		case long:
			if err == nil || errors.Is(err, ErrNoCredential) {
				t.Fatalf("credentialOf(%q) = %q, %v; want a malformed header", h, kind, err)
			}
		case wantKind == "":
			if !errors.Is(err, ErrNoCredential) {
				t.Fatalf("credentialOf(%q) = %q, %q, %v; want no credential", h, kind, tok, err)
			}
		case err != nil || kind != wantKind || tok != wantTok:
			t.Fatalf("credentialOf(%q) = %q, %q, %v; want %q, %q", h, kind, tok, err, wantKind, wantTok)
		}
	})
}

// heldUnder compares a credential's key with a SHA-256 eight bytes at a
// time: equal only for the same 32 bytes, whichever byte differs.
func TestHeldUnder(t *testing.T) {
	sum := secret.Sum("apt_token")
	c := &memCred{key: credKey(secret.Hash("apt_token"))}
	if !c.heldUnder(&sum) {
		t.Fatal("a credential is not held under its own SHA-256")
	}
	for i := range sum {
		other := sum
		other[i] ^= 0x80
		if c.heldUnder(&other) {
			t.Fatalf("held under a SHA-256 that differs in byte %d", i)
		}
	}
	for _, key := range []string{"", "\x00" + secret.Hash("apt_token"), string(sum[:]), credKey(secret.Hash("apt_token"))[:32]} {
		if (&memCred{key: key}).heldUnder(&sum) {
			t.Fatalf("key %q of another form is held under the SHA-256", key)
		}
	}
}

// RequireScope finds the middleware's delegation whether its context is
// the request's own or wrapped by a later one (a handler's value, a
// span), and refuses a request with neither.
func TestRequireScopeFindsDelegation(t *testing.T) {
	d := &Delegation{Scope: pass.Scope{"tickets:read"}}
	type otherKey struct{}
	h := RequireScope("tickets:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tt := range []struct {
		name string
		req  func(r *http.Request) *http.Request
		want int
	}{
		{"own", func(r *http.Request) *http.Request { return serve(r, d) }, http.StatusNoContent},
		{"wrapped", func(r *http.Request) *http.Request {
			r = serve(r, d)
			return r.WithContext(context.WithValue(r.Context(), otherKey{}, 1))
		}, http.StatusNoContent},
		{"WithDelegation", func(r *http.Request) *http.Request {
			return r.WithContext(WithDelegation(r.Context(), d))
		}, http.StatusNoContent},
		{"none", func(r *http.Request) *http.Request { return r }, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tt.req(httptest.NewRequest(http.MethodGet, "https://app.example/api", nil)))
			if w.Code != tt.want {
				t.Errorf("status %d, want %d", w.Code, tt.want)
			}
		})
	}
}
