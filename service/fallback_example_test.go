package service_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicetest"
)

// Agents and the application's own API keys on the same route: the
// middleware lets in the tokens it issued and hands every other
// Authorization header to Fallback, the application's own check.
func ExampleConfig_fallback() {
	apiKeys := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer key-of-ops-team" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	tickets := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, ok := service.DelegationFrom(r.Context()); ok {
			fmt.Fprintln(w, "tickets for agent acting for", d.User)
			return
		}
		fmt.Fprintln(w, "tickets for an API key")
	})
	srv, err := servicetest.Start(tickets, &servicetest.Options{Config: func(c *service.Config) {
		c.Fallback = apiKeys(tickets)
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	get := func(c *http.Client, auth string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/tickets", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Print(resp.StatusCode, " ", string(body))
	}
	agent, err := srv.Agent(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	get(agent, "")
	get(srv.Client, "Bearer key-of-ops-team")
	get(srv.Client, "Bearer wrong-key")
	// Output:
	// 200 tickets for agent acting for alex@corp.test
	// 200 tickets for an API key
	// 401 unauthorized
}
