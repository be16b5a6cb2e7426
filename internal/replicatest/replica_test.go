package replicatest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// pathOf returns the path of an endpoint URL.
func pathOf(t *testing.T, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

// bothServed fails unless every replica served some of hits.
func bothServed(t *testing.T, what string, hits []int) {
	t.Helper()
	for i, n := range hits {
		if n == 0 {
			t.Errorf("%s: replica %d served nothing (hits %v): the balancer did not spread the load", what, i, hits)
		}
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// Issue 9 item 4; S-RED-9, A-VAL-4 (single use), S-RED-13 (nothing minted
// twice): 100 approved passes, each presented 10 times at once with a fresh
// valid harness proof, 5 times at each of two Service replicas, which
// validate at two Authority replicas round-robin, all on one PostgreSQL.
// Exactly one presentation of each pass yields a token; the 900 others are
// refused with 409 agentpass_consumed. (30 passes under -race.)
func TestReplicasSingleUse(t *testing.T) {
	passes, presentations := 100, 10
	if raceEnabled {
		// Under the race detector 1,000 concurrent redemptions take about
		// 45 s on 2 cores, every one finishing near the end (past the
		// clients' timeouts); 300 keep the race coverage within budget.
		passes = 30
	}
	d := deploy(t, options{replicas: 2, postgres: true})
	ctx := t.Context()

	grants, err := d.acquire(ctx, passes, pass.BearerToken)
	if err != nil {
		t.Fatal(err)
	}
	// Issuance, status reads and resolution went through both replicas:
	// a request created at one Authority replica was read at the other.
	bothServed(t, "issuance", d.authLB.Hits("/requests"))
	resolve := pathOf(t, d.services[0].Configuration().Endpoints.ResolveAuthorities)
	bothServed(t, "resolution", d.svcLB.Hits(resolve))

	type attempt struct {
		pass, replica int
		req           pass.RedemptionRequest
	}
	attempts := make([]attempt, 0, passes*presentations)
	for p, g := range grants {
		for k := range presentations {
			req, err := d.redemption(g)
			if err != nil {
				t.Fatal(err)
			}
			attempts = append(attempts, attempt{pass: p, replica: k % 2, req: req})
		}
	}
	// The presentations of one pass are released together, so they race;
	// at most inFlight passes race at once, so that on a loaded machine no
	// redemption waits past the Service's call timeout behind a thousand
	// others (the whole batch at once flaked under load).
	inFlight := 16
	if raceEnabled {
		inFlight = 6
	}
	order := rand.Perm(passes)
	type result struct {
		tok *pass.BearerTokenResponse
		err error
	}
	results := make([]result, len(attempts))
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	began := time.Now()
	for _, p := range order {
		sem <- struct{}{}
		start := make(chan struct{})
		var gwg sync.WaitGroup
		for k := range presentations {
			i := p*presentations + k
			gwg.Go(func() {
				<-start
				tok, err := d.redeem(ctx, attempts[i].replica, attempts[i].req)
				results[i] = result{tok, err}
			})
		}
		close(start)
		wg.Go(func() {
			gwg.Wait()
			<-sem
		})
	}
	wg.Wait()
	elapsed := time.Since(began)

	tokens := make(map[int][]string)
	var unexpected []string
	for i, r := range results {
		if r.err == nil {
			tokens[attempts[i].pass] = append(tokens[attempts[i].pass], r.tok.BearerToken)
			continue
		}
		if status, code := errorCode(r.err); status != http.StatusConflict || code != pass.CodeAgentPassConsumed {
			unexpected = append(unexpected, fmt.Sprintf("pass %d at replica %d: %v", attempts[i].pass, attempts[i].replica, r.err))
		}
	}
	ok := 0
	for p := range passes {
		switch n := len(tokens[p]); n {
		case 1:
			ok++
		default:
			t.Errorf("pass %d yielded %d tokens, want exactly 1", p, n)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("%d refusals other than 409 %s, e.g. %s", len(unexpected), pass.CodeAgentPassConsumed, strings.Join(unexpected[:min(5, len(unexpected))], "; "))
	}
	t.Logf("%d redemptions (%d racing per pass, %d passes at once) over 2 Service and 2 Authority replicas in %v: %d succeeded, %d refused as consumed",
		len(attempts), presentations, inFlight, elapsed.Round(time.Millisecond), ok, len(attempts)-ok-len(unexpected))

	// Every presentation reached its Service replica; the validations were
	// spread over both Authority replicas.
	redeemPath := pathOf(t, d.services[0].Configuration().Endpoints.RedeemBearerToken)
	if got := d.svcLB.Hits(redeemPath); got[0] != len(attempts)/2 || got[1] != len(attempts)/2 {
		t.Errorf("redemptions per Service replica = %v, want %d each", got, len(attempts)/2)
	}
	validations := d.authLB.Hits("/validate")
	bothServed(t, "validation", validations)
	if sum(validations) != len(attempts) {
		t.Errorf("validations = %v (sum %d), want %d: every presentation asks the Authority", validations, sum(validations), len(attempts))
	}

	// The Authority holds exactly one authorization per pass, whichever
	// replica is asked.
	for i, a := range d.authorities {
		auths, err := a.Authorizations(ctx, authority.ListOptions{Now: d.clock.Now(), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(auths) != passes {
			t.Errorf("Authority replica %d lists %d authorizations, want %d", i, len(auths), passes)
		}
	}

	// Each token works at both Service replicas, for its own delegation.
	ids := make(map[string]int)
	for p, toks := range tokens {
		if len(toks) == 0 {
			continue
		}
		var first string
		for r := range 2 {
			w, err := d.call(ctx, r, bearer(toks[0]))
			if err != nil {
				t.Fatalf("token of pass %d at Service replica %d: %v", p, r, err)
			}
			if w.User != user || w.Agent != harnessID || w.Credential != service.KindBearer {
				t.Errorf("token of pass %d at replica %d authenticates %+v", p, r, w)
			}
			if first == "" {
				first = w.AuthorizationID
			} else if w.AuthorizationID != first {
				t.Errorf("token of pass %d: replicas disagree on its delegation (%s, %s)", p, first, w.AuthorizationID)
			}
		}
		ids[first]++
	}
	if len(ids) != passes {
		t.Errorf("%d distinct delegations behind %d tokens, want %d", len(ids), len(tokens), passes)
	}
}

// Issue 9 item 4; S-AUTHZ-1..6, A-AUTHZ-*: a revocation made through
// Authority replica 0 is enforced by both Service replicas at their next
// authorization check. Until then a replica serves on its last successful
// check (S-AUTHZ-5); the check interval bounds the delay, and with the
// shared store one replica's finding (404 -> invalidated) is seen at once
// by the other.
func TestReplicasRevocation(t *testing.T) {
	const interval = 10 * time.Second
	d := deploy(t, options{replicas: 2, postgres: true, checkInterval: interval})
	ctx := t.Context()

	grants, err := d.acquire(ctx, 3, pass.BearerToken)
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, len(grants))
	ids := make([]string, len(grants))
	for i, g := range grants {
		tok, err := d.harness.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
		if err != nil {
			t.Fatalf("redeem %d: %v", i, err)
		}
		toks[i] = tok.Value()
		for r := range 2 {
			w, err := d.call(ctx, r, bearer(toks[i]))
			if err != nil {
				t.Fatalf("token %d at Service replica %d before revocation: %v", i, r, err)
			}
			ids[i] = w.AuthorizationID
		}
	}

	// Revoke delegations 0 and 1 through Authority replica 0; replica 1
	// sees it at once (shared store). Delegation 2 is the control.
	for _, i := range []int{0, 1} {
		if _, err := d.authorities[0].Revoke(ctx, ids[i], "admin@corp.test", "replica test"); err != nil {
			t.Fatalf("revoke %d: %v", i, err)
		}
		az, err := d.authorities[1].Authorization(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if st := az.StateAt(d.clock.Now()); st != pass.DelegationRevoked {
			t.Errorf("Authority replica 1 sees delegation %d as %q, want revoked", i, st)
		}
	}

	// Within the check interval both Service replicas serve on the last
	// check (S-AUTHZ-5): the revocation takes effect at the next check.
	for i := range toks {
		for r := range 2 {
			if _, err := d.call(ctx, r, bearer(toks[i])); err != nil {
				t.Errorf("token %d at replica %d inside the check interval: %v", i, r, err)
			}
		}
	}

	checks := sum(d.authLB.Hits("/authorization-check"))
	d.clock.Advance(interval + time.Second)
	// Delegation 0 is next used at Service replica 0, delegation 1 at
	// replica 1: each replica's own check finds the revocation, and the
	// other replica refuses too.
	for i, order := range [][]int{{0, 1}, {1, 0}} {
		for _, r := range order {
			_, err := d.call(ctx, r, bearer(toks[i]))
			if status, code := errorCode(err); status != http.StatusUnauthorized || code != pass.CodeDelegationRevoked {
				t.Errorf("revoked delegation %d at Service replica %d: %v, want 401 %s", i, r, err, pass.CodeDelegationRevoked)
			}
		}
	}
	for r := range 2 {
		if _, err := d.call(ctx, r, bearer(toks[2])); err != nil {
			t.Errorf("control delegation at Service replica %d after the check: %v", r, err)
		}
	}
	if got := sum(d.authLB.Hits("/authorization-check")) - checks; got < 3 {
		t.Errorf("%d authorization checks after the interval, want at least 3 (one per delegation)", got)
	}
}

// Issue 9 item 4; S-BRW-6..9 (one-time initialization): 100 concurrent
// uses of one initialization token, alternating between the two Service
// replicas, create exactly one browser session; the others are refused with
// 410 init_token_used. The session works at both replicas.
func TestReplicasInitToken(t *testing.T) {
	const visits = 100
	d := deploy(t, options{replicas: 2, postgres: true})
	ctx := t.Context()

	grants, err := d.acquire(ctx, 1, pass.BrowserSession)
	if err != nil {
		t.Fatal(err)
	}
	init, err := d.harness.RedeemBrowserSession(ctx, grants[0], harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ir, err := init.Take()
	if err != nil {
		t.Fatal(err)
	}
	if ir.Method != http.MethodPost {
		t.Fatalf("initialization method %s, want POST", ir.Method)
	}
	form := url.Values{}
	for k, v := range ir.FormFields {
		form.Set(k, v)
	}
	browser := *d.client
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	type visit struct {
		status  int
		code    pass.Code
		session *http.Cookie
		err     error
	}
	out := make([]visit, visits)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, ir.URL, strings.NewReader(form.Encode()))
			if err != nil {
				out[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(pinHeader, fmt.Sprint(i%2))
			<-start
			resp, err := browser.Do(req)
			if err != nil {
				out[i].err = err
				return
			}
			defer resp.Body.Close()
			out[i].status = resp.StatusCode
			for _, c := range resp.Cookies() {
				if c.Name == service.SessionCookie {
					out[i].session = c
				}
			}
			if resp.StatusCode != http.StatusSeeOther {
				raw := make([]byte, 4<<10)
				n, _ := resp.Body.Read(raw)
				out[i].code = pass.ErrorFromResponse(resp.StatusCode, raw[:n]).Code
			}
		})
	}
	close(start)
	wg.Wait()

	var sessions []*http.Cookie
	var unexpected []string
	for i, v := range out {
		switch {
		case v.err != nil:
			unexpected = append(unexpected, fmt.Sprintf("visit %d: %v", i, v.err))
		case v.status == http.StatusSeeOther && v.session != nil:
			sessions = append(sessions, v.session)
		case v.status == http.StatusGone && v.code == pass.CodeInitTokenUsed && v.session == nil:
		default:
			unexpected = append(unexpected, fmt.Sprintf("visit %d at replica %d: %d %s (session cookie %t)", i, i%2, v.status, v.code, v.session != nil))
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("%d visits neither created the session nor got 410 %s, e.g. %s",
			len(unexpected), pass.CodeInitTokenUsed, strings.Join(unexpected[:min(5, len(unexpected))], "; "))
	}
	if len(sessions) != 1 {
		t.Fatalf("%d sessions created from one initialization token, want 1", len(sessions))
	}
	initPath := pathOf(t, ir.URL)
	if got := d.svcLB.Hits(initPath); got[0] != visits/2 || got[1] != visits/2 {
		t.Errorf("visits per replica = %v, want %d each", got, visits/2)
	}
	for r := range 2 {
		w, err := d.call(ctx, r, http.Header{"Cookie": {sessions[0].Name + "=" + sessions[0].Value}})
		if err != nil {
			t.Fatalf("session at Service replica %d: %v", r, err)
		}
		if w.Credential != service.KindSession || w.User != user {
			t.Errorf("session at replica %d authenticates %+v", r, w)
		}
	}
}
