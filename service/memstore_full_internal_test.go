package service

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// A MemoryStore full of live records refuses further writes without a
// pass over every record each time (which, under the lock, would stall
// every reader at the bound); it sweeps again once a record can go: one
// expired, a delegation invalidated (directly, by tree or by event) or an
// initialization token used.
func TestMemoryStoreFullSweepsOnlyWhenSomethingCanGo(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const limit = 50
	s := NewMemoryStore(WithLimit(limit))
	redeem := func(i int, at time.Time, life time.Duration) error {
		id := "az-" + strconv.Itoa(i)
		d := &DelegationRecord{AuthorizationID: id, Authority: "https://idp.test", MissionID: "m-" + strconv.Itoa(i),
			CreatedAt: at, CurrentScope: pass.Scope{"r"}}
		if i%2 == 1 {
			return s.Redeem(ctx, d, nil, &InitRecord{Hash: "i-" + id, CreatedAt: at, ExpiresAt: at.Add(life)})
		}
		return s.Redeem(ctx, d, &CredentialRecord{Hash: "h-" + id, Kind: KindBearer, CreatedAt: at, ExpiresAt: at.Add(life)}, nil)
	}
	for i := range limit {
		// The first record expires after 10 minutes, the others after an hour.
		life := time.Hour
		if i == 0 {
			life = 10 * time.Minute
		}
		if err := redeem(i, now, life); err != nil {
			t.Fatal(err)
		}
	}
	next := limit
	full := func(step string, at time.Time) {
		t.Helper()
		before := s.sweeps
		for range 20 {
			if err := redeem(next, at, time.Hour); !errors.Is(err, ErrStoreFull) {
				t.Fatalf("%s: Redeem in a full store = %v, want ErrStoreFull", step, err)
			}
			next++
		}
		if got := s.sweeps - before; got > 1 {
			t.Errorf("%s: %d sweeps for 20 refused writes, want at most 1", step, got)
		}
	}
	frees := func(step string, at time.Time) {
		t.Helper()
		before := s.sweeps
		if err := redeem(next, at, time.Hour); err != nil {
			t.Fatalf("%s: Redeem = %v, want room made by a sweep", step, err)
		}
		next++
		if s.sweeps == before {
			t.Errorf("%s: no sweep", step)
		}
	}

	full("live records", now.Add(time.Minute))
	frees("the first record expired", now.Add(11*time.Minute))
	full("live again", now.Add(12*time.Minute))

	if err := s.Invalidate(ctx, "az-2", now, "revoked"); err != nil {
		t.Fatal(err)
	}
	frees("a delegation invalidated", now.Add(13*time.Minute))
	full("live again", now.Add(14*time.Minute))

	if n, err := s.InvalidateTree(ctx, "az-4", now, "revoked"); err != nil || n != 1 {
		t.Fatalf("InvalidateTree = %d, %v", n, err)
	}
	frees("a tree invalidated", now.Add(15*time.Minute))
	full("live again", now.Add(16*time.Minute))

	if ok, err := s.ApplyEvent(ctx, MissionEvent{AuthorizationID: "az-6", Authority: "https://idp.test", Action: EventRevoke, At: now}); err != nil || !ok {
		t.Fatalf("ApplyEvent = %v, %v", ok, err)
	}
	frees("a delegation revoked by an event", now.Add(17*time.Minute))
	full("live again", now.Add(18*time.Minute))

	if _, err := s.ConsumeInit(ctx, "i-az-1", now.Add(19*time.Minute)); err != nil {
		t.Fatal(err)
	}
	frees("an initialization token used", now.Add(20*time.Minute))
	full("live again", now.Add(21*time.Minute))
}

