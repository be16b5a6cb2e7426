package dnstest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// A test publishes records on a real DNS server on loopback, injects a
// fault, and points a discovery client at it.
func Example() {
	srv, err := dnstest.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.SetTXT("_agentpass.corp.example", 60, "https://idp.corp.example/agentpass/configuration")
	srv.SetTXT("_agentpass.locked.example", 60, "none")
	srv.SetFault("_agentpass.flaky.example", dnstest.FaultServFail)

	c, err := discovery.New(discovery.Config{Nameservers: []string{srv.Addr()}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	url, _ := c.LookupEnterpriseTXT(ctx, "corp.example")
	fmt.Println(url)
	_, err = c.LookupEnterpriseTXT(ctx, "locked.example")
	fmt.Println(errors.Is(err, discovery.ErrDelegationDisabled))
	_, err = c.LookupEnterpriseTXT(ctx, "nobody.example")
	fmt.Println(errors.Is(err, discovery.ErrNoRecord))
	_, err = c.LookupEnterpriseTXT(ctx, "flaky.example")
	fmt.Println(errors.Is(err, discovery.ErrLookupFailed), errors.Is(err, discovery.ErrNoRecord))
	fmt.Println(srv.Queries("_agentpass.corp.example"))
	// Output:
	// https://idp.corp.example/agentpass/configuration
	// true
	// true
	// true false
	// 1
}
