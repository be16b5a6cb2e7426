package service_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// refusalWriter is a ResponseWriter reused across requests, so that what a
// refusal allocates is the receiver's own doing, not a recorder's.
type refusalWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *refusalWriter) Header() http.Header { return w.h }
func (w *refusalWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *refusalWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body[:0], b...)
	return len(b), nil
}
func (w *refusalWriter) reset() { clear(w.h); w.status = 0; w.body = w.body[:0] }

// readCounter counts the reads of a request body.
type readCounter struct {
	r     io.Reader
	reads int
}

func (c *readCounter) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }

// refusalEnv is a pushing Service whose receiver has spent its budget (a
// frozen clock never refills it), and a SET request to send it again and
// again from one address.
// The logger is the test's, at Debug: a refusal must not log even then.
func refusalEnv(tb testing.TB, mutate func(*service.Config)) (*env, *http.Request, *readCounter) {
	tb.Helper()
	e := newNet(tb)
	e.start(func(c *service.Config) {
		c.EventDelivery = pass.DeliveryPush
		c.RateLimits.Events = service.RateLimit{Client: service.Rate{PerSecond: 1, Burst: 1}}
		if mutate != nil {
			mutate(c)
		}
	})
	body := &readCounter{r: strings.NewReader("")}
	req := httptest.NewRequest(http.MethodPost, appURL+eventsPath, body)
	req.RemoteAddr = "192.0.2.7:40000"
	req.Header.Set("Content-Type", "application/secevent+jwt")
	// The one request of the burst: parsed, refused as malformed.
	first := httptest.NewRequest(http.MethodPost, appURL+eventsPath, strings.NewReader("x"))
	first.RemoteAddr, first.Header = req.RemoteAddr, req.Header
	w := &refusalWriter{h: http.Header{}}
	e.svc.ServeHTTP(w, first)
	if w.status != http.StatusBadRequest {
		tb.Fatalf("first SET: %d %s, want 400", w.status, w.body)
	}
	return e, req, body
}

// BenchmarkReceiverRefusal is the receiver's cost per SET refused by its
// rate limit, from Service.ServeHTTP to the 429 written, without the
// network or net/http's own per-request work (a reused ResponseWriter):
//
//	go test -run '^$' -bench ReceiverRefusal -benchmem ./service/
func BenchmarkReceiverRefusal(b *testing.B) {
	e, req, _ := refusalEnv(b, nil)
	w := &refusalWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		e.svc.ServeHTTP(w, req)
		if w.status != http.StatusTooManyRequests {
			b.Fatalf("status %d, want 429", w.status)
		}
	}
}

// Issue #23 item 5: a SET over the rate limit is refused with the prepared
// 429 (Retry-After, no-store, rate_limited) before its body is read, and
// the refusal allocates nothing: no parsing, no key lookup, no log record.
// An allocation added to the path fails this test.
func TestReceiverRefusalAllocs(t *testing.T) {
	e, req, body := refusalEnv(t, nil)
	w := &refusalWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		w.reset()
		e.svc.ServeHTTP(w, req)
	})
	if allocs != 0 {
		t.Errorf("a refused SET allocates %v times, want 0", allocs)
	}
	if w.status != http.StatusTooManyRequests {
		t.Fatalf("status %d %s, want 429", w.status, w.body)
	}
	if body.reads != 0 {
		t.Errorf("the body of a refused SET was read %d times, want never", body.reads)
	}
	h := w.h
	if h.Get("Retry-After") != "1" || h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "application/json" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", h)
	}
	var got pass.ErrorResponse
	if err := json.Unmarshal(w.body, &got); err != nil || got.Error.Code != pass.CodeRateLimited {
		t.Errorf("body %s (%v), want rate_limited", w.body, err)
	}
	// A SET that passes the limit afterwards is still parsed: the refusal
	// path shares nothing with it that the test could have broken.
	e.clock.Advance(time.Second)
	w.reset()
	first := httptest.NewRequest(http.MethodPost, appURL+eventsPath, strings.NewReader("x"))
	first.RemoteAddr, first.Header = req.RemoteAddr, req.Header
	e.svc.ServeHTTP(w, first)
	if w.status != http.StatusBadRequest {
		t.Errorf("after a second: %d %s, want the malformed SET parsed and refused 400", w.status, w.body)
	}
}

