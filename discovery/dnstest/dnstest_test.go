package dnstest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
)

func query(t *testing.T, srv *dnstest.Server, net, name string) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.SetEdns0(1232, false)
	r, _, err := c.ExchangeContext(context.Background(), m, srv.Addr())
	return r, err
}

func txts(m *dns.Msg) [][]string {
	var out [][]string
	for _, rr := range m.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, txt.Txt)
		}
	}
	return out
}

func TestRecords(t *testing.T) {
	srv := dnstest.NewServer(t)
	long := strings.Repeat("a", 300)
	srv.SetTXT("_agentpass.Example.COM", 120, "https://ap.example.com/c", long)
	srv.SetTXTStrings("multi.example.com.", 30, [][]string{{"https://a.", "example.com/x"}})
	srv.SetNoData("nodata.example.com")
	srv.SetCNAME("alias.example.com", 10, "multi.example.com")
	srv.SetNegativeTTL(42)

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r, err := query(t, srv, network, "_AGENTPASS.example.com")
			if err != nil {
				t.Fatal(err)
			}
			want := [][]string{{"https://ap.example.com/c"}, {long[:255], long[255:]}}
			if diff := cmp.Diff(want, txts(r)); diff != "" {
				t.Errorf("TXT (-want +got):\n%s", diff)
			}
			if ttl := r.Answer[0].Header().Ttl; ttl != 120 {
				t.Errorf("TTL = %d, want 120", ttl)
			}

			r, err = query(t, srv, network, "multi.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([][]string{{"https://a.", "example.com/x"}}, txts(r)); diff != "" {
				t.Errorf("multi-string TXT (-want +got):\n%s", diff)
			}

			r, err = query(t, srv, network, "alias.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
				t.Errorf("CNAME answer = %v", r.Answer)
			}

			r, err = query(t, srv, network, "nodata.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
				t.Errorf("NODATA: rcode %d, %d answers, %d authority", r.Rcode, len(r.Answer), len(r.Ns))
			}

			r, err = query(t, srv, network, "missing.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeNameError {
				t.Errorf("rcode = %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
			soa, ok := r.Ns[0].(*dns.SOA)
			if !ok || soa.Minttl != 42 || soa.Hdr.Ttl != 42 {
				t.Errorf("SOA = %v, want minimum 42", r.Ns)
			}
		})
	}
	if got := srv.Queries("_agentpass.example.com"); got != 2 {
		t.Errorf("Queries = %d, want 2", got)
	}
	if got := srv.TCPQueries("_agentpass.example.com."); got != 1 {
		t.Errorf("TCPQueries = %d, want 1", got)
	}
	srv.Remove("_agentpass.example.com")
	r, err := query(t, srv, "udp", "_agentpass.example.com")
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove: %v, %v", r, err)
	}
}

func TestRawBytes(t *testing.T) {
	srv := dnstest.NewServer(t)
	raw := "a\"b\\c d\x00\xff "
	srv.SetTXT("raw.example.com", 1, raw)
	r, err := query(t, srv, "udp", "raw.example.com")
	if err != nil {
		t.Fatal(err)
	}
	// miekg/dns hands out the presentation form.
	want := `a\"b\\c d\000\255 `
	if got := txts(r); len(got) != 1 || got[0][0] != want {
		t.Errorf("TXT = %q, want %q", got, want)
	}
}

func TestFaults(t *testing.T) {
	srv := dnstest.NewServer(t)
	const name = "f.example.com"
	srv.SetTXT(name, 60, "https://x.example.com/")

	srv.SetFault(name, dnstest.FaultServFail)
	if r, err := query(t, srv, "udp", name); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("servfail: %v %v", r, err)
	}
	srv.SetFault(name, dnstest.FaultRefused)
	if r, err := query(t, srv, "udp", name); err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("refused: %v %v", r, err)
	}
	srv.SetFault(name, dnstest.FaultTimeout)
	if _, err := query(t, srv, "udp", name); err == nil {
		t.Error("timeout: got an answer")
	}
	srv.SetFault(name, dnstest.FaultMalformed)
	if _, err := query(t, srv, "udp", name); err == nil {
		t.Error("malformed: parsed")
	}
	srv.SetFault(name, dnstest.FaultWrongName)
	if r, err := query(t, srv, "udp", name); err != nil || r.Question[0].Name == dns.Fqdn(name) {
		t.Errorf("wrong name: %v %v", r, err)
	}
	srv.SetFault(name, dnstest.FaultTruncate)
	r, err := query(t, srv, "udp", name)
	if err != nil || !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("truncate udp: %v %v", r, err)
	}
	r, err = query(t, srv, "tcp", name)
	if err != nil || r.Truncated || len(r.Answer) != 1 {
		t.Errorf("truncate tcp: %v %v", r, err)
	}
	srv.SetFault(name, dnstest.FaultNone)
	srv.SetAuthenticated(true)
	r, err = query(t, srv, "udp", name)
	if err != nil || r.AuthenticatedData || len(r.Answer) != 1 {
		t.Errorf("AD without DO: %v %v", r, err)
	}
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.SetEdns0(1232, true)
	r, _, err = c.Exchange(m, srv.Addr())
	if err != nil || !r.AuthenticatedData || len(r.Answer) != 1 {
		t.Errorf("AD with DO: %v %v", r, err)
	}
}

func TestRealTruncation(t *testing.T) {
	srv := dnstest.NewServer(t)
	var vals []string
	for range 20 {
		vals = append(vals, strings.Repeat("x", 200))
	}
	srv.SetTXT("big.example.com", 60, vals...)
	r, err := query(t, srv, "udp", "big.example.com")
	if err != nil || !r.Truncated {
		t.Fatalf("udp: truncated=%v err=%v", r != nil && r.Truncated, err)
	}
	r, err = query(t, srv, "tcp", "big.example.com")
	if err != nil || len(r.Answer) != 20 {
		t.Fatalf("tcp: %d answers, err=%v", len(r.Answer), err)
	}
}

func TestDelay(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.SetTXT("slow.example.com", 60, "v")
	srv.SetDelay("slow.example.com", 100*time.Millisecond)
	start := time.Now()
	if _, err := query(t, srv, "udp", "slow.example.com"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answered after %v, want >= 100ms", d)
	}
}

// A held query is answered only after release, and its arrival is signalled.
func TestHold(t *testing.T) {
	srv := dnstest.NewServer(t)
	srv.SetTXT("held.example.com", 60, "v")
	arrived, release := srv.Hold("held.example.com")
	answered := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Net: "tcp", Timeout: time.Minute}
		m := new(dns.Msg)
		m.SetQuestion("held.example.com.", dns.TypeTXT)
		r, _, err := c.Exchange(m, srv.Addr())
		if err != nil {
			t.Errorf("query: %v", err)
		}
		answered <- r
	}()
	<-arrived
	select {
	case <-answered:
		t.Fatal("a held query was answered before release")
	default:
	}
	release()
	release() // a second call does nothing
	if r := <-answered; r == nil || len(txts(r)) != 1 {
		t.Fatalf("answer after release: %v", r)
	}
	if _, err := query(t, srv, "udp", "held.example.com"); err != nil {
		t.Errorf("after release, queries are answered at once: %v", err)
	}
}
