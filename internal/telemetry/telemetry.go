// Package telemetry owns the OpenTelemetry instruments of the role packages,
// so every role records under the same names (agentpass.*) and attributes.
//
// It uses the OpenTelemetry API only: the application installs an SDK and
// exporter, or passes its providers in a role's Config. Until then every
// call is a no-op that allocates nothing, so an uninstrumented deployment
// pays nothing on its hot paths.
//
// Attributes never carry a pass, token, key or e-mail address: users are
// named by their domain and identifiers by a hash.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// ScopeName is the instrumentation scope of every tracer and meter.
const ScopeName = "github.com/agentpass-go/agentpass"

// Attribute keys shared by spans and metrics.
const (
	KeyRole          = attribute.Key("agentpass.role")
	KeyEndpoint      = attribute.Key("agentpass.endpoint")
	KeyOutcome       = attribute.Key("agentpass.outcome")
	KeyMethod        = attribute.Key("agentpass.method")
	KeyUserDomain    = attribute.Key("agentpass.user_domain")
	KeyAgent         = attribute.Key("agentpass.agent")
	KeyTaskID        = attribute.Key("agentpass.task_id")
	KeyAuthority     = attribute.Key("agentpass.authority")
	KeyAuthorization = attribute.Key("agentpass.authorization_id_hash")
)

// Outcomes recorded on spans and metrics.
const (
	OK       = "ok"
	Rejected = "rejected"
	Failed   = "error"
)

// idleGlobal is otel's global TracerProvider as it is before an application
// installs one: its spans record nothing, so Start skips it without
// allocating. An installed provider replaces the global value, so a
// comparison per call tells the two apart.
var idleGlobal = func() trace.TracerProvider {
	tp := otel.GetTracerProvider()
	if fmt.Sprintf("%T", tp) != "*global.tracerProvider" {
		return nil
	}
	return tp
}()

// T records one role's spans and metrics. A nil *T records nothing. It is
// safe for concurrent use.
type T struct {
	tracer trace.Tracer
	global bool // tracer comes from otel's global provider
	off    bool // the provider is a no-op
	// idleMeter: the meter is otel's global before an SDK was installed,
	// which keeps every observable instrument it is given for ever.
	idleMeter bool
	role      attribute.KeyValue
	meter     metric.Meter

	requests    metric.Int64Counter
	decisions   metric.Int64Counter
	validation  metric.Float64Histogram
	redemption  metric.Float64Histogram
	cacheHits   metric.Int64Counter
	cacheMisses metric.Int64Counter
	rateLimited metric.Int64Counter
}

// New returns the instruments of role ("authority", "service", ...), from
// tp and mp, or from otel's global providers when nil.
func New(role string, tp trace.TracerProvider, mp metric.MeterProvider) (*T, error) {
	t := &T{role: KeyRole.String(role)}
	if tp == nil {
		tp, t.global = otel.GetTracerProvider(), true
	}
	if _, ok := tp.(noop.TracerProvider); ok {
		t.off = true
	}
	t.tracer = tp.Tracer(ScopeName)
	if mp == nil {
		mp = otel.GetMeterProvider()
		t.idleMeter = fmt.Sprintf("%T", mp) == "*global.meterProvider"
	}
	t.meter = mp.Meter(ScopeName)
	m := t.meter
	var err error
	fail := func(e error) {
		if err == nil && e != nil {
			err = fmt.Errorf("%s: telemetry: %w", role, e)
		}
	}
	var e error
	t.requests, e = m.Int64Counter("agentpass.requests",
		metric.WithDescription("Requests served, by endpoint and outcome."), metric.WithUnit("{request}"))
	fail(e)
	t.decisions, e = m.Int64Counter("agentpass.decisions",
		metric.WithDescription("Issuance decisions, by method (policy or operator) and outcome."), metric.WithUnit("{decision}"))
	fail(e)
	t.validation, e = m.Float64Histogram("agentpass.validation.duration",
		metric.WithDescription("Time to validate a pass."), metric.WithUnit("s"))
	fail(e)
	t.redemption, e = m.Float64Histogram("agentpass.redemption.duration",
		metric.WithDescription("Time to redeem a pass."), metric.WithUnit("s"))
	fail(e)
	t.cacheHits, e = m.Int64Counter("agentpass.check_cache.hits",
		metric.WithDescription("Requests served from a cached authorization check."), metric.WithUnit("{request}"))
	fail(e)
	t.cacheMisses, e = m.Int64Counter("agentpass.check_cache.misses",
		metric.WithDescription("Requests that needed an authorization check."), metric.WithUnit("{request}"))
	fail(e)
	t.rateLimited, e = m.Int64Counter("agentpass.rate_limited",
		metric.WithDescription("Requests refused by a rate limit, by endpoint."), metric.WithUnit("{request}"))
	fail(e)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// tracing reports whether spans can record.
func (t *T) tracing() bool {
	if t == nil || t.off {
		return false
	}
	return !t.global || idleGlobal == nil || otel.GetTracerProvider() != idleGlobal
}

// Start starts a span named name under ctx. When no provider records, it
// returns ctx and a no-op span without allocating.
func (t *T) Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if !t.tracing() {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(t.role))
}

