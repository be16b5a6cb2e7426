package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// TestPublicAddr (G-27): a table over the special-purpose ranges, including
// those embedding an IPv4 address (#14 item 5).
func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"2606:4700::1111", true},
		{"127.0.0.1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"198.51.100.7", false},
		{"192.88.99.1", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"::", false},
		{"::1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fc00::1", false},
		{"fec0::1", false},
		{"::ffff:127.0.0.1", false}, // IPv4-mapped: classified by the IPv4 address
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::7f00:1", false}, // well-known NAT64: by the embedded address
		{"64:ff9b::808:808", true},
		// Refused whole, whatever they embed:
		{"::8.8.8.8", false},              // ::/96 IPv4-compatible
		{"::7f00:1", false},               // ::/96 IPv4-compatible loopback
		{"::ffff:0:808:808", false},       // ::ffff:0:0:0/96 IPv4-translated
		{"::ffff:0:7f00:1", false},        // ::ffff:0:0:0/96 IPv4-translated
		{"64:ff9b:1::808:808", false},     // 64:ff9b:1::/48 local-use NAT64
		{"2002:808:808::1", false},        // 2002::/16 6to4 of a public address
		{"2002:7f00:1::1", false},         // 2002::/16 6to4 of loopback
		{"2001:0:4136:e378::1", false},    // 2001::/32 Teredo
		{"2001:2::1", false},              // benchmarking
		{"2001:db8::1", false},            // documentation
		{"100::1", false},                 // discard
		{"2001:1::1", false},              // 2001::/23 IETF protocol assignments
		{"2001:20::1", false},             // ORCHIDv2, in 2001::/23
		{"3fff::1", false},                // documentation (2024)
		{"5f00::1", false},                // segment routing, outside 2000::/3
		{"4000::1", false},                // unallocated, outside 2000::/3
		{"::1:0:0:0", false},              // reserved, outside 2000::/3
		{"ff02::1", false},                // multicast
		{"2002:ffff:ffff:ffff::1", false}, // end of 6to4
		{"64:ff9b::a9fe:a9fe", false},     // NAT64 of the metadata address
		{"::ffff:169.254.169.254", false}, // mapped metadata address
		{"2001:4860:4860::8888", true},    // outside 2001::/23
		{"2001:500:88:200::8", true},      // a root server
		{"2003::1", true},                 // just past 2002::/16
		{"64:ff9b:2::808:808", false},     // outside 64:ff9b::/96 and 2000::/3
		{"2a00:1450:4001:82a::200e", true},
	}
	for _, tt := range tests {
		if got := PublicAddr(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("PublicAddr(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestProtect: a loopback server is refused with ErrForbiddenAddress
// through the default dialer, a caller's dialer and a caller's deprecated
// dialer (G-27).
func TestProtect(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	tests := []struct {
		name string
		tr   func() *http.Transport
	}{
		{"default dialer", func() *http.Transport { return &http.Transport{} }},
		{"caller's DialContext", func() *http.Transport {
			return &http.Transport{DialContext: (&net.Dialer{}).DialContext}
		}},
		{"caller's Dial", func() *http.Transport {
			//lint:ignore SA1019 the deprecated field is what is tested.
			return &http.Transport{Dial: net.Dial}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tt.tr()
			Protect(tr, time.Second)
			defer tr.CloseIdleConnections()
			_, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if !errors.Is(err, ErrForbiddenAddress) {
				t.Errorf("err = %v, want ErrForbiddenAddress", err)
			}
		})
	}
}

// TestRefusedBeforeConnect (#14 item 5): a refused address is never
// connected to, so a caller cannot time connection attempts to internal
// hosts. The listener's accept queue is FIFO: had the guarded dial
// connected, its connection would be accepted before the probe's.
func TestRefusedBeforeConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := &http.Transport{}
	Protect(tr, time.Second)
	defer tr.CloseIdleConnections()
	for _, network := range []string{"tcp", "tcp4"} {
		conn, err := Dialer(time.Second).DialContext(context.Background(), network, ln.Addr().String())
		if err == nil {
			conn.Close()
		}
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Fatalf("Dialer %s: err = %v, want ErrForbiddenAddress", network, err)
		}
	}
	if _, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/"); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("guarded transport: err = %v, want ErrForbiddenAddress", err)
	}
	// A host name that resolves to loopback is refused too, after
	// resolution and still before connecting.
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if _, err := (&http.Client{Transport: tr}).Get("http://localhost:" + port + "/"); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("localhost: err = %v, want ErrForbiddenAddress", err)
	}

	probe, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if first.RemoteAddr().String() != probe.LocalAddr().String() {
		t.Fatalf("the listener first accepted %v, not the probe %v: a refused dial connected", first.RemoteAddr(), probe.LocalAddr())
	}
}

// TestDialChecksLiteralFirst: a caller's dialer is not even called for a
// non-public IP literal.
func TestDialChecksLiteralFirst(t *testing.T) {
	called := 0
	d := Dial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		called++
		return nil, errors.New("unreachable")
	})
	if _, err := d(context.Background(), "tcp", "10.0.0.1:443"); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("err = %v, want ErrForbiddenAddress", err)
	}
	if called != 0 {
		t.Errorf("inner dialer called %d times for a private literal", called)
	}
	if _, err := d(context.Background(), "tcp", "example.com:443"); err == nil || errors.Is(err, ErrForbiddenAddress) || called != 1 {
		t.Errorf("host name: err = %v, called = %d; want the inner dialer's error", err, called)
	}
}

func TestCheckAddrMalformed(t *testing.T) {
	for _, a := range []string{"", "example.com:443", "1.2.3.4", "[::1]"} {
		if err := CheckAddr(a); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("CheckAddr(%q) = %v, want ErrForbiddenAddress", a, err)
		}
	}
}

// addrConn is a caller's connection reporting the remote address it likes.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// TestDialRemoteAddrNotIP (review Low 1a): a caller's dialer returning a
// connection without an IP remote address is refused and the connection
// closed; it never panics.
func TestDialRemoteAddrNotIP(t *testing.T) {
	tests := []struct {
		name   string
		remote func(net.Conn) net.Addr
	}{
		{"nil interface", func(net.Conn) net.Addr { return nil }},
		{"nil *net.TCPAddr", func(net.Conn) net.Addr { return (*net.TCPAddr)(nil) }},
		{"nil *net.UDPAddr", func(net.Conn) net.Addr { return (*net.UDPAddr)(nil) }},
		{"net.Pipe's address", func(c net.Conn) net.Addr { return c.RemoteAddr() }},
		{"Unix socket", func(net.Conn) net.Addr { return &net.UnixAddr{Name: "/run/x.sock", Net: "unix"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			dial := Dial(func(context.Context, string, string) (net.Conn, error) {
				return addrConn{client, tt.remote(client)}, nil
			})
			conn, err := dial(context.Background(), "tcp", "example.com:443")
			if !errors.Is(err, ErrForbiddenAddress) || conn != nil {
				t.Fatalf("Dial = %v, %v; want ErrForbiddenAddress", conn, err)
			}
			// The refused connection was closed: the peer reads EOF.
			if _, err := server.Read(make([]byte, 1)); err == nil {
				t.Error("the refused connection is still open")
			}
		})
	}
}
