package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/pass"
)

// Bounds of the event receiver.
const (
	// maxSETBytes bounds a pushed SET: ours are well under 2 KiB.
	maxSETBytes = 16 << 10
	// bufferTTL is how long a SET for a delegation not held yet waits for
	// the redemption that creates it (a revocation racing a redemption).
	bufferTTL = 2 * time.Minute
	// bufferPerAuthority bounds that buffer per Authority, so one
	// Authority's flood cannot crowd out another's.
	bufferPerAuthority = 256
	// maxKnownAuthorities bounds the Authorities remembered from
	// redemptions and checks (whose SETs may be buffered, and which the
	// poller asks).
	maxKnownAuthorities = 1024
	// mediaSET is the RFC 8935 media type of a pushed SET.
	mediaSET = "application/secevent+jwt"
)

// events is the receiver's state: Authorities seen on this process, and
// SETs waiting for their delegation's redemption.
type events struct {
	mu     sync.Mutex
	known  map[string]knownAuthority // by Authority identifier
	seq    uint64                    // use counter for knownAuthority.used
	buffer map[string][]bufferedEvent
	wake   chan struct{} // closed and replaced when known grows
}

// knownAuthority is an Authority the receiver and poller serve: its
// configuration URL, whether it is configured (never evicted), and when a
// redemption or check last used it.
type knownAuthority struct {
	configURL  string
	configured bool
	used       uint64
	gone       chan struct{} // closed when evicted: its poller stops
}

type bufferedEvent struct {
	e         MissionEvent
	configURL string // where the keys that verified it were found
	until     time.Time
}

func newEvents(st *settings) *events {
	ev := &events{known: map[string]knownAuthority{}, buffer: map[string][]bufferedEvent{}, wake: make(chan struct{})}
	if sa := st.ServiceAuthority; sa != nil {
		ev.known[sa.Authority] = knownAuthority{configURL: sa.AuthorityConfigurationURL, configured: true, gone: make(chan struct{})}
	}
	for _, f := range st.TrustedFederated {
		if _, ok := ev.known[f.Authority]; !ok {
			ev.known[f.Authority] = knownAuthority{configURL: f.AuthorityConfigurationURL, configured: true, gone: make(chan struct{})}
		}
	}
	return ev
}

// remember records an Authority the Service trusted for a delegation. The
// first configuration recorded for an identifier stays: any configuration
// may claim any identifier, and replacing it would let one redemption
// redirect where the Authority's SETs are verified and start another
// poller per URL. When the table is full, the learned Authority least
// recently used by a redemption or check makes room, so Authorities that
// only passed by once cannot lock out the ones in use.
func (ev *events) remember(authority, configURL string) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.seq++
	if k, ok := ev.known[authority]; ok {
		if k.configURL == configURL {
			k.used = ev.seq
			ev.known[authority] = k
		}
		return
	}
	if len(ev.known) >= maxKnownAuthorities {
		oldest, found := "", false
		for id, k := range ev.known {
			if !k.configured && (!found || k.used < ev.known[oldest].used) {
				oldest, found = id, true
			}
		}
		if !found {
			return
		}
		close(ev.known[oldest].gone)
		delete(ev.known, oldest)
		// Its early SETs go with it: the buffer holds at most a share
		// per Authority in the table, however many pass through.
		delete(ev.buffer, oldest)
	}
	ev.known[authority] = knownAuthority{configURL: configURL, used: ev.seq, gone: make(chan struct{})}
	close(ev.wake)
	ev.wake = make(chan struct{})
}

func (ev *events) configURL(authority string) (string, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	k, ok := ev.known[authority]
	return k.configURL, ok
}

func (ev *events) snapshot() (map[string]string, <-chan struct{}) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	out := make(map[string]string, len(ev.known))
	for id, k := range ev.known {
		out[id] = k.configURL
	}
	return out, ev.wake
}

// watch returns a channel closed when authority at configURL leaves the
// table, or false when it is not in it.
func (ev *events) watch(authority, configURL string) (<-chan struct{}, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	k, ok := ev.known[authority]
	if !ok || k.configURL != configURL {
		return nil, false
	}
	return k.gone, true
}

// hold buffers e until its delegation is redeemed; it reports false when
// the Authority's share is full of live entries.
func (ev *events) hold(e MissionEvent, configURL string, now time.Time) bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if k, ok := ev.known[e.Authority]; !ok || k.configURL != configURL {
		// Evicted (or replaced) while its SET was being verified: its
		// share left with it, and nothing would ever drop a new one.
		return false
	}
	list := ev.buffer[e.Authority]
	live := list[:0]
	for _, b := range list {
		if b.until.After(now) {
			live = append(live, b)
		}
	}
	if len(live) >= bufferPerAuthority {
		ev.buffer[e.Authority] = live
		return false
	}
	ev.buffer[e.Authority] = append(live, bufferedEvent{e: e, configURL: configURL, until: now.Add(bufferTTL)})
	return true
}

