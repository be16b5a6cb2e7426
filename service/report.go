package service

import (
	"container/list"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/pass"
)

// Bounds of the mission reports: what the middleware refused for a
// delegation is aggregated in memory and sent to its Authority by Run.
const (
	// reportInterval: at most one report per delegation in this time, so
	// a looping agent cannot turn each refused request into a call to the
	// Authority.
	reportInterval = 10 * time.Second
	// reportTick is how often Run looks for reports that became due.
	reportTick = time.Second
	// maxReportDelegations bounds the delegations with observations (or a
	// recent report) held at once; beyond it the oldest is dropped.
	maxReportDelegations = 10_000
	// maxReportAttempts bounds the sends of one batch the Authority could
	// not take; then it is dropped.
	maxReportAttempts = 5
	// reportBatch is the most reports one round of Run sends.
	reportBatch = 100
	// maxObservationValue bounds a scope or stage name in an observation.
	maxObservationValue = 256
)

const eventReport = "agentpass mission report"

type obsKey struct{ kind, scope, stage string }

// reportEntry is what is pending for one delegation.
type reportEntry struct {
	rec      DelegationRecord // only the fields that say where to send
	obs      map[obsKey]*pass.Observation
	order    []obsKey // first observation first, for a stable body
	lastSent time.Time
	attempts int
}

// reporter aggregates the observations of the middleware until Run sends
// them. It is bounded: maxReportDelegations entries of at most
// pass.MaxObservations observations each; what does not fit is dropped and
// counted.
type reporter struct {
	mu      sync.Mutex
	entries map[string]*reportEntry
	age     *list.List // of authorization ids, oldest entry first
	dropped int64      // observations dropped since Run last logged
	wake    chan struct{}
}

func newReporter() *reporter {
	return &reporter{entries: map[string]*reportEntry{}, age: list.New(), wake: make(chan struct{}, 1)}
}

// observe reports one refusal of a request of d, when the middleware
// authenticated d for a delegation whose Authority speaks the mission
// extension. The delegation carries what a report needs, so an allowed
// request pays nothing for reporting.
func (d *Delegation) observe(kind, scope, stage string) {
	s := d.reporter
	if s == nil || s.reports == nil {
		return
	}
	where := DelegationRecord{AuthorizationID: d.AuthorizationID, Authority: d.Authority,
		ConfigurationURL: d.configurationURL, TrustMode: d.TrustMode, MissionID: d.MissionID}
	s.reports.observe(&where, kind, scope, stage, s.cfg.Now())
}

