package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// defaultMaxWait bounds one acquisition of a [TokenSource], including the
// wait for a person's approval, when TokenSourceOptions.MaxWait is zero.
const defaultMaxWait = 15 * time.Minute

// ErrPending: the caller's context ended while the TokenSource's
// acquisition (usually a person's approval) goes on. The request stays
// open; a later Token call picks up its outcome instead of filing another.
var ErrPending = errors.New("harness: still waiting for the pass")

// ErrClosed: the TokenSource was closed.
var ErrClosed = errors.New("harness: token source closed")

// TokenSourceOptions configure a [TokenSource].
type TokenSourceOptions struct {
	// Redeem are the redemption options.
	Redeem RedeemOptions
	// Reacquire allows the source to run a new acquisition (possibly
	// waiting for a person's approval again) once a token it obtained has
	// expired or was invalidated. Off by default: the source then fails
	// with ErrTokenExpired, and re-acquiring stays an explicit decision.
	// Failures before any token was obtained are always tried again.
	Reacquire bool
	// RetryInvalidToken makes the source's Transport answer a 401
	// invalid_token by dropping the token and, when Reacquire allows a new
	// acquisition and the body can be sent again, retrying the request
	// once with a fresh token. A 401 delegation_revoked is never retried:
	// a revocation must end the work, not start a new request.
	RetryInvalidToken bool
	// EarlyExpiry treats a token as expired this long before its
	// ExpiresAt. If zero, 10 s.
	EarlyExpiry time.Duration
	// MaxWait bounds one acquisition, approval included. If zero,
	// 15 minutes. The Authority usually expires the request first.
	MaxWait time.Duration
}

// TokenSource acquires and redeems a bearer token for one task and hands it
// out until it expires. It is safe for concurrent use.
//
// The acquisition runs in the background, detached from any caller: a
// caller's context bounds only its own wait (the call then fails with
// ErrPending), and concurrent or later callers join the pending request
// instead of filing another, so an approver sees one request per task even
// when every tool call of an agent has a short deadline. Close abandons a
// pending request.
type TokenSource struct {
	c    *Client
	req  Request // Task.ID fixed once, so every acquisition names the same task
	opts TokenSourceOptions

	mu      sync.Mutex
	tok     *Token
	had     bool    // a token was obtained once
	flight  *flight // the pending acquisition, or nil
	unseen  error   // the failure of a flight nobody waited for, for the next caller
	revoked error   // set once the Service said the delegation was revoked
	closed  bool
	wg      sync.WaitGroup
}

// flight is one acquisition and redemption shared by every caller that
// waits for it.
type flight struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int // guarded by TokenSource.mu
	tok     *Token
	err     error
}

// TokenSource returns a source of bearer tokens for req (whose Type must be
// empty or pass.BearerToken). When req.Task.ID is empty one is generated
// now and kept, so that every acquisition of the source is for the same
// task. Nothing is sent before the first Token call.
func (c *Client) TokenSource(req Request, opts TokenSourceOptions) *TokenSource {
	if opts.EarlyExpiry == 0 {
		opts.EarlyExpiry = 10 * time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = defaultMaxWait
	}
	if req.Task.ID == "" {
		req.Task.ID = secret.ID("task_")
	}
	return &TokenSource{c: c, req: req, opts: opts}
}

// TaskID returns the task id every acquisition of the source uses.
func (s *TokenSource) TaskID() string { return s.req.Task.ID }