// take removes and returns the live buffered events of a delegation, those
// verified with the keys of its own Authority's configuration.
func (ev *events) take(authority, configURL, authorizationID string, now time.Time) []MissionEvent {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	list := ev.buffer[authority]
	var out []MissionEvent
	rest := list[:0]
	for _, b := range list {
		switch {
		case !b.until.After(now):
		case b.e.AuthorizationID == authorizationID:
			if b.configURL == configURL {
				out = append(out, b.e)
			}
		default:
			rest = append(rest, b)
		}
	}
	if len(rest) == 0 {
		delete(ev.buffer, authority)
	} else {
		ev.buffer[authority] = rest
	}
	return out
}

// redeemed runs once a redemption committed: the Authority becomes known,
// and SETs that arrived before the delegation existed are applied now.
func (s *Service) redeemed(ctx context.Context, rec *DelegationRecord) {
	s.events.remember(rec.Authority, rec.ConfigurationURL)
	for _, e := range s.events.take(rec.Authority, rec.ConfigurationURL, rec.AuthorizationID, s.cfg.Now()) {
		if _, err := s.cfg.Store.ApplyEvent(ctx, e); err != nil {
			// The next check still finds what the event said.
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventSET, slog.String("outcome", "buffered_apply_failed"),
				slog.String("authorization_id", rec.AuthorizationID), slog.String("reason", err.Error()))
		}
	}
}

// eventSET names the audit records of the receiver.
const eventSET = "agentpass event"

// setAnswer is the outcome of one SET: 202, 400 with an RFC 8935 code, or
// a 5xx the sender retries.
type setAnswer struct {
	status int
	code   string // RFC 8935 err, for 400
	desc   string
}

var (
	setAccepted    = setAnswer{status: http.StatusAccepted}
	setUnavailable = setAnswer{status: http.StatusServiceUnavailable, desc: "try again later"}
)

func setRefused(err error) setAnswer {
	code := secevent.Code(err)
	if code == "" {
		code = "invalid_request"
	}
	return setAnswer{status: http.StatusBadRequest, code: code, desc: describe(err)}
}

// describe is the client-facing text of a refusal: the class and reason
// secevent chose, never a key, URL or store detail.
func describe(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "secevent: ")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// serveEvents is the RFC 8935 receiver. The rate limit (a wrapper, see
// RateLimits.Events) comes first and refuses from the request line and
// headers alone; then media type and size, before anything is parsed.
func (s *Service) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpx.MethodNotAllowed(w, http.MethodPost)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != mediaSET {
		writeSETAnswer(w, setAnswer{status: http.StatusUnsupportedMediaType, code: "invalid_request", desc: "Content-Type must be " + mediaSET})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSETBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeSETAnswer(w, setAnswer{status: http.StatusRequestEntityTooLarge, code: "invalid_request", desc: "the SET is too large"})
			return
		}
		writeSETAnswer(w, setAnswer{status: http.StatusBadRequest, code: "invalid_request", desc: "the body could not be read"})
		return
	}
	writeSETAnswer(w, s.receiveSET(r.Context(), strings.TrimSpace(string(body)), true))
}

