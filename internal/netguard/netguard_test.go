package netguard

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true, "127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false,
		"192.168.1.1": false, "169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "::1": false,
		"fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false, "64:ff9b::7f00:1": false, "64:ff9b::808:808": true,
		"198.51.100.7": false, "224.0.0.1": false, "255.255.255.255": false,
	} {
		if got := PublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestProtect: a loopback server is refused with the guard's error, through
// the default dialer and through a caller's dialer (G-27).
func TestProtect(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	errMine := errors.New("mine: forbidden")
	for _, custom := range []bool{false, true} {
		tr := &http.Transport{}
		if custom {
			tr.DialContext = (&net.Dialer{}).DialContext
		}
		Guard{Err: errMine}.Protect(tr, time.Second)
		_, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if !errors.Is(err, errMine) {
			t.Errorf("custom=%v: %v", custom, err)
		}
	}
}
