package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/agentpass-go/agentpass/pass"
)

// Identity is who sent a request to the console, as the operator's
// Authenticator established it.
type Identity struct {
	// Subject is recorded as the author of every decision, revocation and
	// stage move this identity makes, e.g. "human:alex@corp.test" or
	// "api:deploy-bot". It must be stable and unique per person or
	// credential, because it is the audit trail's answer to "who".
	Subject string
	// Name is shown in the console's header. If empty, Subject.
	Name string
}

// An Authenticator is the operator's login: the console calls it for every
// request, pages, forms and admin API alike, so that no decision is made by
// a name someone typed. Implementations must be safe for concurrent use.
type Authenticator interface {
	// Authenticate returns who sent r, or an error wrapping
	// ErrUnauthenticated when r carries no valid credential.
	Authenticate(r *http.Request) (Identity, error)
	// MayDecide reports whether id may see and decide the requests and
	// delegations of user (an e-mail address): typically whether id
	// administers the user's domain.
	MayDecide(id Identity, user string) bool
}

// ErrUnauthenticated reports a request without a valid credential.
var ErrUnauthenticated = errors.New("console: not signed in")

type sessionKey struct{}

// session is what the console established for one request: the identity,
// and the authenticator that vouched for it (asked again for MayDecide).
type session struct {
	id   Identity
	auth Authenticator
}

// identityFrom returns the identity the console authenticated for the
// request of ctx.
func identityFrom(ctx context.Context) (Identity, bool) {
	s, ok := ctx.Value(sessionKey{}).(session)
	return s.id, ok
}

// may reports whether the caller of r may see and decide for user; false
// without a session.
func (p *Console) may(r *http.Request, user string) bool {
	s, ok := r.Context().Value(sessionKey{}).(session)
	return ok && s.auth.MayDecide(s.id, user)
}

// userOf returns the user of a mission or authorization id.
func (p *Console) userOf(ctx context.Context, id string) (string, error) {
	if strings.HasPrefix(id, pass.MissionIDPrefix) {
		req, err := p.a.Request(ctx, id)
		if err != nil {
			return "", err
		}
		return req.User, nil
	}
	az, err := p.a.Authorization(ctx, id)
	if err != nil {
		return "", err
	}
	return az.User, nil
}

// Token is one credential of a token authenticator.
type Token struct {
	// Secret is the bearer token, at least 8 bytes (use 32 random ones).
	Secret string
	// Subject is recorded with every change made with this token, e.g.
	// "api:deploy-bot". Required.
	Subject string
	// Domains lists the user domains the token may decide for; "*" means
	// every domain. Empty means none.
	Domains []string
}

// tokenAuthenticator authenticates "Authorization: Bearer" tokens.
type tokenAuthenticator struct {
	hashes [][32]byte
	tokens []Token
}

// NewTokenAuthenticator returns an Authenticator for scripts calling the
// admin API with "Authorization: Bearer <secret>". Secrets are compared as
// SHA-256 hashes in constant time, so neither their length nor a prefix
// leaks through timing.
func NewTokenAuthenticator(tokens ...Token) (Authenticator, error) {
	if len(tokens) == 0 {
		return nil, errors.New("console: NewTokenAuthenticator needs at least one token")
	}
	ta := &tokenAuthenticator{}
	for i, t := range tokens {
		if len(t.Secret) < 8 {
			return nil, fmt.Errorf("console: token %d: Secret is shorter than 8 bytes", i)
		}
		if strings.TrimSpace(t.Subject) == "" {
			return nil, fmt.Errorf("console: token %d: Subject is required", i)
		}
		ta.hashes = append(ta.hashes, sha256.Sum256([]byte(t.Secret)))
		t.Secret = ""
		t.Domains = slices.Clone(t.Domains)
		ta.tokens = append(ta.tokens, t)
	}
	return ta, nil
}

func (ta *tokenAuthenticator) Authenticate(r *http.Request) (Identity, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return Identity{}, ErrUnauthenticated
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	found := -1
	for i := range ta.hashes { // every hash compared: the time does not tell which matched
		if subtle.ConstantTimeCompare(got[:], ta.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, ErrUnauthenticated
	}
	return Identity{Subject: ta.tokens[found].Subject}, nil
}

func (ta *tokenAuthenticator) MayDecide(id Identity, user string) bool {
	for _, t := range ta.tokens {
		if t.Subject == id.Subject {
			return domainIn(t.Domains, user)
		}
	}
	return false
}

// domainIn reports whether user's e-mail domain is listed ("*" lists all).
func domainIn(domains []string, user string) bool {
	i := strings.LastIndexByte(user, '@')
	if i < 0 {
		return false
	}
	dom := user[i+1:]
	for _, d := range domains {
		if d == "*" || strings.EqualFold(d, dom) {
			return true
		}
	}
	return false
}