func writeSETAnswer(w http.ResponseWriter, a setAnswer) {
	w.Header().Set("Cache-Control", "no-store")
	if a.status == http.StatusAccepted {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if a.status >= 500 {
		w.Header().Set("Retry-After", "1")
	}
	httpx.WriteJSON(w, a.status, pass.SETError{Err: a.code, Description: a.desc})
}

// receiveSET verifies and applies one SET, pushed or polled. Nothing is
// fetched for a subject the Service does not hold (unless it comes from an
// Authority already trusted, see bufferSET); keys come only from the
// configuration recorded for the delegation; the jti is recorded only
// after the event was applied, so an event whose apply failed is applied
// when it is delivered again.
func (s *Service) receiveSET(ctx context.Context, raw string, push bool) setAnswer {
	tok, err := secevent.Parse(raw)
	if err != nil {
		return s.setLog(ctx, setRefused(err), "", "malformed", err)
	}
	subject := tok.Subject()
	rec, err := s.cfg.Store.Delegation(ctx, subject)
	switch {
	case errors.Is(err, ErrNotFound):
		return s.bufferSET(ctx, tok, push)
	case err != nil:
		return s.setLog(ctx, setUnavailable, subject, "store_failed", err)
	}
	set, ans, err := s.verifySET(ctx, tok, rec.Authority, rec.ConfigurationURL, rec.TrustMode, push)
	if err != nil {
		return s.setLog(ctx, ans, subject, "refused", err)
	}
	replay := s.replay.events
	if l, ok := replay.(dpop.ReplayLookup); ok {
		seen, err := l.Contains(ctx, set.Issuer, set.JTI)
		if err != nil {
			return s.setLog(ctx, setUnavailable, subject, "replay_cache_failed", err)
		}
		if seen {
			return s.setLog(ctx, setAccepted, subject, "duplicate", nil)
		}
	}
	e, err := missionEvent(set, rec)
	if err != nil {
		return s.setLog(ctx, setRefused(err), subject, "refused", err)
	}
	outcome := "ignored"
	if e != nil {
		applied, err := s.cfg.Store.ApplyEvent(ctx, *e)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return s.setLog(ctx, setUnavailable, subject, "apply_failed", err)
		case applied:
			outcome = "applied"
		default:
			outcome = "stale"
		}
	}
	// Recorded after the apply: a failure above leaves the jti free, so a
	// redelivery applies the event. A failure here is harmless: the
	// version guard makes a second apply change nothing.
	if _, err := replay.Seen(ctx, set.Issuer, set.JTI, s.cfg.Now().Add(secevent.ReplayLifetime)); err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventSET, slog.String("outcome", "replay_record_failed"), slog.String("reason", err.Error()))
	}
	return s.setLog(ctx, setAccepted, subject, outcome, nil, slog.String("event", set.Event.Type))
}

// bufferSET handles a SET for a delegation the Service does not hold: 202
// and nothing else, unless its issuer is an Authority this Service already
// trusts; then it is verified with that Authority's keys and kept until the
// redemption of its subject commits (a revocation can overtake the
// redemption it revokes). The buffer is per process: with replicas, a SET
// buffered by one is applied when that replica serves the redemption, and
// otherwise found by the delegation's first authorization check.
func (s *Service) bufferSET(ctx context.Context, tok *secevent.Token, push bool) setAnswer {
	subject := tok.Subject()
	cfgURL, ok := s.events.configURL(tok.Issuer())
	if !ok {
		return s.setLog(ctx, setAccepted, subject, "unknown_subject", nil)
	}
	set, ans, err := s.verifySET(ctx, tok, tok.Issuer(), cfgURL, "", push)
	if err != nil {
		if ans.status == http.StatusBadRequest {
			// Answered as for any unknown subject, so a sender learns
			// nothing about which issuers this Service trusts.
			ans = setAccepted
		}
		return s.setLog(ctx, ans, subject, "refused", err)
	}
	e, err := missionEvent(set, &DelegationRecord{AuthorizationID: subject, Authority: set.Issuer})
	switch {
	case err != nil:
		return s.setLog(ctx, setAccepted, subject, "refused", err)
	case e == nil:
		return s.setLog(ctx, setAccepted, subject, "ignored", nil)
	case !s.events.hold(*e, cfgURL, s.cfg.Now()):
		if _, ok := s.events.watch(set.Issuer, cfgURL); !ok {
			// Its Authority left the table while the SET was verified:
			// asked again later, by which time the redemption it may
			// overtake has put the Authority back, or the delegation is
			// held and the SET applies directly.
			return s.setLog(ctx, setUnavailable, subject, "authority_evicted", nil)
		}
		return s.setLog(ctx, setAccepted, subject, "buffer_full", nil)
	}
	// The redemption may have committed (and looked in the buffer) since
	// the lookup above: look again, so the event is applied either way.
	if rec, err := s.cfg.Store.Delegation(ctx, subject); err == nil && rec.Authority == set.Issuer {
		s.redeemed(ctx, rec)
	}
	return s.setLog(ctx, setAccepted, subject, "buffered", nil)
}