// Refusals are logged in aggregate: one Warn line at the first, then at
// most one a minute with the count since the line before, never the
// address or the SET; each is counted in agentpass.rate_limited.
func TestReceiverRefusalLog(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	e, req, _ := refusalEnv(t, func(c *service.Config) {
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	w := &refusalWriter{h: http.Header{}}
	refuse := func(n int) {
		t.Helper()
		for range n {
			w.reset()
			e.svc.ServeHTTP(w, req)
			if w.status != http.StatusTooManyRequests {
				t.Fatalf("status %d, want 429", w.status)
			}
		}
	}
	lines := func() []float64 {
		var out []float64
		for _, r := range e.logs.records("agentpass rate limited") {
			if r["level"] != "WARN" || r["endpoint"] != "events" {
				t.Errorf("record %v, want a Warn of the events endpoint", r)
			}
			n, _ := r["refused"].(float64)
			out = append(out, n)
		}
		return out
	}
	refuse(50)
	if got := lines(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after 50 refusals: lines with counts %v, want one line counting the first", got)
	}
	e.clock.Advance(30 * time.Second)
	w.reset()
	e.svc.ServeHTTP(w, req) // the bucket refilled one SET: parsed
	refuse(10)
	if got := lines(); len(got) != 1 {
		t.Fatalf("within the minute: lines with counts %v, want still one", got)
	}
	e.clock.Advance(31 * time.Second)
	w.reset()
	e.svc.ServeHTTP(w, req) // the bucket refilled one SET: parsed
	refuse(1)
	if got := lines(); len(got) != 2 || got[1] != 60 {
		t.Fatalf("a minute later: lines with counts %v, want a second line counting 60", got)
	}
	if logs := e.logs.String(); strings.Contains(logs, "192.0.2.7") {
		t.Errorf("the log names the refused address: %s", logs)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "agentpass.rate_limited" {
				for _, p := range d.DataPoints {
					if v, _ := p.Attributes.Value(telemetry.KeyEndpoint); v.AsString() == "events" {
						counted += p.Value
					}
				}
			}
		}
	}
	if counted != 61 {
		t.Errorf("agentpass.rate_limited{endpoint=events} = %d, want 61", counted)
	}
}

// Issue #23 item 5: a flood of SETs from other networks, enough to drain
// the receiver's Overall level (six networks of two addresses, 2,400 SETs a
// second against the default 1,000), does not refuse the honest
// Authority's SETs from its own network: ten a second are within its share
// of the Overall level, which holds while up to eight networks push.
func TestReceiverFloodSparesHonestAuthority(t *testing.T) {
	e := newNet(t)
	e.start(func(c *service.Config) {
		c.EventDelivery = pass.DeliveryPush
		c.Logger = nil
	})
	send := func(addr string) int {
		r := httptest.NewRequest(http.MethodPost, appURL+eventsPath, strings.NewReader("x"))
		r.RemoteAddr = addr + ":40000"
		r.Header.Set("Content-Type", "application/secevent+jwt")
		w := httptest.NewRecorder()
		e.svc.ServeHTTP(w, r)
		return w.Code
	}
	var attackers []string
	for n := range 6 {
		for a := range 2 {
			attackers = append(attackers, fmt.Sprintf("203.0.%d.%d", 100+n, 1+a))
		}
	}
	const step = 5 * time.Millisecond
	var honest, honestRefused, sent, refused int
	for i := range int(12 * time.Second / step) {
		for _, a := range attackers {
			sent++
			if send(a) == http.StatusTooManyRequests {
				refused++
			}
		}
		if i%int(100*time.Millisecond/step) == 0 {
			honest++
			if st := send("198.51.100.7"); st == http.StatusTooManyRequests {
				honestRefused++
			} else if st != http.StatusBadRequest {
				t.Fatalf("honest SET: %d, want it parsed (400 malformed)", st)
			}
		}
		e.clock.Advance(step)
	}
	t.Logf("flood: %d sent, %d refused; honest: %d of %d refused", sent, refused, honestRefused, honest)
	if passed := sent - refused; passed > 12*1000+10_000 {
		t.Errorf("%d flood SETs passed in 12 s, more than the Overall level allows", passed)
	}
	if refused < sent/3 {
		t.Errorf("only %d of %d flood SETs refused: the flood did not reach the limit", refused, sent)
	}
	if honestRefused != 0 {
		t.Errorf("%d of the honest Authority's %d SETs refused, want none", honestRefused, honest)
	}
}

// The flood sender of BenchmarkMiddlewareReceiverFlood runs in a child
// process: this test binary again, running only TestReceiverFloodSender
// with floodSenderEnv set, so that the attacker's TLS and HTTP work is on
// neither the Service's goroutines nor its heap, and GOMAXPROCS=1 caps it
// at one core. The parent passes the target in the environment and drives
// it over stdin: a line "on" starts the flood, "off" stops it, "reset"
// stops it and zeroes the counts (each is acknowledged on stdout once
// done); end of input ends the process, which prints its report as one
// JSON line.
const (
	floodSenderEnv = "AGENTPASS_FLOOD_SENDER" // "1" in the child
	floodAddrEnv   = "AGENTPASS_FLOOD_ADDR"   // the Service's loopback address
	floodCAEnv     = "AGENTPASS_FLOOD_CA"     // file of the test network's CA
	floodSETEnv    = "AGENTPASS_FLOOD_SET"    // the SET sent
	floodRateEnv   = "AGENTPASS_FLOOD_RATE"   // SETs a second offered, over all connections
	floodConnsEnv  = "AGENTPASS_FLOOD_CONNS"  // keep-alive connections
	floodReport    = "flood-report "          // prefix of the report line
	floodBacklog   = 50 * time.Millisecond    // the most a late sender catches up
	floodAck       = "flood-ack "             // prefix of an acknowledgement
)

var (
	floodRate  = flag.Int("flood.rate", 2000, "SETs a second the flood of BenchmarkMiddlewareReceiverFlood offers")
	floodConns = flag.Int("flood.conns", 8, "keep-alive connections the flood of BenchmarkMiddlewareReceiverFlood uses")
)

// floodStats is the child's report.
type floodStats struct {
	Sent     int64   // requests answered
	Refused  int64   // answered 429 by the rate limit
	Parsed   int64   // answered anything else: read, parsed and refused or taken
	Errors   int64   // requests that failed (connection errors)
	Seconds  float64 // time spent flooding
	Offered  float64 // SETs a second asked for
	Achieved float64 // Sent / Seconds
}

// TestReceiverFloodSender is the child process of
// BenchmarkMiddlewareReceiverFlood; run alone, it does nothing.
func TestReceiverFloodSender(t *testing.T) {
	if os.Getenv(floodSenderEnv) != "1" {
		t.Skip("the flood sender of BenchmarkMiddlewareReceiverFlood (a child process)")
	}
	rate, err1 := strconv.Atoi(os.Getenv(floodRateEnv))
	conns, err2 := strconv.Atoi(os.Getenv(floodConnsEnv))
	caPEM, err3 := os.ReadFile(os.Getenv(floodCAEnv))
	if err := errors.Join(err1, err2, err3); err != nil || rate <= 0 || conns <= 0 {
		t.Fatalf("flood sender: bad parameters (%v)", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	addr, raw := os.Getenv(floodAddrEnv), os.Getenv(floodSETEnv)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: appHost, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		st         floodStats
		sent       atomic.Int64
		refused    atomic.Int64
		parsed     atomic.Int64
		failed     atomic.Int64
		firstLimit = make(chan struct{})
		limited    sync.Once
	)
	// Each connection sends at rate/conns on a fixed schedule. A sender
	// held up (a late answer, the OS not running it) catches up at once
	// with up to floodBacklog of SETs, and drops what is older: the rate
	// achieved shows how far the receiver and the machine kept up.
	worker := func(stop <-chan struct{}) {
		interval := time.Duration(float64(conns) * float64(time.Second) / float64(rate))
		next := time.Now()
		timer := time.NewTimer(0)
		defer timer.Stop()
		for {
			if d := time.Until(next); d > 0 {
				timer.Reset(d)
				select {
				case <-stop:
					return
				case <-timer.C:
				}
			} else {
				select {
				case <-stop:
					return
				default:
				}
				if -d > floodBacklog {
					next = time.Now().Add(-floodBacklog)
				}
			}
			next = next.Add(interval)
			req, _ := http.NewRequest(http.MethodPost, "https://"+appHost+eventsPath, strings.NewReader(raw))
			req.Header.Set("Content-Type", "application/secevent+jwt")
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			sent.Add(1)
			if resp.StatusCode == http.StatusTooManyRequests {
				refused.Add(1)
				limited.Do(func() { close(firstLimit) })
			} else {
				parsed.Add(1)
			}
		}
	}
	var (
		stop    chan struct{}
		running sync.WaitGroup
		since   time.Time
	)
	halt := func() {
		if stop != nil {
			close(stop)
			running.Wait()
			st.Seconds += time.Since(since).Seconds()
			stop = nil
		}
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "on":
			if stop == nil {
				ch := make(chan struct{})
				stop, since = ch, time.Now()
				for range conns {
					running.Go(func() { worker(ch) })
				}
			}
			// The first start is acknowledged once the limit refuses, so
			// the parent measures past the receiver's burst.
			select {
			case <-firstLimit:
			case <-time.After(10 * time.Second):
			}
		case "off":
			halt()
		case "reset": // after the warm-up: count only what is measured
			halt()
			sent.Store(0)
			refused.Store(0)
			parsed.Store(0)
			failed.Store(0)
			st.Seconds = 0
		}
		fmt.Printf("%s%s\n", floodAck, in.Text())
	}
	halt()
	st.Sent, st.Refused, st.Parsed, st.Errors = sent.Load(), refused.Load(), parsed.Load(), failed.Load()
	st.Offered = float64(rate)
	if st.Seconds > 0 {
		st.Achieved = float64(st.Sent) / st.Seconds
	}
	out, _ := json.Marshal(st)
	fmt.Printf("%s%s\n", floodReport, out)
}

// floodSender is the parent's handle on the child process.
type floodSender struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startFloodSender starts the child flooding e's receiver with raw, at
// rate SETs a second over conns connections.
func startFloodSender(tb testing.TB, e *env, raw string, rate, conns int) *floodSender {
	tb.Helper()
	ca := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, e.net.CAPEM(), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReceiverFloodSender$", "-test.count=1", "-test.timeout=0", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", floodSenderEnv+"=1",
		floodAddrEnv+"="+e.net.Addr(appHost), floodCAEnv+"="+ca, floodSETEnv+"="+raw,
		floodRateEnv+"="+strconv.Itoa(rate), floodConnsEnv+"="+strconv.Itoa(conns))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	f := &floodSender{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, floodAck) || strings.HasPrefix(l, floodReport) {
				f.lines <- l
			}
		}
	}()
	tb.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	return f
}

