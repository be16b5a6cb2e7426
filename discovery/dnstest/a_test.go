package dnstest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

// TestARecords resolves a host through the server with Go's own resolver,
// as the devnet's users' tools do, and checks that TXT and A records of one
// name coexist.
func TestARecords(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.SetA("todo.test", 60, net.ParseIP("127.0.0.1"))
	srv.SetTXT("todo.test", 60, "hello")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "todo.test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"127.0.0.1"}, addrs); diff != "" {
		t.Errorf("LookupHost (-want +got):\n%s", diff)
	}
	txt, err := r.LookupTXT(ctx, "todo.test")
	if err != nil || len(txt) != 1 || txt[0] != "hello" {
		t.Errorf("LookupTXT = %q, %v; want [hello]", txt, err)
	}
	srv.SetA("todo.test", 60)
	if addrs, err := r.LookupHost(ctx, "todo.test"); err == nil {
		t.Errorf("after removing the A records, LookupHost = %v, want an error", addrs)
	}
}