// verifySET checks tok against the Authority at configURL: its keys (the
// discovery cache, one rate-limited refetch for an unknown kid), iss, aud
// and, for a push, iat. mode, when set, is the trust mode recorded at
// redemption, which the configuration must still state.
func (s *Service) verifySET(ctx context.Context, tok *secevent.Token, authority, configURL string, mode pass.TrustMode, push bool) (*secevent.SET, setAnswer, error) {
	cfg, err := s.cfg.Discovery.AuthorityConfiguration(ctx, configURL)
	if err != nil {
		return nil, setUnavailable, err
	}
	if cfg.Authority != authority || mode != "" && cfg.TrustMode != mode {
		return nil, setUnavailable, fmt.Errorf("service: the configuration at %s no longer describes %s", configURL, authority)
	}
	set, err := tok.Verify(ctx, s.cfg.Discovery, cfg.JWKSURI, authority, s.cfg.origin)
	if err != nil {
		if secevent.Code(err) == "" {
			return nil, setUnavailable, err
		}
		return nil, setRefused(err), err
	}
	if push {
		if err := tok.CheckPushAge(s.cfg.Now()); err != nil {
			return nil, setRefused(err), err
		}
	}
	return set, setAccepted, nil
}

// missionEvent maps a verified SET to what the store applies, or nil for
// an event type the Service does not act on.
func missionEvent(set *secevent.SET, rec *DelegationRecord) (*MissionEvent, error) {
	ev := set.Event
	e := &MissionEvent{Authority: set.Issuer, AuthorizationID: set.Subject, At: time.Unix(ev.Timestamp, 0).UTC(),
		Reason: "event: " + strings.TrimPrefix(strings.TrimPrefix(ev.Type, secevent.CAEPPrefix), secevent.ExtPrefix)}
	if m := ev.Mission; m != nil {
		e.MissionID, e.Version = m.ID, m.Version
	}
	switch ev.Type {
	case secevent.SessionRevoked:
		e.Action = EventRevoke
		if m := ev.Mission; m != nil && pass.MissionState(m.State).Terminal() {
			e.Action = EventEnd
		}
	case secevent.MissionCompleted:
		e.Action = EventEnd
	case secevent.MissionSuspended:
		e.Action = EventHold
	case secevent.MissionResumed:
		e.Action = EventRecheck
	case secevent.MissionStageChanged:
		// Only the narrowing part applies now (the store intersects with
		// the current scope, never leaving the redemption-time bound); a
		// wider stage marks the delegation stale for a confirming check.
		e.Action, e.Scope = EventNarrow, pass.Scope(strings.Fields(ev.Scope))
		if m := ev.Mission; m != nil {
			e.Stage = m.Stage
		}
		if len(e.Scope) == 0 {
			e.Action, e.Scope, e.Stage = EventRecheck, nil, ""
		}
	case secevent.TokenClaimsChange:
		// An operator's narrowing, or an ancestor's stage move or
		// narrowing reaching a sub-agent's delegation: either way the
		// claims are the scope now allowed. As for a stage move, only the
		// narrowing part applies at once; a wider scope (an ancestor
		// moved forward again) marks the delegation stale, and the check
		// that follows decides.
		if ev.Claims == nil {
			return nil, nil
		}
		e.Action, e.Scope = EventNarrow, pass.Scope(strings.Fields(ev.Claims.Scope))
	default:
		return nil, nil
	}
	return e, nil
}

// setLog writes one audit record per SET and returns a.
func (s *Service) setLog(ctx context.Context, a setAnswer, subject, outcome string, err error, attrs ...slog.Attr) setAnswer {
	level := levelDebug
	switch {
	case a.status >= 500:
		level = slog.LevelWarn
	case outcome == "applied" || a.status != http.StatusAccepted:
		level = slog.LevelInfo
	}
	if !s.cfg.Logger.Enabled(ctx, level) {
		return a
	}
	attrs = append(attrs, slog.String("outcome", outcome), slog.Int("status", a.status))
	if subject != "" {
		attrs = append(attrs, slog.String("authorization_id", truncate(subject, 64)))
	}
	if a.code != "" {
		attrs = append(attrs, slog.String("err", a.code))
	}
	if err != nil {
		attrs = append(attrs, slog.String("reason", truncate(err.Error(), 200)))
	}
	s.cfg.Logger.LogAttrs(ctx, level, eventSET, attrs...)
	return a
}

// Poll delivery bounds.
const (
	// pollBatch is the most SETs asked per poll: 32 SETs of at most 2 KiB
	// stay within the 64 KiB answer bound of every JSON call.
	pollBatch = 32
	// pollTimeout bounds one long poll; the Authority holds it at most
	// 30 s.
	pollTimeout = 45 * time.Second
	// pollIdle is how often the configuration of an Authority that offers
	// no polling is read again.
	pollIdle = 5 * time.Minute
	// pollQuiet is the least time between two empty polls.
	pollQuiet = time.Second
	// pollBackoffMax caps the wait after a failed poll.
	pollBackoffMax = 30 * time.Second
)

// errNotPolling is returned by RunEventPoller of a Service configured
// without poll delivery.
var errNotPolling = errors.New("service: RunEventPoller needs Config.EventDelivery = pass.DeliveryPoll")