// set turns the flood on or off and returns once the child has done so.
func (f *floodSender) set(tb testing.TB, on bool) {
	cmd := "off"
	if on {
		cmd = "on"
	}
	f.send(tb, cmd)
}

// send sends the child one command and waits for its acknowledgement.
func (f *floodSender) send(tb testing.TB, cmd string) {
	tb.Helper()
	if _, err := io.WriteString(f.stdin, cmd+"\n"); err != nil {
		tb.Fatalf("flood sender: %v", err)
	}
	if l, ok := <-f.lines; !ok || l != floodAck+cmd {
		tb.Fatalf("flood sender answered %q to %q", l, cmd)
	}
}

// stop ends the child and returns its report.
func (f *floodSender) stop(tb testing.TB) floodStats {
	_ = f.stdin.Close()
	var st floodStats
	for l := range f.lines {
		if r, ok := strings.CutPrefix(l, floodReport); ok {
			if err := json.Unmarshal([]byte(r), &st); err != nil {
				tb.Fatalf("flood report %q: %v", r, err)
			}
		}
	}
	if err := f.cmd.Wait(); err != nil {
		tb.Fatalf("flood sender: %v", err)
	}
	return st
}

// The flood sender of BenchmarkMiddlewareReceiverFlood, run as a child
// process, counts what the receiver answered: on a frozen clock exactly
// the burst of 5 is parsed, everything after it refused 429.
func TestReceiverFloodSenderReports(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	e := pushEnv(t, func(c *service.Config) {
		c.RateLimits.Events = service.RateLimit{Client: service.Rate{PerSecond: 1, Burst: 5}}
	})
	f := startFloodSender(t, e, "x", 500, 2)
	f.set(t, true) // acknowledged after the first 429
	f.set(t, false)
	st := f.stop(t)
	if st.Parsed != 5 || st.Refused < 1 || st.Sent != st.Parsed+st.Refused || st.Errors != 0 {
		t.Errorf("report %+v, want 5 parsed, the rest refused, no errors", st)
	}
	if st.Offered != 500 || st.Seconds <= 0 || st.Achieved <= 0 {
		t.Errorf("report %+v, want the offered rate and the time and rate achieved", st)
	}
}
