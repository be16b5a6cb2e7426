package service

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// PendingClose is a delegation the Service refused after the Authority had
// consumed its pass, and could not yet revoke at that Authority. It is
// kept in the Store, so a restart or another replica finishes the work.
type PendingClose struct {
	// AuthorizationID is the Authority's handle of the delegation (unique
	// key).
	AuthorizationID string
	// Authority, ConfigurationURL and TrustMode say where to send the
	// close, as on a DelegationRecord.
	Authority        string
	ConfigurationURL string
	TrustMode        pass.TrustMode
	// Reason is the close reason sent to the Authority: the wire code of
	// the refusal, never internal detail.
	Reason string
	// Attempts counts the failed closes so far.
	Attempts int
	// NextAttempt is when Run tries again.
	NextAttempt time.Time
	// ExpiresAt is when the delegation ends at the Authority anyway; the
	// record is dropped then.
	ExpiresAt time.Time
}

// Bounds of the close retries.
const (
	// pendingCloseTTL is how long a close is retried when the Authority
	// gave no authorization_expires_at.
	pendingCloseTTL = 24 * time.Hour
	// maxCloseBackoff caps the wait between two attempts.
	maxCloseBackoff = time.Hour
	// closeBatch is the most pending closes one round of Run handles.
	closeBatch = 100
)

// closeRefused revokes, at the Authority, the delegation of a pass the
// Authority consumed but the Service then refused, so that no live
// delegation without a credential stays behind. It is best effort and
// never changes the answer to the Harness: a failure is logged with the
// authorization id and kept in the Store for Run to retry.
func (s *Service) closeRefused(ctx context.Context, src *source, vr *pass.ValidationResponse, refusal error) {
	now := s.cfg.Now()
	pc := &PendingClose{
		AuthorizationID:  vr.AuthorizationID,
		Authority:        src.cfg.Authority,
		ConfigurationURL: src.ref.AuthorityConfigurationURL,
		TrustMode:        src.mode,
		Reason:           "redemption refused: " + string(wireError(refusal).Code),
		ExpiresAt:        now.Add(pendingCloseTTL),
	}
	if vr.AuthorizationExpiresAt != nil {
		pc.ExpiresAt = *vr.AuthorizationExpiresAt
	}
	// The Harness may have gone away; the close must still be sent.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CheckTimeout)
	defer cancel()
	s.tryClose(cctx, pc, now)
}

// tryClose sends one revoke for pc. On success (or when the Authority no
// longer knows the delegation, or offers no close endpoint) it forgets pc;
// otherwise it stores pc with its next attempt.
func (s *Service) tryClose(ctx context.Context, pc *PendingClose, now time.Time) {
	attrs := []slog.Attr{slog.String("authorization_id", pc.AuthorizationID), slog.String("authority", pc.Authority),
		slog.String("action", string(pass.CloseRevoke)), slog.String("reason", pc.Reason), slog.Int("attempt", pc.Attempts+1)}
	rec := &DelegationRecord{AuthorizationID: pc.AuthorizationID, Authority: pc.Authority, ConfigurationURL: pc.ConfigurationURL, TrustMode: pc.TrustMode}
	req := pass.AuthorizationCloseRequest{AuthorizationID: pc.AuthorizationID, Action: pass.CloseRevoke, Reason: pc.Reason}
	var resp pass.AuthorizationCloseResponse
	_, err := s.callAuthority(ctx, rec, func(cfg *pass.AuthorityConfiguration) string { return cfg.Endpoints.AuthorizationClose }, req, &resp)
	var pe *pass.PeerError
	switch {
	case err == nil, errors.As(err, &pe) && pe.Status == 404:
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, eventClose, append(attrs, slog.String("outcome", "ok"))...)
	case errors.Is(err, errNotAdvertised):
		// A plain v0.1 Authority: the delegation lives until it expires.
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventClose, append(attrs, slog.String("outcome", "not_supported"))...)
	default:
		pc.Attempts++
		pc.NextAttempt = now.Add(closeBackoff(s.cfg.CloseRetryInterval, pc.Attempts))
		if !pc.NextAttempt.Before(pc.ExpiresAt) {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelError, eventClose, append(attrs, slog.String("outcome", "abandoned"), slog.String("error", err.Error()))...)
			break
		}
		if serr := s.cfg.Store.SavePendingClose(context.WithoutCancel(ctx), pc); serr != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelError, eventClose, append(attrs, slog.String("outcome", "lost"),
				slog.String("error", err.Error()), slog.String("store_error", serr.Error()))...)
			return
		}
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventClose, append(attrs, slog.String("outcome", "retry_later"),
			slog.Time("next_attempt", pc.NextAttempt), slog.String("error", err.Error()))...)
		return
	}
	if pc.Attempts > 0 {
		if err := s.cfg.Store.DeletePendingClose(context.WithoutCancel(ctx), pc.AuthorizationID); err != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventClose, append(attrs, slog.String("store_error", err.Error()))...)
		}
	}
}

// closeBackoff doubles the interval with each failed attempt, up to
// maxCloseBackoff.
func closeBackoff(interval time.Duration, attempts int) time.Duration {
	d := interval
	for i := 1; i < attempts && d < maxCloseBackoff; i++ {
		d *= 2
	}
	return min(d, maxCloseBackoff)
}

// Run does the Service's background work until ctx is done, then returns
// ctx's error. Its tasks:
//
//   - It retries revoking the delegations that the Service refused after
//     their pass was consumed and that the Authority could not be told
//     about at once (every Config.CloseRetryInterval). Without Run, such
//     delegations stay live at the Authority until they expire, though no
//     credential of them exists.
//   - It sends the mission reports: what the middleware refused for each
//     delegation whose Authority speaks the mission extension, aggregated,
//     at most one report per delegation per 10 s. Without Run, refusals
//     are not reported (they are kept in a bounded buffer, then dropped).
//
// The Service starts no goroutine of its own; start Run once per process:
//
//	go func() { _ = svc.Run(ctx) }()
//
// Any number of replicas sharing a Store may run it: a close is
// idempotent at the Authority, and each replica reports what its own
// middleware refused. Pending closes survive a restart (they are in the
// Store); unsent reports do not.
func (s *Service) Run(ctx context.Context) error {
	if s == nil || s.cfg == nil {
		return errNotNew
	}
	var wg sync.WaitGroup
	for _, task := range []func(context.Context){s.runCloses, s.runReports} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task(ctx)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// runCloses retries the pending closes at once and then every
// CloseRetryInterval, until ctx is done.
func (s *Service) runCloses(ctx context.Context) {
	t := time.NewTicker(s.cfg.CloseRetryInterval)
	defer t.Stop()
	for {
		s.retryCloses(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retryCloses makes one attempt for every pending close that is due.
func (s *Service) retryCloses(ctx context.Context) {
	now := s.cfg.Now()
	due, err := s.cfg.Store.DuePendingCloses(ctx, now, closeBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, eventClose, slog.String("outcome", "store_error"), slog.String("error", err.Error()))
		}
		return
	}
	for _, pc := range due {
		if ctx.Err() != nil {
			return
		}
		if !pc.ExpiresAt.After(now) {
			_ = s.cfg.Store.DeletePendingClose(context.WithoutCancel(ctx), pc.AuthorizationID)
			continue
		}
		// A close in flight is finished, not abandoned, when ctx ends.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CheckTimeout)
		s.tryClose(cctx, pc, now)
		cancel()
	}
}
