// Package dnstest runs a real DNS server on the loopback interface for tests.
//
// # Overview
//
// [NewServer] starts a server on 127.0.0.1 that a test fills with records
// and faults at run time, and closes it with t.Cleanup; outside a test,
// [Start] starts one and [Server.Close] stops it. Point a discovery
// client's Nameservers at
// [Server.Nameserver]: the client then runs its real DNS code.
//
// # Usage
//
//	srv := dnstest.NewServer(t)
//	srv.SetTXT("_agentpass.example.com", 300, "https://ap.example.com/config")
//	srv.SetFault("_agentpass.broken.example", dnstest.FaultServFail)
//	c, _ := discovery.New(discovery.Config{Nameservers: []string{srv.Nameserver()}})
//	...
//	if n := srv.Queries("_agentpass.example.com"); n != 1 { ... }
//
// # What it serves
//
// The server is a [github.com/miekg/dns] server answering over UDP and TCP
// on the same port, with a private [dns.ServeMux] (never the package-global
// mux, so parallel tests do not share records). Records may change
// concurrently with queries. Faults are set per name: SERVFAIL, REFUSED, no
// answer (a timeout at the client), truncation (TC bit over UDP, full
// answer over TCP) and malformed replies. Unknown names answer NXDOMAIN and
// every negative answer carries an SOA record whose TTL and minimum are
// settable, so negative caching can be tested. The server counts the
// queries it receives per name.
//
// Names are matched case-insensitively, with or without a trailing dot. They
// are used as given otherwise: pass internationalised names in their punycode
// (A-label) form.
package dnstest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/dnstxt"
	"github.com/miekg/dns"
)

// Fault is an error the server injects for a name.
type Fault int

// Faults.
const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultServFail answers with rcode SERVFAIL.
	FaultServFail
	// FaultRefused answers with rcode REFUSED.
	FaultRefused
	// FaultTimeout never answers, so the client times out.
	FaultTimeout
	// FaultTruncate answers over UDP with the TC bit set and no records, and
	// normally over TCP.
	FaultTruncate
	// FaultMalformed answers with a reply no client can parse (a name that
	// points to itself).
	FaultMalformed
	// FaultWrongName answers for another name than the one asked (a question
	// section that does not match the query).
	FaultWrongName
)

// String returns the fault's name.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultServFail:
		return "servfail"
	case FaultRefused:
		return "refused"
	case FaultTimeout:
		return "timeout"
	case FaultTruncate:
		return "truncate"
	case FaultMalformed:
		return "malformed"
	case FaultWrongName:
		return "wrong-name"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// node is what the server knows about one name.
type node struct {
	ttl   uint32
	txt   [][]string // raw character-strings of each TXT RR
	a     []net.IP   // IPv4 addresses (A records)
	cname string     // canonical target when the name is an alias
}

// Server is a DNS server on loopback. Its methods are safe for concurrent use,
// also while queries are being answered.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu         sync.Mutex
	nodes      map[string]*node
	faults     map[string]Fault
	delays     map[string]time.Duration
	holds      map[string]*hold
	queries    map[string]int
	tcpQueries map[string]int
	negTTL     uint32
	ad         bool
	closed     chan struct{}
	closeOnce  sync.Once
}

// NewServer starts a server on 127.0.0.1 (UDP and TCP on the same port) and
// registers its Close with t.Cleanup. It fails the test if it cannot start.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a server on 127.0.0.1 outside a test (for examples and local
// development networks). The caller must Close it.
func Start() (*Server, error) { return StartAt("127.0.0.1:0") }

// StartAt is Start on a chosen address ("127.0.0.1:5353"), UDP and TCP; port
// 0 picks a free port. The caller must Close it.
func StartAt(addr string) (*Server, error) {
	s := &Server{
		nodes:      map[string]*node{},
		faults:     map[string]Fault{},
		delays:     map[string]time.Duration{},
		holds:      map[string]*hold{},
		queries:    map[string]int{},
		tcpQueries: map[string]int{},
		negTTL:     60,
		closed:     make(chan struct{}),
	}
	var (
		ln  net.Listener
		pc  net.PacketConn
		err error
	)
	// Bind TCP on an ephemeral port, then UDP on the same port; another
	// process may hold that UDP port, so retry a few times.
	_, port, perr := net.SplitHostPort(addr)
	if perr != nil {
		return nil, fmt.Errorf("dnstest: %w", perr)
	}
	tries := 20
	if port != "0" {
		tries = 1
	}
	for range tries {
		ln, err = net.Listen("tcp4", addr)
		if err != nil {
			return nil, fmt.Errorf("dnstest: %w", err)
		}
		pc, err = net.ListenPacket("udp4", ln.Addr().String())
		if err == nil {
			break
		}
		ln.Close()
		ln = nil
	}
	if ln == nil {
		return nil, errors.New("dnstest: cannot bind UDP and TCP on one loopback port: " + err.Error())
	}
	s.addr = ln.Addr().String()

	mux := dns.NewServeMux()
	mux.HandleFunc(".", s.serve)
	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(udpStarted) }}
	s.tcp = &dns.Server{Listener: ln, Handler: mux, NotifyStartedFunc: func() { close(tcpStarted) }}
	errc := make(chan error, 2)
	go func() { errc <- s.udp.ActivateAndServe() }()
	go func() { errc <- s.tcp.ActivateAndServe() }()
	for _, started := range []chan struct{}{udpStarted, tcpStarted} {
		select {
		case <-started:
		case err := <-errc:
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("dnstest: %w", err)
		case <-time.After(5 * time.Second):
			pc.Close()
			ln.Close()
			return nil, errors.New("dnstest: server did not start")
		}
	}
	return s, nil
}