var noopSpan = trace.SpanFromContext(context.Background())

// End ends span with outcome, an error status when it is Failed. No error
// text is recorded: it may quote a remote answer or an address.
func End(span trace.Span, outcome string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(KeyOutcome.String(outcome))
	if outcome == Failed {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// ErrOutcome names the outcome of an error: nil is OK, a wire error below
// 500 Rejected, anything else Failed.
func ErrOutcome(err error) string {
	if err == nil {
		return OK
	}
	var pe *pass.Error
	if errors.As(err, &pe) {
		return Outcome(pe.Status)
	}
	return Failed
}

// Outcome names the outcome of an HTTP status.
func Outcome(status int) string {
	switch {
	case status >= 500:
		return Failed
	case status >= 400:
		return Rejected
	}
	return OK
}

// Quiet reports whether no span would record and neither a request nor a
// check-cache result would be counted now, so that a hot path tests once
// per request whether to start a span, work out an outcome or count a
// cached check no one records.
func (t *T) Quiet(ctx context.Context) bool {
	return t == nil || !t.tracing() && !t.requests.Enabled(ctx) && !t.cacheHits.Enabled(ctx)
}

// Request counts one request of endpoint.
func (t *T) Request(ctx context.Context, endpoint, outcome string) {
	if t == nil || !t.requests.Enabled(ctx) {
		return
	}
	t.requests.Add(ctx, 1, metric.WithAttributes(t.role, KeyEndpoint.String(endpoint), KeyOutcome.String(outcome)))
}

// Decision counts one decision on an issuance request; method is "policy"
// or "operator".
func (t *T) Decision(ctx context.Context, method, outcome string) {
	if t == nil || !t.decisions.Enabled(ctx) {
		return
	}
	t.decisions.Add(ctx, 1, metric.WithAttributes(t.role, KeyMethod.String(method), KeyOutcome.String(outcome)))
}

// Validation records the time a validation took since start.
func (t *T) Validation(ctx context.Context, start time.Time, outcome string) {
	if t == nil || !t.validation.Enabled(ctx) {
		return
	}
	t.validation.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(t.role, KeyOutcome.String(outcome)))
}

// Redemption records the time a redemption took since start.
func (t *T) Redemption(ctx context.Context, start time.Time, endpoint, outcome string) {
	if t == nil || !t.redemption.Enabled(ctx) {
		return
	}
	t.redemption.Record(ctx, time.Since(start).Seconds(),
		metric.WithAttributes(t.role, KeyEndpoint.String(endpoint), KeyOutcome.String(outcome)))
}

// CheckCache counts a request served from the cached authorization check
// (hit) or one that needed a check (miss).
func (t *T) CheckCache(ctx context.Context, hit bool) {
	if t == nil {
		return
	}
	c := t.cacheMisses
	if hit {
		c = t.cacheHits
	}
	if c.Enabled(ctx) {
		c.Add(ctx, 1, metric.WithAttributes(t.role))
	}
}

// RateLimited counts a request refused by a rate limit.
func (t *T) RateLimited(ctx context.Context, endpoint string) {
	if t == nil || !t.rateLimited.Enabled(ctx) {
		return
	}
	t.rateLimited.Add(ctx, 1, metric.WithAttributes(t.role, KeyEndpoint.String(endpoint)))
}

// Pending registers the agentpass.pending gauge, observed with count at
// each collection. It is not registered with otel's global provider before
// an SDK is installed: that provider would keep the callback, and what it
// refers to, for the life of the process, once per role built.
func (t *T) Pending(count func(context.Context) (int64, error)) error {
	if t == nil || t.idleMeter {
		return nil
	}
	_, err := t.meter.Int64ObservableGauge("agentpass.pending",
		metric.WithDescription("Issuance requests waiting for a decision."), metric.WithUnit("{request}"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			n, err := count(ctx)
			if err != nil {
				return err
			}
			o.Observe(n, metric.WithAttributes(t.role))
			return nil
		}))
	return err
}

