package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"go.opentelemetry.io/otel/attribute"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// ednsSize is the EDNS0 UDP payload size advertised (the DNS flag day 2020
// value, which avoids IP fragmentation).
const ednsSize = 1232

// maxCNAMEs bounds the CNAME chain followed inside one answer: a chain of
// this many links or more is a lookup failure.
const maxCNAMEs = 8

// txtResult is the cached outcome of a TXT lookup: a URL, or one of
// ErrNoRecord, ErrDelegationDisabled, ErrInvalidRecord. Lookup failures are
// never cached.
type txtResult struct {
	url string
	err error
}

// LookupServiceTXT looks up the Service discovery record
// _agentpass-service.{host} and returns the Service configuration URL. host
// is a DNS name without scheme or port; it is lower-cased and converted to
// punycode.
//
// The error matches exactly one of [ErrNoRecord] (NXDOMAIN or NODATA),
// [ErrInvalidRecord] (a record that does not hold exactly one https:// URL),
// [ErrLookupFailed] (SERVFAIL, timeout, ...) or [ErrInvalidName].
func (c *Client) LookupServiceTXT(ctx context.Context, host string) (configURL string, err error) {
	return c.lookup(ctx, servicePrefix, host, serviceRecord)
}

// LookupEnterpriseTXT looks up the enterprise discovery record
// _agentpass.{domain} and returns the Authority configuration URL. domain is
// the e-mail domain; it is lower-cased and converted to punycode.
//
// The error matches exactly one of [ErrDelegationDisabled] (the record is
// "none": discovery succeeded and no other Authority may be used),
// [ErrNoRecord], [ErrInvalidRecord], [ErrLookupFailed] or [ErrInvalidName].
// Only ErrNoRecord allows falling back to Service or federated Authorities.
func (c *Client) LookupEnterpriseTXT(ctx context.Context, domain string) (configURL string, err error) {
	return c.lookup(ctx, enterprisePrefix, domain, enterpriseRecord)
}

func (c *Client) lookup(ctx context.Context, prefix, domain string, kind recordKind) (string, error) {
	if err := c.ready(); err != nil {
		return "", err
	}
	d, err := pass.CanonicalDomain(domain)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	// The name is built on the stack: a cached answer costs no allocation.
	var buf [128]byte
	qb := append(append(append(buf[:0], prefix...), d...), '.')
	if r, ok := c.txtCache.getBytes(qb, c.now()); ok {
		return r.url, r.err
	}
	qname := string(qb)
	// The work may try every nameserver, each with its own timeout.
	budget := c.dnsTimeout*time.Duration(len(c.nameservers)) + time.Second
	v, err := c.flight(ctx, "txt "+qname, budget, func(ctx context.Context) (any, error) {
		if r, ok := c.txtCache.get(qname, c.now()); ok {
			return r, nil
		}
		ans, err := c.query(ctx, qname)
		if err != nil {
			return nil, err
		}
		var r txtResult
		ttl := ans.ttl
		if ans.negative {
			r.err = fmt.Errorf("%w: %s", ErrNoRecord, qname)
			ttl = clamp(ttl, c.minTTL, c.maxNegTTL)
		} else {
			r.url, r.err = selectValue(qname, ans.values, kind)
			ttl = clamp(ttl, c.minTTL, c.maxTTL)
		}
		c.txtCache.put(qname, r, c.now().Add(ttl))
		return r, nil
	})
	if err != nil {
		var le *LookupError
		if !errors.As(err, &le) {
			// The caller's context ended first.
			err = &LookupError{Name: qname, Rcode: -1, Timeout: errors.Is(err, context.DeadlineExceeded), Err: err}
		}
		return "", err
	}
	r := v.(txtResult)
	return r.url, r.err
}

// txtAnswer is what a nameserver said about a name.
type txtAnswer struct {
	values   []string      // one per TXT record, character-strings joined
	ttl      time.Duration // smallest TTL of the records used, or the negative TTL
	negative bool          // NXDOMAIN or NODATA
}

