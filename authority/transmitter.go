package authority

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// pathEventsPoll is the RFC 8936 poll endpoint, relative to BaseURL.
const pathEventsPoll = "/events/poll"

// ErrNoEventStore: the Store does not implement EventStore, so there is
// no outbox to transmit from.
var ErrNoEventStore = errors.New("authority: the Store keeps no event outbox")

// maxPushAnswer bounds what is read of a receiver's answer.
const maxPushAnswer = 4 << 10

// transmitter is the delivery state of one Authority.
type transmitter struct {
	store  EventStore
	client *http.Client
	owner  string
	// retry picks the jitter of a backoff, in [0.8, 1.2).
	jitter func() float64

	mu    sync.Mutex
	known map[string]knownReceiver // Service -> what was last recorded, to skip rewrites
	// polling counts each Service's long polls waiting, so that one
	// Service cannot hold every slot of polls.
	polling map[string]int
	// polls bounds the long polls waiting at once (each may hold a
	// database connection); beyond it a poll returns at once.
	polls chan struct{}
	// refused counts the SETs the outbox bound refused.
	refused atomic.Int64
}

const (
	maxLongPolls           = 64
	maxLongPollsPerService = 2 // a Service needs one; two cover a restart
)

func newTransmitter(s EventStore, client *http.Client) (*transmitter, error) {
	owner, err := jwtcheck.NewJTI()
	if err != nil {
		return nil, err
	}
	return &transmitter{store: s, client: client, owner: owner, known: map[string]knownReceiver{}, polling: map[string]int{},
		polls:  make(chan struct{}, maxLongPolls),
		jitter: func() float64 { return 0.8 + 0.4*rand.Float64() }}, nil
}

