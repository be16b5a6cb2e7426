package servicetest_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicetest"
)

// An application's handler behind a real Service, Authority and DNS: an
// agent acquires a pass, redeems it for a token with the "read" scope and
// calls the application, which sees who it acts for. In a test, call
// servicetest.NewServer(t, app, nil) instead: it stops with the test.
func ExampleStart() {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := service.DelegationFrom(r.Context())
		fmt.Fprintf(w, "hello %s, scope %v", d.User, d.Scope)
	})
	srv, err := servicetest.Start(app, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	agent, err := srv.Agent(context.Background(), "read")
	if err != nil {
		log.Fatal(err)
	}
	resp, err := agent.Get(srv.URL + "/hello")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))

	// Without a token the middleware refuses the request.
	resp, err = srv.Client.Get(srv.URL + "/hello")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// 200 hello alex@corp.test, scope [read]
	// 401
}