// Addr returns the server's address, "127.0.0.1:port", for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Nameserver returns the address to put in a client's list of nameservers.
// It is the same as [Server.Addr].
func (s *Server) Nameserver() string { return s.addr }

// Close stops the server. It is called by t.Cleanup and may be called again.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.udp.ShutdownContext(ctx)
		_ = s.tcp.ShutdownContext(ctx)
	})
}

// key returns the canonical form of name used by the server: lower case with
// a trailing dot.
func key(name string) string { return dns.CanonicalName(name) }

// SetTXT publishes one TXT record per value at name, replacing whatever the
// name held (TXT records or CNAME). Values are raw bytes; a value longer than
// 255 bytes is split into several character-strings of one record, as DNS
// requires. With no values, the name exists without TXT records (NODATA).
func (s *Server) SetTXT(name string, ttl uint32, values ...string) {
	rrs := make([][]string, len(values))
	for i, v := range values {
		rrs[i] = split255(v)
	}
	s.SetTXTStrings(name, ttl, rrs)
}

// SetTXTStrings publishes one TXT record per element of rrs, each made of the
// given character-strings (raw bytes, at most 255 each; longer strings are
// split). A client reading the record must concatenate them.
func (s *Server) SetTXTStrings(name string, ttl uint32, rrs [][]string) {
	n := &node{ttl: ttl}
	for _, rr := range rrs {
		var strs []string
		for _, str := range rr {
			strs = append(strs, split255(str)...)
		}
		if len(strs) == 0 {
			strs = []string{""}
		}
		n.txt = append(n.txt, strs)
	}
	s.mu.Lock()
	if old := s.nodes[key(name)]; old != nil && old.cname == "" {
		n.a = old.a // A records are kept (see SetA)
	}
	s.nodes[key(name)] = n
	s.mu.Unlock()
}

// SetA publishes A records (IPv4 addresses) at name, keeping its TXT
// records and replacing a CNAME, so tools can resolve a test network's
// host names through the server. With no addresses the A records are
// removed. An AAAA query for the name answers NODATA.
func (s *Server) SetA(name string, ttl uint32, ips ...net.IP) {
	var v4 []net.IP
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil {
			v4 = append(v4, ip4)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[key(name)]
	if n == nil || n.cname != "" {
		n = &node{ttl: ttl}
		s.nodes[key(name)] = n
	}
	n.a = v4
}

// SetNoData makes name exist without TXT records: queries get NOERROR with an
// empty answer (NODATA) and an SOA.
func (s *Server) SetNoData(name string) { s.SetTXTStrings(name, 0, nil) }

// SetCNAME makes name an alias of target. A TXT query for name answers the
// CNAME, followed by target's TXT records when the server has them (as a
// recursive resolver would).
func (s *Server) SetCNAME(name string, ttl uint32, target string) {
	s.mu.Lock()
	s.nodes[key(name)] = &node{ttl: ttl, cname: key(target)}
	s.mu.Unlock()
}

// Remove deletes name, which then answers NXDOMAIN. Faults and delays for
// name are kept.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	delete(s.nodes, key(name))
	s.mu.Unlock()
}

// SetFault injects f for queries about name; FaultNone removes it.
func (s *Server) SetFault(name string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == FaultNone {
		delete(s.faults, key(name))
		return
	}
	s.faults[key(name)] = f
}

// SetDelay delays the answers about name by d (zero removes the delay), so a
// test can have many queries in flight at once.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.delays, key(name))
		return
	}
	s.delays[key(name)] = d
}

