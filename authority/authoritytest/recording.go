package authoritytest

import (
	"errors"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
)

// recordingTests hold an authority.RecordingStore to its contract with a
// replay cache of its own (an in-memory one, which no store can fold into):
// record is called once, before anything is consumed; an error from it
// stops the consumption with nothing written; a record without Seen (an
// assertion without jti) lets the consumption go on as ConsumePass.
var recordingTests = []struct {
	name string
	fn   func(t *testing.T, s authority.Store, rs authority.RecordingStore)
}{
	{"RecordedConsume", testRecordedConsume},
	{"RecordedErrorConsumesNothing", testRecordedError},
	{"RecordedWithoutSeen", testRecordedWithoutSeen},
}

// recorder is a record function that records (iss, jti) in the cache it
// is handed, counting its calls.
type recorder struct {
	calls int
	err   error // returned instead of recording, when set
	jti   string
}

func (r *recorder) record(c dpop.ReplayCache) error {
	r.calls++
	if r.err != nil {
		return r.err
	}
	if r.jti == "" {
		return nil
	}
	replayed, err := c.Seen(ctx, svcA, r.jti, T0.Add(time.Hour))
	switch {
	case err != nil:
		return err
	case replayed:
		return errReplayed
	}
	return nil
}

var errReplayed = errors.New("authoritytest: assertion replayed")

func testRecordedConsume(t *testing.T, s authority.Store, rs authority.RecordingStore) {
	approvedRequest(t, s, "r1", "h1")
	approvedRequest(t, s, "r2", "h2")
	now := T0.Add(time.Minute)
	cache := dpop.NewMemoryReplayCache(dpop.WithClock(func() time.Time { return now }))
	rec := &recorder{jti: "j1"}
	c, err := rs.ConsumePassRecorded(ctx, "h1", svcA, "authz-1", now, cache, rec.record)
	if err != nil {
		t.Fatal(err)
	}
	if rec.calls != 1 || c.Authorization == nil || c.Authorization.ID != "authz-1" || c.Mission == nil {
		t.Fatalf("record called %d times, consumption %+v; want once and authz-1", rec.calls, c)
	}
	if held, err := cache.Contains(ctx, svcA, "j1"); err != nil || !held {
		t.Errorf("the pair is not in the cache record was handed: %v, %v", held, err)
	}
	// The same assertion for another pass: refused by the record, and
	// that pass is not consumed.
	rec2 := &recorder{jti: "j1"}
	_, err = rs.ConsumePassRecorded(ctx, "h2", svcA, "authz-2", now, cache, rec2.record)
	if !errors.Is(err, errReplayed) {
		t.Fatalf("a replayed record: %v, want the record's error", err)
	}
	if _, err := s.ConsumePass(ctx, "h2", svcA, "authz-3", now); err != nil {
		t.Errorf("the pass of a refused record was consumed: %v", err)
	}
	_, err = rs.ConsumePassRecorded(ctx, "h1", svcA, "authz-4", now, cache, (&recorder{jti: "j2"}).record)
	wantErr(t, "second consume", err, authority.ErrConsumed)
}

func testRecordedError(t *testing.T, s authority.Store, rs authority.RecordingStore) {
	approvedRequest(t, s, "r1", "h1")
	now := T0.Add(time.Minute)
	failed := errors.New("authoritytest: the record failed")
	rec := &recorder{err: failed}
	_, err := rs.ConsumePassRecorded(ctx, "h1", svcA, "authz-1", now, dpop.NewMemoryReplayCache(), rec.record)
	if !errors.Is(err, failed) || rec.calls != 1 {
		t.Fatalf("a failed record: %v after %d calls, want its error after 1", err, rec.calls)
	}
	if _, err := s.Authorization(ctx, "authz-1"); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("an authorization written despite the failed record: %v", err)
	}
	if _, err := s.ConsumePass(ctx, "h1", svcA, "authz-2", now); err != nil {
		t.Errorf("the pass of a failed record was consumed: %v", err)
	}
}

func testRecordedWithoutSeen(t *testing.T, s authority.Store, rs authority.RecordingStore) {
	approvedRequest(t, s, "r1", "h1")
	now := T0.Add(time.Minute)
	rec := &recorder{} // no jti: nothing to record
	c, err := rs.ConsumePassRecorded(ctx, "h1", svcA, "authz-1", now, dpop.NewMemoryReplayCache(), rec.record)
	if err != nil || rec.calls != 1 || c.Authorization == nil || c.Authorization.ID != "authz-1" {
		t.Fatalf("a record without Seen: %+v, %v after %d calls; want the consumption after 1", c, err, rec.calls)
	}
	_, err = rs.ConsumePassRecorded(ctx, "h1", svcA, "authz-2", now, dpop.NewMemoryReplayCache(), rec.record)
	wantErr(t, "second consume", err, authority.ErrConsumed)
}