// RunEventTransmitter pushes the queued SETs to the Services that take
// pushes, until ctx ends, and returns ctx's error. The library starts no
// goroutine of its own: an application that wants events pushed runs it
// (on every replica; replicas sharing a store split the work, one SET in
// flight per subject). Without it, SETs wait in the outbox, and polling
// Services are served by the poll endpoint regardless.
func (a *Authority) RunEventTransmitter(ctx context.Context) error {
	if a.tx == nil {
		return ErrNoEventStore
	}
	// One waiter follows the store's generation for the whole run (on
	// PostgreSQL it holds one LISTEN connection) and signals new SETs.
	wctx, stop := context.WithCancel(ctx)
	wake := make(chan struct{}, 1)
	waiter := make(chan struct{})
	go func() {
		defer close(waiter)
		gen := int64(-1)
		for {
			g, err := a.tx.store.WaitEvents(wctx, gen)
			if err != nil {
				if wctx.Err() != nil {
					return
				}
				// A store that is down now may be back in a moment; the
				// SETs wait in it meanwhile.
				a.log.LogAttrs(wctx, slog.LevelWarn, "agentpass events: outbox", slog.String("reason", err.Error()))
				if !sleepCtx(wctx, time.Second) {
					return
				}
				continue
			}
			gen = g
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	done := make(chan time.Time, pushInFlight)
	inflight := 0
	// retries holds when the retries this loop scheduled are due.
	var retries []time.Time
	defer func() {
		stop()
		<-waiter
		for ; inflight > 0; inflight-- {
			<-done
		}
	}()
	for {
		// Claim as many due SETs as there are free slots; each push
		// reports when its retry is due.
		if free := pushInFlight - inflight; free > 0 {
			now := a.now()
			evs, err := a.tx.store.ClaimEvents(ctx, a.tx.owner, now, now.Add(pushLease), free, pushPerService)
			if err != nil && ctx.Err() == nil {
				a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: outbox", slog.String("reason", err.Error()))
			}
			for _, ev := range evs {
				inflight++
				go func() { done <- a.pushOne(ctx, ev) }()
			}
		}
		// Sleep until a push ends, a new SET is queued, a retry is due,
		// or a lease of a replica that died may have lapsed.
		wait := pushLease
		if len(retries) > 0 {
			wait = min(wait, max(slices.MinFunc(retries, time.Time.Compare).Sub(a.now()), time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case at := <-done:
			inflight--
			if !at.IsZero() && len(retries) < maxRetryTimes {
				retries = append(retries, at)
			}
		case <-wake:
		case <-t.C:
			now := a.now()
			retries = slices.DeleteFunc(retries, func(at time.Time) bool { return !at.After(now) })
		}
		t.Stop()
	}
}

// maxRetryTimes bounds the retry times a transmitter remembers; beyond
// it, retries wait for the next lease tick.
const maxRetryTimes = 1024

// sleepCtx waits d or until ctx ends, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliverDue pushes every SET due now (claimed from the store), at most
// pushPerService at once per Service and one per subject, and returns when
// the earliest retry it scheduled is due.
func (a *Authority) deliverDue(ctx context.Context) (next time.Time, err error) {
	for {
		now := a.now()
		evs, err := a.tx.store.ClaimEvents(ctx, a.tx.owner, now, now.Add(pushLease), 64, pushPerService)
		if err != nil || len(evs) == 0 {
			return next, err
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, ev := range evs {
			wg.Go(func() {
				at := a.pushOne(ctx, ev)
				mu.Lock()
				if !at.IsZero() && (next.IsZero() || at.Before(next)) {
					next = at
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return next, ctx.Err()
		}
	}
}

// pushOne pushes ev once and records the outcome: delivered or refused
// for good (deleted), or due again at the returned time.
func (a *Authority) pushOne(ctx context.Context, ev *OutboxEvent) time.Time {
	ctx, span := a.tel.Start(ctx, "agentpass.set_delivery", trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(telemetry.HashID(telemetry.KeyAuthorization, ev.Subject), attribute.String("agentpass.service", ev.Service))
	}
	retryAfter, err := a.push(ctx, ev)
	outcome := telemetry.OK
	if err != nil {
		outcome = telemetry.Failed
	}
	telemetry.End(span, outcome)
	var next time.Time
	attrs := []slog.Attr{slog.String("service", ev.Service), slog.String("authorization_id", ev.Subject), slog.String("jti", ev.JTI)}
	var perm *permanentError
	switch {
	case err == nil:
		a.log.LogAttrs(ctx, slog.LevelDebug, "agentpass events: delivered", attrs...)
	case errors.As(err, &perm):
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: refused by the receiver", append(attrs, slog.String("code", perm.code))...)
	default:
		next = a.retryAt(ev, retryAfter)
		if next.IsZero() {
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: given up after the retry horizon",
				append(attrs, slog.String("reason", err.Error()))...)
		}
	}
	// A lease lost to another replica (ours lapsed) is theirs to finish.
	if ferr := a.tx.store.FinishEvent(context.WithoutCancel(ctx), a.tx.owner, ev.JTI, next); ferr != nil && !errors.Is(ferr, ErrNotFound) {
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: outbox", append(attrs, slog.String("reason", ferr.Error()))...)
	}
	return next
}

// retryAt returns when ev is next pushed after a failed attempt: 100 ms
// doubling per attempt with ±20 % jitter, at most 30 s, later if the
// receiver asked (Retry-After), or zero once the push horizon is passed.
func (a *Authority) retryAt(ev *OutboxEvent, retryAfter time.Duration) time.Time {
	d := pushMaxRetry
	if ev.Attempts < 20 {
		d = min(pushFirstRetry<<ev.Attempts, pushMaxRetry)
	}
	d = time.Duration(float64(d) * a.tx.jitter())
	d = max(d, min(retryAfter, pushMaxRetry))
	at := a.now().Add(d)
	if at.After(ev.CreatedAt.Add(PushHorizon)) {
		return time.Time{}
	}
	return at
}

// permanentError is a receiver's refusal of a SET: retrying cannot help.
type permanentError struct{ code string }

func (e *permanentError) Error() string { return "authority: receiver refused the SET: " + e.code }

// push POSTs ev's SET to its receiver (RFC 8935). It returns nil when the
// receiver took it, a *permanentError when it refused it, and otherwise
// an error to retry after, with the receiver's Retry-After if any.
func (a *Authority) push(ctx context.Context, ev *OutboxEvent) (time.Duration, error) {
	// The receiver was checked when recorded; check again, since a store
	// is shared and an Authority must never be a reflector.
	if !ev.Push || !pass.SameOrigin(ev.Receiver, ev.Service) {
		return 0, &permanentError{code: "receiver_not_on_service_origin"}
	}
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.Receiver, bytes.NewReader([]byte(ev.SET)))
	if err != nil {
		return 0, &permanentError{code: "bad_receiver"}
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	resp, err := a.tx.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxPushAnswer))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		var ra time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			ra = time.Duration(min(s, 3600)) * time.Second
		}
		return ra, errors.New("authority: receiver answered " + strconv.Itoa(resp.StatusCode))
	case resp.StatusCode == http.StatusBadRequest:
		var e pass.SETError
		code := "invalid_request"
		if json.Unmarshal(body, &e) == nil && e.Err != "" && len(e.Err) <= 64 {
			code = e.Err
		}
		return 0, &permanentError{code: code}
	}
	return 0, &permanentError{code: "status_" + strconv.Itoa(resp.StatusCode)}
}

// noteReceiver records how the Service at origin takes events, from its
// configuration cfg as discovered for the assertion just checked.
// It runs before a redemption commits, so the outbox knows the Service of
// every authorization it creates.
// knownReceiver is the receiver last recorded for a Service, if any.
type knownReceiver struct {
	set bool
	e   pass.ServiceEvents
}

func (k knownReceiver) equal(o knownReceiver) bool {
	return k.set == o.set && k.e.DeliveryMethod == o.e.DeliveryMethod && k.e.Receiver == o.e.Receiver &&
		slices.Equal(k.e.EventsAccepted, o.e.EventsAccepted)
}

var errNoEvents = errors.New("authority: the Service publishes no events extension")

func (a *Authority) noteReceiver(ctx context.Context, origin string, cfg *pass.ServiceConfiguration) {
	if a.tx == nil {
		return
	}
	x := cfg.Extensions
	var rcv *pass.ServiceEvents
	var key knownReceiver
	evErr := errNoEvents
	if x.Has(pass.ExtEvents) {
		// Read only when published: most Services take no events, and
		// this runs on every validation.
		var e pass.ServiceEvents
		if e, evErr = pass.ServiceEventsFrom(x, origin); evErr == nil {
			rcv = &e
			key = knownReceiver{set: true, e: e}
		}
	}
	a.tx.mu.Lock()
	prev, seen := a.tx.known[origin]
	a.tx.mu.Unlock()
	if seen && prev.equal(key) {
		return
	}
	// Said once per Service (and change), so an operator sees why a
	// Service that meant to take events gets none: the v0.1 flow goes on.
	if ig := x.Ignored(); len(ig) > 0 {
		reasons := make([]string, len(ig))
		for i, e := range ig {
			reasons[i] = e.URI + ": " + e.Reason
		}
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass service extensions ignored", slog.String("service", origin), slog.Any("ignored", reasons))
	}
	if x.Has(pass.ExtEvents) && evErr != nil {
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: the Service's events extension is unusable", slog.String("service", origin), slog.String("reason", evErr.Error()))
	}
	if err := a.tx.store.SetEventReceiver(ctx, origin, rcv); err != nil {
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: recording the receiver", slog.String("service", origin), slog.String("reason", err.Error()))
		return
	}
	a.tx.mu.Lock()
	if len(a.tx.known) >= maxKnownReceivers {
		clear(a.tx.known)
	}
	a.tx.known[origin] = key
	a.tx.mu.Unlock()
}

const maxKnownReceivers = 10_000

// servePoll is POST {poll} (RFC 8936): a Service, authenticated by its
// assertion, acknowledges SETs and receives those queued for it, waiting
// up to maxLongPoll for one unless it asks to return at once.
func (a *Authority) servePoll(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w.Header())
	if !a.allowService(w, r, "events poll") {
		return
	}
	ctx := r.Context()
	if httpx.BearerToken(r) == "" {
		a.reject(w, "events poll", errNoAssertion)
		return
	}
	var in pass.PollRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, "events poll", err)
		return
	}
	svc, tok, err := a.authenticate(ctx, r)
	if err != nil {
		a.reject(w, "events poll", err)
		return
	}
	if err := a.spend(ctx, tok); err != nil {
		a.reject(w, "events poll", err)
		return
	}
	if a.tx == nil {
		httpx.WriteJSON(w, http.StatusOK, pass.PollResponse{Sets: map[string]string{}})
		return
	}
	done := append([]string(nil), in.Ack...)
	for jti, e := range in.SetErrs {
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass events: refused by the poller",
			slog.String("service", svc), slog.String("jti", jti), slog.String("code", e.Err))
		done = append(done, jti)
	}
	if len(done) > 0 {
		if err := a.tx.store.AckEvents(ctx, svc, done); err != nil {
			a.reject(w, "events poll", err)
			return
		}
	}
	max := defaultPollSize
	if in.MaxEvents != nil {
		max = *in.MaxEvents
	}
	out := pass.PollResponse{Sets: map[string]string{}}
	if max == 0 {
		httpx.WriteJSON(w, http.StatusOK, out)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, maxLongPoll)
	defer cancel()
	if !in.ReturnImmediately {
		if release, ok := a.tx.longPoll(svc); ok {
			defer release()
		} else {
			in.ReturnImmediately = true
		}
	}
	for {
		gen, err := a.tx.store.WaitEvents(wctx, -1)
		if err != nil {
			break
		}
		evs, more, err := a.tx.store.PollEvents(ctx, svc, max, a.now())
		if err != nil {
			a.reject(w, "events poll", err)
			return
		}
		if len(evs) > 0 || in.ReturnImmediately {
			for _, e := range evs {
				out.Sets[e.JTI] = e.SET
			}
			out.MoreAvailable = more
			break
		}
		if _, err := a.tx.store.WaitEvents(wctx, gen); err != nil {
			break
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// longPoll takes a long-poll slot for svc, if one is free and svc holds
// fewer than maxLongPollsPerService, and returns its release.
func (t *transmitter) longPoll(svc string) (release func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.polling[svc] >= maxLongPollsPerService {
		return nil, false
	}
	select {
	case t.polls <- struct{}{}:
	default:
		return nil, false
	}
	t.polling[svc]++
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.polling[svc]--; t.polling[svc] <= 0 {
			delete(t.polling, svc)
		}
		<-t.polls
	}, true
}

// eventsExtension is the events extension this Authority advertises.
func (a *Authority) eventsExtension() (pass.Extension, error) {
	return pass.AuthorityEvents{
		DeliveryMethods: []string{pass.DeliveryPush, pass.DeliveryPoll},
		Poll:            a.base + pathEventsPoll,
		EventTypes:      secevent.Types(),
	}.Extension()
}
