package assertion

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
)

// seenLog is a replay cache that logs every Seen and answers from a
// memory cache.
type seenLog struct {
	calls []string
	c     *dpop.MemoryReplayCache
}

func (s *seenLog) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	s.calls = append(s.calls, issuer+" "+jti+" "+exp.UTC().Format(time.RFC3339))
	return s.c.Seen(ctx, issuer, jti, exp)
}

// VerifyUnrecorded then RecordIn (#19 item 6: a store records in the round
// trip of its read) is Verify in two steps: the same issuer, jti and
// expiry (exp + skew) reach the cache given, a replay is refused, nothing
// is recorded before RecordIn, an unverified token is never recorded, and
// a token without jti (a plain v0.1 peer, G-8) calls no Seen.
func TestVerifyUnrecordedThenRecordIn(t *testing.T) {
	ks, _ := dpop.GenerateKeySet()
	mem := dpop.NewMemoryReplayCache(dpop.WithLimit(10), dpop.WithClock(func() time.Time { return t0 }))
	own := &seenLog{c: mem}
	v := newTestVerifier(t, ks, own)
	signed, _ := Sign(ks.Current(), svc, auth, 0, t0)
	tok, err := Parse(signed)
	if err != nil {
		t.Fatal(err)
	}

	// Not verified yet: refused, and the cache is not asked.
	given := &seenLog{c: mem}
	if err := v.RecordIn(context.Background(), tok, given); err == nil || len(given.calls) != 0 {
		t.Fatalf("RecordIn before verification: %v, %d Seen calls; want an error and none", err, len(given.calls))
	}
	c, err := v.VerifyUnrecorded(context.Background(), tok, jwksURL, svc)
	if err != nil {
		t.Fatal(err)
	}
	if len(own.calls) != 0 || mem.Len() != 0 {
		t.Fatalf("VerifyUnrecorded recorded: %q", own.calls)
	}
	if err := v.RecordIn(context.Background(), tok, given); err != nil {
		t.Fatal(err)
	}
	want := "assertion:" + svc + " " + c.JTI + " " + c.Expiry.Add(DefaultSkew).UTC().Format(time.RFC3339)
	if len(given.calls) != 1 || given.calls[0] != want || len(own.calls) != 0 {
		t.Errorf("RecordIn: given cache %q, own %q; want only [%s] in the given one", given.calls, own.calls, want)
	}
	// The same pair as Verify records: replayed through either path.
	if _, err := parseAndVerify(v, signed); !errors.Is(err, ErrReplay) {
		t.Errorf("Verify after RecordIn: %v, want ErrReplay", err)
	}
	tok2, _ := Parse(signed)
	if _, err := v.VerifyUnrecorded(context.Background(), tok2, jwksURL, svc); err != nil {
		t.Fatalf("VerifyUnrecorded looks the jti up: %v", err)
	}
	if err := v.RecordIn(context.Background(), tok2, given); !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrReplay) {
		t.Errorf("second RecordIn: %v, want ErrInvalid and ErrReplay", err)
	}

	// Without jti: accepted, no Seen.
	noJTI, _ := Parse(signNoJTI(t, ks))
	given.calls = nil
	if _, err := v.VerifyUnrecorded(context.Background(), noJTI, jwksURL, svc); err != nil {
		t.Fatal(err)
	}
	if err := v.RecordIn(context.Background(), noJTI, given); err != nil || len(given.calls) != 0 {
		t.Errorf("RecordIn without jti: %v, %q; want nil and no Seen", err, given.calls)
	}
	// A nil cache, or a verifier not made by NewVerifier, fails closed.
	if err := v.RecordIn(context.Background(), tok, nil); err == nil {
		t.Error("RecordIn with a nil cache: nil error")
	}
	if err := (&Verifier{}).RecordIn(context.Background(), tok, given); err == nil {
		t.Error("RecordIn on a zero Verifier: nil error")
	}
}