// observe records one refusal at now.
func (r *reporter) observe(rec *DelegationRecord, kind, scope, stage string, now time.Time) {
	now = now.UTC()
	k := obsKey{kind, truncate(scope, maxObservationValue), truncate(stage, maxObservationValue)}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[rec.AuthorizationID]
	if e == nil {
		if len(r.entries) >= maxReportDelegations {
			r.evictOldest()
		}
		e = &reportEntry{rec: *rec, obs: map[obsKey]*pass.Observation{}}
		r.age.PushBack(rec.AuthorizationID)
		r.entries[rec.AuthorizationID] = e
	}
	o := e.obs[k]
	switch {
	case o != nil:
		o.Count++
		o.LastAt = now
	case len(e.obs) >= pass.MaxObservations:
		r.dropped++
		return
	default:
		e.obs[k] = &pass.Observation{Kind: k.kind, Scope: k.scope, Stage: k.stage, Count: 1, FirstAt: now, LastAt: now}
		e.order = append(e.order, k)
	}
	if e.due(now) {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// evictOldest drops the oldest entry, counting its observations. The
// caller holds r.mu.
func (r *reporter) evictOldest() {
	front := r.age.Front()
	if front == nil {
		return
	}
	id := front.Value.(string)
	for _, o := range r.entries[id].obs {
		r.dropped += o.Count
	}
	r.age.Remove(front)
	delete(r.entries, id)
}

func (e *reportEntry) due(now time.Time) bool {
	return len(e.obs) > 0 && (e.lastSent.IsZero() || now.Sub(e.lastSent) >= reportInterval || now.Before(e.lastSent))
}

// reportBatchOf is one report to send.
type reportBatchOf struct {
	rec      DelegationRecord
	obs      []pass.Observation
	attempts int
}

// take removes and returns the reports due at now (at most reportBatch),
// marking them sent, and forgets entries with nothing pending whose last
// report is older than reportInterval. It also returns, and resets, the
// count of dropped observations.
func (r *reporter) take(now time.Time) ([]reportBatchOf, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []reportBatchOf
	for el := r.age.Front(); el != nil; {
		next := el.Next()
		id := el.Value.(string)
		e := r.entries[id]
		switch {
		case e.due(now) && len(out) < reportBatch:
			b := reportBatchOf{rec: e.rec, attempts: e.attempts}
			for _, k := range e.order {
				b.obs = append(b.obs, *e.obs[k])
			}
			out = append(out, b)
			e.obs, e.order, e.lastSent, e.attempts = map[obsKey]*pass.Observation{}, nil, now, 0
		case len(e.obs) == 0 && !e.due(now) && (now.Sub(e.lastSent) >= reportInterval || now.Before(e.lastSent)):
			r.age.Remove(el)
			delete(r.entries, id)
		}
		el = next
	}
	dropped := r.dropped
	r.dropped = 0
	return out, dropped
}

// putBack returns the observations of a report the Authority could not
// take (failed set), or that was not sent, merged with what arrived since,
// for the next round; after maxReportAttempts failures they are dropped
// and counted.
func (r *reporter) putBack(b reportBatchOf, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if failed {
		b.attempts++
	}
	if b.attempts >= maxReportAttempts {
		for _, o := range b.obs {
			r.dropped += o.Count
		}
		return
	}
	e := r.entries[b.rec.AuthorizationID]
	if e == nil {
		if len(r.entries) >= maxReportDelegations {
			r.evictOldest()
		}
		e = &reportEntry{rec: b.rec, obs: map[obsKey]*pass.Observation{}}
		r.age.PushBack(b.rec.AuthorizationID)
		r.entries[b.rec.AuthorizationID] = e
	}
	e.attempts = max(e.attempts, b.attempts)
	for _, o := range b.obs {
		k := obsKey{o.Kind, o.Scope, o.Stage}
		cur := e.obs[k]
		switch {
		case cur != nil:
			cur.Count += o.Count
			if o.FirstAt.Before(cur.FirstAt) {
				cur.FirstAt = o.FirstAt
			}
			if o.LastAt.After(cur.LastAt) {
				cur.LastAt = o.LastAt
			}
		case len(e.obs) >= pass.MaxObservations:
			r.dropped += o.Count
		default:
			c := o
			e.obs[k] = &c
			e.order = append(e.order, k)
		}
	}
}

// runReports sends the due mission reports every reportTick, and at once
// when a refusal makes one due, until ctx is done.
func (s *Service) runReports(ctx context.Context) {
	t := time.NewTicker(reportTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.reports.wake:
		}
		s.sendReports(ctx)
	}
}

// sendReports makes one round of reports.
func (s *Service) sendReports(ctx context.Context) {
	batches, dropped := s.reports.take(s.cfg.Now())
	if dropped > 0 {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventReport, slog.String("outcome", "dropped"), slog.Int64("observations", dropped))
	}
	for _, b := range batches {
		if ctx.Err() != nil {
			// Not sent: kept for the next Run.
			s.reports.putBack(b, false)
			continue
		}
		// A report in flight is finished, not abandoned, when ctx ends.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CheckTimeout)
		s.sendReport(cctx, b)
		cancel()
	}
}

// sendReport sends one report with a Service assertion to the Authority's
// mission_report endpoint, when its configuration advertises one.
func (s *Service) sendReport(ctx context.Context, b reportBatchOf) {
	var total int64
	for _, o := range b.obs {
		total += o.Count
	}
	attrs := []slog.Attr{slog.String("authority", b.rec.Authority), slog.String("authorization_id", b.rec.AuthorizationID),
		slog.String("mission_id", b.rec.MissionID), slog.Int("observations", len(b.obs)), slog.Int64("count", total)}
	req := pass.MissionReportRequest{AuthorizationID: b.rec.AuthorizationID, Observations: b.obs}
	_, err := s.callAuthority(ctx, &b.rec, func(cfg *pass.AuthorityConfiguration) string {
		return cfg.Extensions.Endpoint(pass.ExtMission, "mission_report")
	}, req, nil)
	var pe *pass.PeerError
	switch {
	case err == nil:
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, eventReport, append(attrs, slog.String("outcome", "ok"))...)
	case errors.Is(err, errNotAdvertised):
		s.cfg.Logger.LogAttrs(ctx, levelDebug, eventReport, append(attrs, slog.String("outcome", "not_supported"))...)
	case errors.As(err, &pe) && pe.Status < http.StatusInternalServerError && pe.Status != http.StatusTooManyRequests:
		// Refused for good (an unknown authorization, a bad body).
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventReport, append(attrs, slog.String("outcome", "refused"), slog.String("error", err.Error()))...)
	default:
		s.reports.putBack(b, true)
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventReport, append(attrs, slog.String("outcome", "retry_later"), slog.String("error", err.Error()))...)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a character boundary: half a character would be re-encoded
	// as U+FFFD and could push the value past the Authority's bound.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