// query asks each nameserver in turn until one gives a usable answer.
func (c *Client) query(ctx context.Context, qname string) (_ *txtAnswer, err error) {
	ctx, span := c.tel.Start(ctx, "agentpass.discovery.dns", trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("dns.question.name", qname))
	}
	defer func() { telemetry.End(span, telemetry.ErrOutcome(err)) }()
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeTXT)
	m.SetEdns0(ednsSize, c.requireDNSSEC)
	m.AuthenticatedData = c.requireDNSSEC

	var lastErr *LookupError
	for _, ns := range c.nameservers {
		ans, err := c.queryOne(ctx, m, qname, ns)
		if err == nil {
			return ans, nil
		}
		lastErr = err
		c.log.LogAttrs(ctx, levelDebug, "discovery: nameserver failed", strAttr("name", qname), strAttr("server", ns), errAttr(err))
		if ctx.Err() != nil {
			break
		}
	}
	c.log.LogAttrs(ctx, levelWarn, "discovery: DNS lookup failed", strAttr("name", qname), errAttr(lastErr))
	return nil, lastErr
}

func (c *Client) queryOne(ctx context.Context, m *dns.Msg, qname, ns string) (*txtAnswer, *LookupError) {
	ctx, cancel := context.WithTimeout(ctx, c.dnsTimeout)
	defer cancel()
	fail := func(rcode int, reason string, err error) *LookupError {
		return &LookupError{Name: qname, Server: ns, Rcode: rcode, Timeout: isTimeout(err), Reason: reason, Err: err}
	}

	r, _, err := c.udp.ExchangeContext(ctx, m, ns)
	if err == nil && r.Truncated {
		r, _, err = c.tcp.ExchangeContext(ctx, m, ns)
		if err == nil && r.Truncated {
			return nil, fail(-1, "truncated answer over TCP", nil)
		}
	}
	if err != nil {
		return nil, fail(-1, "", err)
	}
	if !r.Response || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 ||
		!strings.EqualFold(r.Question[0].Name, qname) ||
		r.Question[0].Qtype != dns.TypeTXT || r.Question[0].Qclass != dns.ClassINET {
		return nil, fail(-1, "malformed answer: not a reply to the question asked", nil)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, fail(r.Rcode, "", nil)
	}
	if c.requireDNSSEC && !r.AuthenticatedData {
		return nil, fail(r.Rcode, "answer not DNSSEC-authenticated (AD bit unset)", nil)
	}
	if r.Rcode == dns.RcodeNameError {
		return &txtAnswer{negative: true, ttl: negativeTTL(r)}, nil
	}

	// Follow a CNAME chain inside the answer, then take the TXT records of
	// its last name. A chain of maxCNAMEs links or more (a loop, or one a
	// resolver may have cut short) is a failure, never "no record", which
	// would let another Authority in.
	ans := &txtAnswer{ttl: c.maxTTL}
	target := qname
	for hops := 0; ; hops++ {
		next := ""
		for _, rr := range r.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, target) {
				next = cn.Target
				ans.ttl = min(ans.ttl, ttlOf(rr))
				break
			}
		}
		if next == "" {
			break
		}
		if hops+1 >= maxCNAMEs {
			return nil, fail(-1, "CNAME chain too long or looping", nil)
		}
		target = next
	}
	for _, rr := range r.Answer {
		txt, ok := rr.(*dns.TXT)
		if !ok || !strings.EqualFold(txt.Hdr.Name, target) || txt.Hdr.Class != dns.ClassINET {
			continue
		}
		var b strings.Builder
		for _, s := range txt.Txt {
			b.WriteString(unescapeTXT(s))
		}
		ans.values = append(ans.values, b.String())
		ans.ttl = min(ans.ttl, ttlOf(rr))
	}
	if len(ans.values) == 0 {
		return &txtAnswer{negative: true, ttl: negativeTTL(r)}, nil
	}
	return ans, nil
}

// negativeTTL is the negative-caching TTL of RFC 2308: the smaller of the SOA
// record's TTL and its minimum field, zero without an SOA.
func negativeTTL(r *dns.Msg) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return 0
}

func ttlOf(rr dns.RR) time.Duration { return time.Duration(rr.Header().Ttl) * time.Second }

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
