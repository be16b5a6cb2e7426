package assertion

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

func newTestVerifier(t testing.TB, ks *dpop.KeySet, replay dpop.ReplayCache) *Verifier {
	t.Helper()
	v, err := NewVerifier(Config{Keys: jwksFinder{jwksURL, ks}, Audience: auth, Replay: replay, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func parseAndVerify(v *Verifier, token string) (*Claims, error) {
	tok, err := Parse(token)
	if err != nil {
		return nil, err
	}
	return v.Verify(context.Background(), tok, jwksURL, tok.Issuer())
}

// G-8: the verifier itself refuses a second use of a jti (the Service and
// the Authority no longer repeat this check), keyed "assertion:"+iss as
// before; a plain v0.1 peer's assertion without jti is still accepted.
func TestVerifyReplay(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	replay := dpop.NewMemoryReplayCache(dpop.WithLimit(10), dpop.WithClock(func() time.Time { return t0 }))
	v := newTestVerifier(t, ks, replay)
	tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
	if _, err := parseAndVerify(v, tok); err != nil {
		t.Fatal(err)
	}
	_, err := parseAndVerify(v, tok)
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrReplay) {
		t.Fatalf("second use: err = %v, want ErrInvalid and ErrReplay", err)
	}
	// The entry is where the Service and Authority stores kept it.
	if seen, _ := replay.Seen(context.Background(), "assertion:"+svc, "probe", t0.Add(time.Minute)); seen {
		t.Fatal("probe unexpectedly seen")
	}
	if replay.Len() != 2 {
		t.Errorf("replay entries = %d, want 2 (the assertion and the probe)", replay.Len())
	}

	// SignKey always adds a jti; build a v0.1-style token without one.
	noJTI := signNoJTI(t, ks)
	for range 2 {
		c, err := parseAndVerify(v, noJTI)
		if err != nil || c.JTI != "" {
			t.Fatalf("assertion without jti: %+v, %v", c, err)
		}
	}
}

// signNoJTI signs claims without jti, as a plain v0.1 peer may.
func signNoJTI(t *testing.T, ks *dpop.KeySet) string {
	t.Helper()
	k := ks.Current()
	return joseSign(t, "ES256", k.Signer(), k.KeyID(), map[string]any{"typ": Type},
		map[string]any{"iss": svc, "aud": auth, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()})
}

// Only an assertion whose signature verified is recorded: a forged one
// with a fresh jti leaves the replay cache empty.
func TestVerifyBadSignatureNotRecorded(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	other, _ := dpop.GenerateKey("")
	impostor, _ := dpop.NewKey(other.Signer(), "", ks.Current().KeyID())
	replay := dpop.NewMemoryReplayCache(dpop.WithLimit(10), dpop.WithClock(func() time.Time { return t0 }))
	v := newTestVerifier(t, ks, replay)
	forged, _ := Sign(impostor, svc, auth, 0, t0)
	if _, err := parseAndVerify(v, forged); !errors.Is(err, ErrInvalid) {
		t.Fatalf("forged assertion: err = %v", err)
	}
	if replay.Len() != 0 {
		t.Errorf("replay entries = %d after a bad signature, want 0", replay.Len())
	}
}

// A replay cache failure is not an invalid assertion: the caller answers
// "try again" (503), not 401.
func TestVerifyReplayCacheFailure(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	v := newTestVerifier(t, ks, failingReplay{})
	tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
	_, err := parseAndVerify(v, tok)
	if err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, errCacheDown) {
		t.Fatalf("err = %v, want errCacheDown and not ErrInvalid", err)
	}
}

var errCacheDown = errors.New("cache down")

type failingReplay struct{}

func (failingReplay) Seen(context.Context, string, string, time.Time) (bool, error) {
	return false, errCacheDown
}

// A future nbf beyond the skew is refused (assertions used to ignore nbf);
// one within the skew is accepted.
func TestVerifyNotBefore(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	v := newTestVerifier(t, ks, dpop.NewMemoryReplayCache(dpop.WithLimit(10)))
	mk := func(nbf time.Time) string {
		tok, err := jwtcheck.SignKey(ks.Current(), Type, map[string]any{"iss": svc, "aud": auth, "iat": t0.Unix(), "exp": t0.Add(2 * time.Minute).Unix(), "nbf": nbf.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if _, err := parseAndVerify(v, mk(t0.Add(DefaultSkew+time.Second))); !errors.Is(err, ErrInvalid) {
		t.Errorf("nbf beyond skew: err = %v, want ErrInvalid", err)
	}
	if _, err := parseAndVerify(v, mk(t0.Add(DefaultSkew-time.Second))); err != nil {
		t.Errorf("nbf within skew: %v", err)
	}
}

// Constructors refuse an incomplete configuration; the zero value refuses
// every assertion.
func TestNewVerifierConfig(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	keys := jwksFinder{jwksURL, ks}
	replay := dpop.NewMemoryReplayCache(dpop.WithLimit(1))
	for name, cfg := range map[string]Config{
		"no keys":       {Audience: auth, Replay: replay},
		"no audience":   {Keys: keys, Replay: replay},
		"no replay":     {Keys: keys, Audience: auth},
		"negative skew": {Keys: keys, Audience: auth, Replay: replay, Skew: -time.Second},
		// Review Low 5: lifetimes of centuries overflowed the replay record.
		"MaxLifetime over 24h": {Keys: keys, Audience: auth, Replay: replay, MaxLifetime: 24*time.Hour + 1},
		"skew over 24h":        {Keys: keys, Audience: auth, Replay: replay, Skew: 200 * 365 * 24 * time.Hour},
	} {
		if v, err := NewVerifier(cfg); err == nil || v != nil {
			t.Errorf("%s: NewVerifier = %v, %v", name, v, err)
		}
	}
	tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
	p, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	var zero Verifier
	if _, err := zero.Verify(context.Background(), p, jwksURL, svc); err == nil {
		t.Error("zero Verifier accepted an assertion")
	}
}

// The verifier parses once: Parse is the only parse of a request, Verify
// reuses it.
func TestParseOnce(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	v := newTestVerifier(t, ks, dpop.NewMemoryReplayCache(dpop.WithLimit(10)))
	tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
	before := jwtcheck.Assertion.Parses()
	if _, err := parseAndVerify(v, tok); err != nil {
		t.Fatal(err)
	}
	if n := jwtcheck.Assertion.Parses() - before; n != 1 {
		t.Errorf("parses = %d, want 1", n)
	}
}

// BenchmarkVerify is the Authority's path for one request: parse, read the
// issuer, verify (with the replay step).
func BenchmarkVerify(b *testing.B) {
	ks, _ := dpop.GenerateKeySet()
	v, _ := NewVerifier(Config{Keys: jwksFinder{jwksURL, ks}, Audience: auth, Replay: freshReplay{}, Now: func() time.Time { return t0 }})
	tok, _ := Sign(ks.Current(), svc, auth, 0, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseAndVerify(v, tok); err != nil {
			b.Fatal(err)
		}
	}
}

type freshReplay struct{}

func (freshReplay) Seen(context.Context, string, string, time.Time) (bool, error) { return false, nil }

// TestCheckRecordAllocs (#19): checking a parsed assertion and recording
// its jti, as an Authority's validation does, makes the replay issuer
// once and no error value on success. The bound is what it costs now.
func TestCheckRecordAllocs(t *testing.T) {
	const runs = 100
	ks, _ := dpop.GenerateKeySet()
	replay := dpop.NewMemoryReplayCache(dpop.WithLimit(1000), dpop.WithClock(func() time.Time { return t0 }))
	v := newTestVerifier(t, ks, replay)
	toks := make([]*Token, runs+1)
	for i := range toks {
		s, err := Sign(ks.Current(), svc, auth, 0, t0)
		if err != nil {
			t.Fatal(err)
		}
		if toks[i], err = Parse(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, i := context.Background(), 0
	n := testing.AllocsPerRun(runs, func() {
		tok := toks[i]
		i++
		if _, err := v.Check(ctx, tok, jwksURL, svc); err != nil {
			t.Fatal(err)
		}
		if err := v.Record(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Check+Record: %v allocations", n)
	if n > checkRecordAllocs {
		t.Errorf("Check+Record: %v allocations, want at most %d", n, checkRecordAllocs)
	}
	if _, err := v.Check(ctx, toks[0], jwksURL, svc); !errors.Is(err, ErrReplay) {
		t.Errorf("a recorded jti checked again: %v, want ErrReplay", err)
	}
}

// 18 before fromCheck stopped allocating on success and the replay issuer
// was made once per token.
const checkRecordAllocs = 15
