package authority_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// slackMessage is what a Slack-style API takes: a new message, or (with
// TS) an update of one.
type slackMessage struct {
	Channel string `json:"channel"`
	TS      string `json:"ts,omitempty"`
	Text    string `json:"text"`
}

// Lifecycle hooks post a message to a Slack-style webhook when a request
// arrives and update that message as the mission moves on. The httptest
// TLS server stands in for Slack.
func ExampleAuthority_RunHooks() {
	// The stand-in for Slack: chat.postMessage answers a ts, chat.update
	// changes the message with that ts.
	said := make(chan string, 10)
	slack := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m slackMessage
		_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&m)
		said <- fmt.Sprintf("%s ts=%q: %s", strings.TrimPrefix(r.URL.Path, "/api/"), m.TS, m.Text)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "ts": "1700000000.000100"})
	}))
	defer slack.Close()

	n, err := testnet.Start()
	if err != nil {
		panic(err)
	}
	defer n.Close()
	keys, _ := dpop.GenerateKeySet()
	a, err := authority.New(authority.Config{
		Identifier: "https://idp.corp.test", TrustMode: pass.TrustEnterprise, Keys: keys,
		Discovery: n.Discovery(), HTTPClient: n.Client(), InsecureAllowPrivateNetworks: true,
	})
	if err != nil {
		panic(err)
	}
	n.Serve("idp.corp.test", a)
	n.PublishEnterprise("corp.test", a.ConfigurationURL())
	deploy.NewTestService(n, "todo.test", a.ConfigurationURL(), nil)

	// The hook: one message per mission, posted on "requested" and
	// updated afterwards. (Keep ts in your database when several
	// replicas run hooks: any of them may deliver the next event.)
	var mu sync.Mutex
	ts := map[string]string{}
	post := func(ctx context.Context, method string, m slackMessage) (string, error) {
		body, _ := json.Marshal(m)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, slack.URL+"/api/"+method, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := slack.Client().Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var out struct {
			OK bool   `json:"ok"`
			TS string `json:"ts"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil || !out.OK {
			return "", fmt.Errorf("slack %s: %d %v", method, resp.StatusCode, err)
		}
		return out.TS, nil
	}
	handle := func(ctx context.Context, e authority.HookEvent) error {
		r := e.Request
		if r == nil {
			return nil // pruned: nothing to show
		}
		mu.Lock()
		id := ts[e.MissionID]
		mu.Unlock()
		switch {
		case e.Entry.Type == "requested":
			t, err := post(ctx, "chat.postMessage", slackMessage{Channel: "#approvals",
				Text: fmt.Sprintf("%s asks for %s on %s: %s", r.User, r.AgentID, r.Service, r.TaskDescription)})
			if err != nil {
				return err // retried
			}
			mu.Lock()
			ts[e.MissionID] = t
			mu.Unlock()
			return nil
		case id != "":
			_, err := post(ctx, "chat.update", slackMessage{Channel: "#approvals", TS: id,
				Text: fmt.Sprintf("%s: %s by %s", r.TaskDescription, e.Entry.Type, e.Entry.By)})
			return err
		}
		return nil
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.RunHooks(ctx, authority.Hooks{Name: "slack", Handle: handle}) }()

	body, _ := json.Marshal(pass.IssuanceRequest{
		Type: pass.BearerToken, Service: pass.ServiceRef{Origin: "https://todo.test"},
		User: pass.User{Email: "alex@corp.test"}, Harness: pass.HarnessInfo{ID: "my-agent"},
		Task: pass.Task{ID: "t1", Description: "Triage open tickets"},
	})
	resp, err := n.Client().Post(a.Configuration().Endpoints.Issuance, "application/json", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	var st pass.IssuanceStatus
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	fmt.Println(<-said)

	if _, err := a.Decide(context.Background(), st.Mission.ID, authority.Decision{
		Outcome: authority.Deny, DecidedBy: "human:boss@corp.test", Reason: "not this week",
	}); err != nil {
		panic(err)
	}
	fmt.Println(<-said)
	stop()
	<-done
	// Output:
	// chat.postMessage ts="": alex@corp.test asks for my-agent on https://todo.test: Triage open tickets
	// chat.update ts="1700000000.000100": Triage open tickets: denied by human:boss@corp.test
}