// Token returns the current token, acquiring and redeeming a pass when
// there is none. If ctx ends first, it fails with an error matching
// ErrPending and ctx.Err(), and the acquisition goes on for the next call.
// The failure of an acquisition is returned to the callers waiting for it
// (or, when none was, to the next caller), and the call after that tries
// again. Once a token expired (or after Invalidate) it fails with
// ErrTokenExpired unless Reacquire is set; once the Service said the
// delegation was revoked, it fails with that error for good.
func (s *TokenSource) Token(ctx context.Context) (*Token, error) {
	if s.req.Type != "" && s.req.Type != pass.BearerToken {
		return nil, fmt.Errorf("%w: a TokenSource is for bearer tokens", ErrInvalidRequest)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	case s.revoked != nil:
		err := s.revoked
		s.mu.Unlock()
		return nil, err
	case s.tok != nil && s.fresh(s.tok):
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	f := s.flight
	if f == nil {
		if err := s.unseen; err != nil {
			s.unseen = nil
			s.mu.Unlock()
			return nil, err
		}
		if s.had && !s.opts.Reacquire {
			s.mu.Unlock()
			return nil, ErrTokenExpired
		}
		f = s.start(ctx)
	}
	f.waiters++
	s.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f.waiters--
	select {
	case <-f.done:
		return f.tok, f.err
	default:
		return nil, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
	}
}

func (s *TokenSource) fresh(t *Token) bool {
	return t.ExpiresAt.IsZero() || s.c.now().Before(t.ExpiresAt.Add(-s.opts.EarlyExpiry))
}

// start begins a flight; s.mu is held. The work keeps ctx's values but not
// its cancellation: it ends with MaxWait or Close.
func (s *TokenSource) start(ctx context.Context) *flight {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.MaxWait)
	f := &flight{done: make(chan struct{}), cancel: cancel}
	s.flight = f
	s.tok = nil
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		tok, err := s.acquire(wctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil && s.closed {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		f.tok, f.err = tok, err
		s.flight = nil
		switch {
		case err == nil:
			s.tok, s.had = tok, true
		case f.waiters == 0 && !s.closed:
			s.unseen = err
		}
		close(f.done)
	}()
	return f
}

func (s *TokenSource) acquire(ctx context.Context) (*Token, error) {
	g, err := s.c.Acquire(ctx, s.req)
	if err != nil {
		return nil, err
	}
	return s.c.RedeemBearerToken(ctx, g, s.opts.Redeem)
}

// Invalidate drops the current token, for example after the Service
// answered 401; the next Token call re-acquires only if Reacquire is set.
// It never waits for a pending acquisition.
func (s *TokenSource) Invalidate() {
	s.mu.Lock()
	s.tok = nil
	s.mu.Unlock()
}

// invalidate drops tok if it is still the current token.
func (s *TokenSource) invalidate(tok *Token) {
	s.mu.Lock()
	if s.tok == tok {
		s.tok = nil
	}
	s.mu.Unlock()
}

// mayReacquire reports whether a Token call after an invalidation would
// start a new acquisition.
func (s *TokenSource) mayReacquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.revoked == nil && (s.opts.Reacquire || !s.had)
}

// Close stops the source: a pending acquisition is cancelled, which
// abandons its request at the Authority when the Authority speaks the
// mission extension (a plain Authority lets it expire). Close waits for
// that to finish (so never call it from a Config.Progress callback, which
// runs inside the acquisition); later Token calls fail with ErrClosed.
func (s *TokenSource) Close() error {
	s.mu.Lock()
	s.closed = true
	s.tok = nil
	if s.flight != nil {
		s.flight.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Transport returns an http.RoundTripper that gets its token from the
// source for every request (so the first request may wait for an Acquire
// and a person's approval) and sends it as Token.Transport does. A 401
// delegation_revoked answer ends the source (later Token calls return it);
// see RetryInvalidToken for retries.
func (s *TokenSource) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return s.roundTrip(base, req)
	})
}

func (s *TokenSource) roundTrip(base http.RoundTripper, req *http.Request) (*http.Response, error) {
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	tok, err := s.Token(req.Context())
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := tok.Transport(base).RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	apiErr := peekAPIError(resp)
	if errors.Is(apiErr, pass.ErrRevoked) {
		s.mu.Lock()
		if s.revoked == nil {
			s.revoked = fmt.Errorf("harness: token source ended: %w", apiErr)
		}
		s.tok = nil
		s.mu.Unlock()
		return resp, nil
	}
	if !s.opts.RetryInvalidToken || (apiErr.Code != pass.CodeInvalidToken && authParam(apiErr.WWWAuthenticate, "error") != string(pass.CodeInvalidToken)) {
		return resp, nil
	}
	s.invalidate(tok)
	if !replayable || !s.mayReacquire() {
		return resp, nil
	}
	r2 := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		r2.Body = body
	}
	tok2, err := s.Token(req.Context())
	if err != nil {
		if r2.Body != nil {
			r2.Body.Close()
		}
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAPIErrorBody))
	resp.Body.Close()
	return tok2.Transport(base).RoundTrip(r2)
}

// peekAPIError reads the error of a 401 answer (at most maxAPIErrorBody of
// its body) and puts the bytes back, so the caller still reads the whole
// answer. The code is the body's wire error code, else the
// WWW-Authenticate error_description when it says delegation_revoked (as a
// Service's middleware sends it), else its error parameter.
func peekAPIError(resp *http.Response) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, WWWAuthenticate: resp.Header.Get("WWW-Authenticate")}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAPIErrorBody))
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		var er pass.ErrorResponse
		if pass.Decode(body, &er) == nil {
			e.Code = er.Error.Code
			e.Message = truncate(er.Error.Message, maxReasonLen)
			e.Err = &pass.PeerError{Peer: pass.PeerService, Status: resp.StatusCode, Code: e.Code, Message: e.Message}
		}
	}
	if e.Code == "" {
		if d := pass.Code(authParam(e.WWWAuthenticate, "error_description")); d == pass.CodeDelegationRevoked {
			e.Code = d
		} else {
			e.Code = pass.Code(authParam(e.WWWAuthenticate, "error"))
		}
	}
	if e.Err == nil && e.Code != "" {
		e.Err = &pass.PeerError{Peer: pass.PeerService, Status: resp.StatusCode, Code: e.Code}
	}
	return e
}