// RunEventPoller fetches security events from every Authority the Service
// trusts for a delegation (RFC 8936 long polls, authenticated with a
// Service assertion like the authorization check) and applies them as the
// receiver applies pushed ones, acknowledging each. It needs
// Config.EventDelivery = pass.DeliveryPoll, returns when ctx is done, and
// starts one long poll per Authority: the configured Service and Federated
// Authorities at once, others as this process redeems or checks one of
// their delegations. The Service starts no goroutine itself:
//
//	go func() { _ = svc.RunEventPoller(ctx) }()
//
// Replicas may each run it; a SET is acknowledged by whichever replica
// applied it, and the version guard makes a second delivery harmless.
func (s *Service) RunEventPoller(ctx context.Context) error {
	if s == nil || s.cfg == nil {
		return errNotNew
	}
	if s.cfg.EventDelivery != pass.DeliveryPoll {
		return errNotPolling
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]bool{}
	// A poller whose Authority left the table ends; its key is freed so
	// that it starts again if the Authority comes back.
	ended := make(chan string)
	for {
		known, wake := s.events.snapshot()
		for authority, cfgURL := range known {
			if key := authority + " " + cfgURL; !running[key] {
				running[key] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.pollAuthority(ctx, authority, cfgURL)
					select {
					case ended <- key:
					case <-ctx.Done():
					}
				}()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case key := <-ended:
			delete(running, key)
		case <-wake:
		}
	}
}

// pollAnswer is an RFC 8936 answer, bounded.
type pollAnswer struct{ pass.PollResponse }

func (p *pollAnswer) Validate() error {
	if len(p.Sets) > pass.MaxPollEvents {
		return errors.New("service: poll answer holds too many SETs")
	}
	return nil
}

// pollAuthority long-polls one Authority until ctx is done, backing off
// after failures.
func (s *Service) pollAuthority(ctx context.Context, authority, cfgURL string) {
	gone, ok := s.events.watch(authority, cfgURL)
	if !ok {
		return
	}
	// An Authority evicted from the table stops being polled at once,
	// even in the middle of a long poll or a wait.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	client := *s.cfg.HTTPClient
	client.Timeout = pollTimeout
	var (
		acks    []string
		errs    map[string]pass.SETError
		backoff time.Duration
	)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	fail := func(err error) bool {
		backoff = min(max(2*backoff, time.Second), pollBackoffMax)
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventSET, slog.String("outcome", "poll_failed"),
			slog.String("authority", authority), slog.String("reason", err.Error()))
		return wait(backoff)
	}
	for ctx.Err() == nil {
		cfg, err := s.cfg.Discovery.AuthorityConfiguration(ctx, cfgURL)
		if err == nil && cfg.Authority != authority {
			err = fmt.Errorf("service: the configuration at %s no longer describes %s", cfgURL, authority)
		}
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		ev, ok := pass.AuthorityEventsFrom(cfg.Extensions)
		if !ok || ev.Poll == "" {
			// This Authority offers no polling: its revocations arrive
			// with the checks.
			if !wait(pollIdle) {
				return
			}
			continue
		}
		tok, err := assertion.Sign(s.cfg.Keys.Current(), s.cfg.origin, cfg.Authority, 0, s.cfg.Now())
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		n := pollBatch
		req := pass.PollRequest{MaxEvents: &n, Ack: acks, SetErrs: errs}
		var resp pollAnswer
		started := time.Now()
		if _, err := httpx.Do(ctx, &client, httpx.Call{Peer: pass.PeerAuthority, URL: ev.Poll, Bearer: tok, Body: req}, &resp); err != nil {
			if ctx.Err() != nil || !fail(err) {
				return
			}
			continue // acks and errors are sent again
		}
		backoff, acks, errs = 0, nil, nil
		for jti, raw := range resp.Sets {
			switch a := s.receiveSET(ctx, raw, false); {
			case a.status == http.StatusAccepted:
				acks = append(acks, jti)
			case a.status == http.StatusBadRequest:
				if errs == nil {
					errs = map[string]pass.SETError{}
				}
				errs[jti] = pass.SETError{Err: a.code, Description: a.desc}
			}
			// Anything else (a store or key fetch failure) is neither
			// acknowledged nor refused: the Authority sends it again.
		}
		// An Authority that answers an empty poll at once (no long poll)
		// must not make this loop spin.
		if len(resp.Sets) == 0 && len(acks)+len(errs) == 0 && time.Since(started) < pollQuiet && !wait(pollQuiet) {
			return
		}
	}
}