// UserDomain is the attribute of a user's e-mail address: its domain only.
func UserDomain(email string) attribute.KeyValue {
	_, d, _ := strings.Cut(email, "@")
	return KeyUserDomain.String(strings.ToLower(d))
}

// HashID names an identifier by a short hash, so spans can be correlated
// without carrying ids that grant or reveal anything.
func HashID(k attribute.Key, id string) attribute.KeyValue {
	if id == "" {
		return k.String("")
	}
	h := secret.Hash(id)
	if len(h) > 16 {
		h = h[:16]
	}
	return k.String(h)
}

// Audit returns the audit attributes of a span: user domain, agent, task,
// authority and the hashed authorization id, the empty ones left out.
func Audit(user, agent, task, authority, authorizationID string) []attribute.KeyValue {
	kv := make([]attribute.KeyValue, 0, 5)
	if user != "" {
		kv = append(kv, UserDomain(user))
	}
	if agent != "" {
		kv = append(kv, KeyAgent.String(agent))
	}
	if task != "" {
		kv = append(kv, KeyTaskID.String(task))
	}
	if authority != "" {
		kv = append(kv, KeyAuthority.String(authority))
	}
	if authorizationID != "" {
		kv = append(kv, HashID(KeyAuthorization, authorizationID))
	}
	return kv
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Latency says which histogram, if any, times an endpoint.
type Latency int

// Latencies.
const (
	NoLatency Latency = iota
	ValidationLatency
	RedemptionLatency
)

// Handler wraps an endpoint's handler in a server span and counts its
// requests by outcome (from the status it answers), timing it in the
// histogram lat names. With nothing recording, it calls h directly.
func (t *T) Handler(endpoint string, lat Latency, h http.HandlerFunc) http.HandlerFunc {
	if t == nil {
		return h
	}
	name := "agentpass." + endpoint
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !t.tracing() && !t.requests.Enabled(ctx) {
			h(w, r)
			return
		}
		start := time.Now()
		ctx, span := t.Start(ctx, name, trace.SpanKindServer)
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r.WithContext(ctx))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		outcome := Outcome(sw.status)
		if span.IsRecording() {
			span.SetAttributes(KeyEndpoint.String(endpoint))
		}
		End(span, outcome)
		t.Request(ctx, endpoint, outcome)
		switch lat {
		case ValidationLatency:
			t.Validation(ctx, start, outcome)
		case RedemptionLatency:
			t.Redemption(ctx, start, endpoint, outcome)
		}
	}
}

// Annotate adds the audit attributes (see Audit) to the span of ctx, when
// it records.
func Annotate(ctx context.Context, user, agent, task, authority, authorizationID string) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(Audit(user, agent, task, authority, authorizationID)...)
	}
}
