package console_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testOP is a small but real OpenID provider for the tests: discovery,
// JWKS, an authorization endpoint with a login form, and a token endpoint
// that enforces the client secret, the redirect URI, single-use codes and
// PKCE (S256), and signs ES256 ID tokens. It is written here rather than
// built on zitadel/oidc's op package, whose storage interface would need
// some twenty methods for the same four endpoints.
type testOP struct {
	t        *testing.T
	issuer   string
	clientID string
	secret   string
	redirect string
	key      *ecdsa.PrivateKey
	now      func() time.Time

	mu       sync.Mutex
	users    map[string]opUser // login name -> claims
	codes    map[string]opCode
	tokens   int    // ID tokens issued
	badNonce bool   // sign the next ID token with a wrong nonce
	lastPKCE string // the code_verifier of the last token request
}

type opUser struct {
	Sub, Email, Name string
	Verified         bool
}

type opCode struct {
	user                             opUser
	redirect, nonce, challenge, meth string
}

func newTestOP(t *testing.T, now func() time.Time) *testOP {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testOP{t: t, key: key, now: now, clientID: "console", secret: "console-secret-0123456789",
		users: map[string]opUser{}, codes: map[string]opCode{}}
}

var opLogin = template.Must(template.New("login").Parse(`<!doctype html><html><head><meta name="viewport" content="width=device-width"><title>Test OP</title></head>
<body><h1>Sign in to the test provider</h1><form method="post" action="{{.Action}}">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<label>User <input id="op-user" name="user"></label> <button id="op-submit" type="submit">Sign in</button></form></body></html>`))

func (op *testOP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": op.issuer, "authorization_endpoint": op.issuer + "/authorize", "token_endpoint": op.issuer + "/token",
			"jwks_uri": op.issuer + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"}, "code_challenge_methods_supported": []string{"S256"},
		})
	case "/jwks":
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: op.key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	case "/authorize":
		op.authorize(w, r)
	case "/token":
		op.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (op *testOP) authorize(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	p := r.Form
	if p.Get("client_id") != op.clientID || p.Get("redirect_uri") != op.redirect || p.Get("response_type") != "code" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodGet {
		params := map[string]string{}
		for _, k := range []string{"client_id", "redirect_uri", "response_type", "state", "nonce", "code_challenge", "code_challenge_method", "scope"} {
			params[k] = p.Get(k)
		}
		_ = opLogin.Execute(w, map[string]any{"Action": op.issuer + "/authorize", "Params": params})
		return
	}
	op.mu.Lock()
	u, ok := op.users[p.Get("user")]
	code := rand.Text()
	if ok {
		op.codes[code] = opCode{user: u, redirect: p.Get("redirect_uri"), nonce: p.Get("nonce"),
			challenge: p.Get("code_challenge"), meth: p.Get("code_challenge_method")}
	}
	op.mu.Unlock()
	q := url.Values{"state": {p.Get("state")}}
	if ok {
		q.Set("code", code)
	} else {
		q.Set("error", "access_denied")
	}
	http.Redirect(w, r, op.redirect+"?"+q.Encode(), http.StatusSeeOther)
}

func (op *testOP) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if id != op.clientID || secret != op.secret {
		fail("invalid_client")
		return
	}
	op.mu.Lock()
	c, ok := op.codes[r.PostForm.Get("code")]
	delete(op.codes, r.PostForm.Get("code")) // single use
	verifier := r.PostForm.Get("code_verifier")
	op.lastPKCE = verifier
	bad := op.badNonce
	op.badNonce = false
	op.mu.Unlock()
	sum := sha256.Sum256([]byte(verifier))
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != c.redirect ||
		c.meth != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		fail("invalid_grant")
		return
	}
	nonce := c.nonce
	if bad {
		nonce = "not-the-nonce"
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: op.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		op.t.Error(err)
		return
	}
	now := op.now()
	raw, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": op.issuer, "sub": c.user.Sub, "aud": op.clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": nonce, "email": c.user.Email, "email_verified": c.user.Verified, "name": c.user.Name,
	}).Serialize()
	if err != nil {
		op.t.Error(err)
		return
	}
	op.mu.Lock()
	op.tokens++
	op.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + rand.Text(), "token_type": "Bearer", "expires_in": 300, "id_token": raw})
}