// BenchmarkMemoryStoreRedeemFull: a write refused by a store full of
// live records (100,000, the default bound) costs no pass over them.
func BenchmarkMemoryStoreRedeemFull(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	s := NewMemoryStore()
	cred := func(id string) *CredentialRecord {
		return &CredentialRecord{Hash: "h-" + id, Kind: KindBearer, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	for i := range defaultMemoryStoreLimit {
		id := "az-" + strconv.Itoa(i)
		if err := s.Redeem(ctx, &DelegationRecord{AuthorizationID: id, CreatedAt: now}, cred(id), nil); err != nil {
			b.Fatal(err)
		}
	}
	d := &DelegationRecord{AuthorizationID: "az-more", CreatedAt: now.Add(time.Minute)}
	for b.Loop() {
		if err := s.Redeem(ctx, d, cred("more"), nil); !errors.Is(err, ErrStoreFull) {
			b.Fatal(err)
		}
	}
}

// A busy store that is not full sweeps every pruneEvery writes only once
// a record can have expired, and then drops the expired ones.
func TestMemoryStorePeriodicSweepWaitsForExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	s := NewMemoryStore()
	redeem := func(i int, at time.Time, life time.Duration) {
		t.Helper()
		id := "az-" + strconv.Itoa(i)
		d := &DelegationRecord{AuthorizationID: id, CreatedAt: at}
		if err := s.Redeem(ctx, d, &CredentialRecord{Hash: "h-" + id, Kind: KindBearer, CreatedAt: at, ExpiresAt: at.Add(life)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 * pruneEvery {
		redeem(i, now, time.Hour)
	}
	if s.sweeps > 1 {
		t.Errorf("%d sweeps over %d writes of live records, want at most the first", s.sweeps, 3*pruneEvery)
	}
	before := s.sweeps
	later := now.Add(2 * time.Hour) // every record so far has expired
	for i := range pruneEvery {
		redeem(3*pruneEvery+i, later, time.Hour)
	}
	if s.sweeps != before+1 {
		t.Errorf("%d sweeps once records expired, want 1", s.sweeps-before)
	}
	if _, creds, _ := s.Len(); creds >= 3*pruneEvery {
		t.Errorf("%d credentials held after the sweep, want the expired ones dropped", creds)
	}
}

// A full table of pending closes refuses without a scan until one can
// have expired, and then makes room.
func TestMemoryStoreFullClosesScanOnlyAfterExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const limit = 20
	s := NewMemoryStore(WithLimit(limit))
	save := func(id string, at time.Time, life time.Duration) error {
		return s.SavePendingClose(ctx, &PendingClose{AuthorizationID: id, Authority: "https://idp.test",
			NextAttempt: at, ExpiresAt: at.Add(life)})
	}
	for i := range limit {
		life := time.Hour
		if i == 0 {
			life = 10 * time.Minute
		}
		if err := save("az-"+strconv.Itoa(i), now, life); err != nil {
			t.Fatal(err)
		}
	}
	if err := save("az-more", now.Add(time.Minute), time.Hour); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("SavePendingClose in a full table = %v, want ErrStoreFull", err)
	}
	if !s.closesKnown || !s.closesFrom.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("after a scan: closesFrom %v (known %v), want the earliest expiry", s.closesFrom, s.closesKnown)
	}
	// A close saved again with an earlier expiry lowers the mark.
	if err := save("az-5", now, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if !s.closesFrom.Equal(now.Add(5 * time.Minute)) {
		t.Fatalf("closesFrom %v after an earlier expiry was saved, want %v", s.closesFrom, now.Add(5*time.Minute))
	}
	if err := save("az-more", now.Add(4*time.Minute), time.Hour); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("before any expiry: %v, want ErrStoreFull", err)
	}
	if err := save("az-more", now.Add(6*time.Minute), time.Hour); err != nil {
		t.Fatalf("once a close expired: %v, want room", err)
	}
	if _, ok := s.closes["az-5"]; ok {
		t.Error("the expired close is still held")
	}
}

// Audit 7, M1: at the bound, records expiring a moment apart made every
// write sweep the whole store to drop one or two; a full store now sweeps
// at most once per forcedSweepEvery and refuses in between.
func TestMemoryStoreFullSweepsAtMostOncePerInterval(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const limit = 40
	s := NewMemoryStore(WithLimit(limit))
	n := 0
	redeem := func(at time.Time, life time.Duration) error {
		n++
		id := "az-" + strconv.Itoa(n)
		return s.Redeem(ctx, &DelegationRecord{AuthorizationID: id, CreatedAt: at},
			&CredentialRecord{Hash: "h-" + id, Kind: KindBearer, CreatedAt: at, ExpiresAt: at.Add(life)}, nil)
	}
	for i := range limit {
		if err := redeem(t0, time.Minute+time.Duration(i)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	at := t0.Add(time.Minute + 5*time.Millisecond)
	if err := redeem(at, time.Hour); err != nil {
		t.Fatalf("a write once records expired: %v, want room", err)
	}
	for {
		if _, creds, _ := s.Len(); creds >= limit {
			break
		}
		if err := redeem(at, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	before := s.sweeps
	for i := range 20 {
		if err := redeem(at.Add(time.Duration(10+i)*time.Millisecond), time.Hour); !errors.Is(err, ErrStoreFull) {
			t.Fatalf("a write %d ms after the last sweep: %v, want ErrStoreFull", 10+i, err)
		}
	}
	if s.sweeps != before {
		t.Errorf("%d sweeps within the interval, want none", s.sweeps-before)
	}
	if err := redeem(at.Add(forcedSweepEvery+10*time.Millisecond), time.Hour); err != nil {
		t.Fatalf("a write an interval later: %v, want room", err)
	}
}

// Review 8, L4: records droppable from the start (a caller storing an
// invalidated delegation, or a used initialization token) make a full
// store sweep again, as an invalidation after storing does.
func TestMemoryStoreFullSweepsForRecordsStoredDroppable(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	s := NewMemoryStore(WithLimit(5))
	redeem := func(id string, at time.Time, life time.Duration, invalid bool) error {
		return s.Redeem(ctx, &DelegationRecord{AuthorizationID: id, CreatedAt: at, Invalidated: invalid},
			&CredentialRecord{Hash: "h-" + id, Kind: KindBearer, CreatedAt: at, ExpiresAt: at.Add(life)}, nil)
	}
	for _, id := range []string{"a1", "a2"} {
		if err := redeem(id, t0, 10*time.Second, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"b", "c", "d"} {
		if err := redeem(id, t0, time.Hour, false); err != nil {
			t.Fatal(err)
		}
	}
	// Full: a sweep learns that nothing can go before a1 and a2 expire.
	if err := redeem("e", t0.Add(2*time.Second), time.Hour, false); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("full store: %v", err)
	}
	// They expire: a sweep makes room, and learns the hour.
	if err := redeem("g", t0.Add(11*time.Second), time.Hour, false); err != nil {
		t.Fatal(err)
	}
	if err := redeem("dead", t0.Add(12*time.Second), time.Hour, true); err != nil {
		t.Fatal(err)
	}
	if err := redeem("next", t0.Add(14*time.Second), time.Hour, false); err != nil {
		t.Fatalf("a full store holding an invalidated delegation's credential: %v, want it dropped for room", err)
	}
}

// Review 9: at a full store, exchanging an initialization token for a
// session credential makes room by dropping that used token (and holds
// its delegation meanwhile), so each exchange works however soon after
// another: a sweep alone could drop the token and with it the delegation,
// burning the user's one-time token.
func TestMemoryStoreFullInitExchanges(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const limit = 4
	s := NewMemoryStore(WithLimit(limit))
	for i := range limit {
		id := "az-" + strconv.Itoa(i)
		d := &DelegationRecord{AuthorizationID: id, Authority: "https://idp.test", CreatedAt: t0, CurrentScope: pass.Scope{"r"}}
		if err := s.Redeem(ctx, d, nil, &InitRecord{Hash: "i-" + id, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range limit {
		id := "az-" + strconv.Itoa(i)
		now := t0.Add(time.Second + time.Duration(i)*10*time.Millisecond)
		if _, err := s.ConsumeInit(ctx, "i-"+id, now); err != nil {
			t.Fatal(err)
		}
		if err := s.AddCredential(ctx, &CredentialRecord{Hash: "s-" + id, Kind: KindSession, AuthorizationID: id,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatalf("exchange %d at a full store: %v", i, err)
		}
		if _, d, err := s.Credential(ctx, "s-"+id, now); err != nil || d.AuthorizationID != id {
			t.Fatalf("the session credential %d: %v", i, err)
		}
	}
	if d, c, i := s.Len(); d != limit || c != limit || i != 0 {
		t.Errorf("held: %d delegations, %d credentials, %d init tokens; want %d, %d, 0", d, c, i, limit, limit)
	}
}

// Review 9: writes whose times do not advance past the last forced sweep
// (concurrent redemptions reach the lock out of order; a frozen clock)
// are held to the process's clock, so a store made dirty before each of
// them still sweeps at most once per forcedSweepEvery.
func TestMemoryStoreFullSweepsOutOfOrderTimes(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const limit = 200
	s := NewMemoryStore(WithLimit(limit))
	redeem := func(id string, at time.Time) error {
		return s.Redeem(ctx, &DelegationRecord{AuthorizationID: id, CreatedAt: at},
			&CredentialRecord{Hash: "h-" + id, Kind: KindBearer, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}, nil)
	}
	for i := range limit {
		if err := redeem("az-"+strconv.Itoa(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	base := t0.Add(time.Minute)
	// The first write after an invalidation sweeps and makes room.
	if err := s.Invalidate(ctx, "az-0", base, "revoked"); err != nil {
		t.Fatal(err)
	}
	if err := redeem("first", base); err != nil {
		t.Fatal(err)
	}
	before := s.sweeps
	for i := 1; i <= 100; i++ {
		if err := s.Invalidate(ctx, "az-"+strconv.Itoa(i), base, "revoked"); err != nil {
			t.Fatal(err)
		}
		_ = redeem("new-"+strconv.Itoa(i), base.Add(-time.Duration(i)*time.Millisecond))
	}
	if got := s.sweeps - before; got > 2 { // one, or two across a second of this process
		t.Errorf("%d forced sweeps for 100 writes with times not after the last one's, want at most 1 per second of this process", got)
	}
}