// hold keeps the queries about one name unanswered until released.
type hold struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// Hold keeps every query about name unanswered until release is called
// (or the server closes), so a test can act while a lookup is in flight
// without guessing a delay. arrived receives once per query as it
// arrives (it holds up to 1,024 unread arrivals; more are dropped).
// release answers the held queries and ends the hold; calling it again
// does nothing.
func (s *Server) Hold(name string) (arrived <-chan struct{}, release func()) {
	h := &hold{arrived: make(chan struct{}, 1024), release: make(chan struct{})}
	s.mu.Lock()
	s.holds[key(name)] = h
	s.mu.Unlock()
	return h.arrived, func() {
		h.once.Do(func() {
			s.mu.Lock()
			if s.holds[key(name)] == h {
				delete(s.holds, key(name))
			}
			s.mu.Unlock()
			close(h.release)
		})
	}
}

// SetNegativeTTL sets the TTL and the minimum field of the SOA record sent in
// NXDOMAIN and NODATA answers (default 60 seconds).
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	s.negTTL = ttl
	s.mu.Unlock()
}

// SetAuthenticated sets the AD (authenticated data) bit in the answers to
// queries that ask for it with the AD bit or the EDNS0 DO bit, as a
// validating resolver does for a signed zone (RFC 6840 §5.7).
func (s *Server) SetAuthenticated(ad bool) {
	s.mu.Lock()
	s.ad = ad
	s.mu.Unlock()
}

// Queries returns how many queries for name the server received, over UDP
// and TCP.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key(name)]
}

// TCPQueries returns how many queries for name the server received over TCP.
func (s *Server) TCPQueries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpQueries[key(name)]
}

// ResetQueries sets every query counter to zero.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.queries)
	clear(s.tcpQueries)
}

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := key(q.Name)
	isTCP := w.LocalAddr().Network() == "tcp"

	s.mu.Lock()
	s.queries[name]++
	if isTCP {
		s.tcpQueries[name]++
	}
	fault := s.faults[name]
	delay := s.delays[name]
	held := s.holds[name]
	ad := s.ad
	negTTL := s.negTTL
	s.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-s.closed:
			return
		}
	}
	if held != nil {
		select {
		case held.arrived <- struct{}{}:
		default:
		}
		select {
		case <-held.release:
		case <-s.closed:
			return
		}
	}

	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	// A validating resolver sets AD only for clients that ask for it with
	// the DO or the AD bit (RFC 6840 §5.7).
	m.AuthenticatedData = ad && (r.AuthenticatedData || r.IsEdns0() != nil && r.IsEdns0().Do())
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(dns.DefaultMsgSize, opt.Do())
	}

	switch fault {
	case FaultServFail:
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	case FaultRefused:
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	case FaultTimeout:
		return
	case FaultMalformed:
		// A question whose name is a compression pointer to itself.
		b := make([]byte, 12, 18)
		binary.BigEndian.PutUint16(b[0:], r.Id)
		binary.BigEndian.PutUint16(b[2:], 0x8180) // QR, RD, RA, NOERROR
		binary.BigEndian.PutUint16(b[4:], 1)      // QDCOUNT
		b = append(b, 0xC0, 12, 0, 16, 0, 1)
		_, _ = w.Write(b)
		return
	case FaultTruncate:
		if !isTCP {
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
	case FaultWrongName:
		m.Question[0].Name = "wrong." + name
	}

	s.answer(m, name, q.Qtype, negTTL)
	if !isTCP {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer fills m for a query of qtype at name, following CNAMEs the server
// knows (at most 8).
func (s *Server) answer(m *dns.Msg, name string, qtype uint16, negTTL uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 8 {
		n, ok := s.nodes[name]
		if !ok {
			// RFC 6604: the rcode describes the last name of a CNAME chain.
			m.Rcode = dns.RcodeNameError
			s.addSOA(m, name, negTTL)
			return
		}
		if n.cname != "" && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, &dns.CNAME{
				Hdr:    dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: n.ttl},
				Target: n.cname,
			})
			name = n.cname
			continue
		}
		if qtype == dns.TypeTXT || qtype == dns.TypeANY {
			for _, strs := range n.txt {
				esc := make([]string, len(strs))
				for i, str := range strs {
					esc[i] = dnstxt.Escape(str)
				}
				m.Answer = append(m.Answer, &dns.TXT{
					Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: n.ttl},
					Txt: esc,
				})
			}
		}
		if qtype == dns.TypeA || qtype == dns.TypeANY {
			for _, ip := range n.a {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: n.ttl},
					A:   ip,
				})
			}
		}
		if len(m.Answer) == 0 {
			s.addSOA(m, name, negTTL)
		}
		return
	}
}

func (s *Server) addSOA(m *dns.Msg, name string, ttl uint32) {
	zone := "test."
	if labels := dns.SplitDomainName(name); len(labels) >= 2 {
		zone = dns.Fqdn(strings.Join(labels[len(labels)-2:], "."))
	}
	m.Ns = append(m.Ns, &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	})
}

// split255 cuts a raw value into DNS character-strings of at most 255 bytes.
func split255(v string) []string {
	if len(v) <= 255 {
		return []string{v}
	}
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}
