package console_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/console"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// proxyAuth trusts the identity a single sign-on proxy in front of the
// console asserts, and lets each person decide for their own domain only.
type proxyAuth struct{}

func (proxyAuth) Authenticate(r *http.Request) (console.Identity, error) {
	email := r.Header.Get("X-Verified-Email") // set by the proxy, stripped from client requests
	if email == "" {
		return console.Identity{}, fmt.Errorf("no proxy identity: %w", console.ErrUnauthenticated)
	}
	return console.Identity{Subject: "human:" + email}, nil
}

func (proxyAuth) MayDecide(id console.Identity, user string) bool {
	_, idDomain, _ := strings.Cut(id.Subject, "@")
	_, userDomain, _ := strings.Cut(user, "@")
	return idDomain != "" && idDomain == userDomain
}

// Mount the console for people behind the operator's login, and its admin
// API for a deployment script holding a token.
func ExampleNew() {
	keys, _ := dpop.GenerateKeySet()
	a, err := authority.New(authority.Config{
		Identifier: "https://idp.corp.example", TrustMode: pass.TrustEnterprise, Keys: keys,
	})
	if err != nil {
		panic(err)
	}
	api, err := console.NewTokenAuthenticator(console.Token{
		Secret: "a-long-random-secret-from-the-vault", Subject: "api:deploy-bot", Domains: []string{"corp.example"},
	})
	if err != nil {
		panic(err)
	}
	c, err := console.New(console.Config{
		Authority: a, BaseURL: "https://idp.corp.example/approvals",
		Authenticator: proxyAuth{}, APIAuthenticator: api,
	})
	if err != nil {
		panic(err)
	}
	// http.Handle("/approvals/", c)

	for _, token := range []string{"wrong-token-1234", "a-long-random-secret-from-the-vault"} {
		req := httptest.NewRequest(http.MethodGet, "https://idp.corp.example/approvals/api/pending", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, req)
		var out struct {
			Pending []console.APIRequest `json:"pending"`
			pass.ErrorResponse
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		fmt.Println(rec.Code, out.Error.Code, len(out.Pending), "pending")
	}
	_, err = proxyAuth{}.Authenticate(httptest.NewRequest(http.MethodGet, "/", nil))
	fmt.Println(errors.Is(err, console.ErrUnauthenticated))
	// Output:
	// 401 unauthorized 0 pending
	// 200  0 pending
	// true
}
