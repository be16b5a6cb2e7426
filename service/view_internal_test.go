package service

import (
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// TestDelegationViewUsableAt: the middleware's shortcut, which compares now
// with ends worked out once per delegation snapshot, lets a request through
// exactly when Service.fresh's cached path would, followed by check's
// empty-scope refusal: never past CheckInterval, for a check time in the
// future, at or past the expiry, or for an invalidated, stale, held or
// scopeless delegation; with configured clocks (no monotonic reading) and
// time.Now's (with one).
func TestDelegationViewUsableAt(t *testing.T) {
	const interval = 30 * time.Second
	svc := &Service{cfg: &settings{Config: Config{CheckInterval: interval}}}
	// reference is fresh's cached-path condition as it stood with Time.Sub.
	reference := func(r *DelegationRecord, d *Delegation, now time.Time) bool {
		age := now.Sub(r.CheckedAt)
		return !r.Invalidated && (r.ExpiresAt.IsZero() || r.ExpiresAt.After(now)) && !r.Stale &&
			age >= 0 && age < interval && !r.held() && !d.Scope.IsEmpty()
	}
	clocks := map[string]time.Time{
		"wall":      time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		"monotonic": time.Now(),
	}
	offsets := []time.Duration{-interval - time.Nanosecond, -interval, -interval + time.Nanosecond,
		-time.Second, -time.Nanosecond, 0, time.Nanosecond, time.Second}
	flags := []func(*DelegationRecord){
		func(*DelegationRecord) {},
		func(r *DelegationRecord) { r.Invalidated = true },
		func(r *DelegationRecord) { r.Stale = true },
		func(r *DelegationRecord) { r.MissionState = pass.MissionSuspended },
		func(r *DelegationRecord) { r.CurrentScope = pass.Scope{"other"} },
	}
	cred := &CredentialRecord{Kind: KindBearer, Scope: pass.Scope{"r"}}
	n, usable := 0, 0
	for name, base := range clocks {
		// Expiries: none, around now, after the interval ends; read back
		// from a store (no monotonic reading) or made from the clock.
		expiries := []time.Time{{}, base.Round(0), base.Add(-time.Nanosecond).Round(0), base.Add(time.Nanosecond),
			base.Add(time.Second), base.Add(time.Hour).Round(0)}
		checks := []time.Time{{}, base.Round(0)}
		for _, o := range offsets {
			checks = append(checks, base.Add(o))
		}
		for ci, checked := range checks {
			for ei, exp := range expiries {
				for fi, flag := range flags {
					r := &DelegationRecord{AuthorizationID: "a1", CheckedAt: checked, ExpiresAt: exp,
						Scope: pass.Scope{"r"}, CurrentScope: pass.Scope{"r"}}
					flag(r)
					v := &delegationView{snap: r, svc: svc}
					v.init(cred)
					for _, o := range offsets {
						now := base.Add(-o)
						want := reference(r, &v.d, now)
						if got := v.usableAt(now); got != want {
							t.Errorf("%s clock, check %d, expiry %d, flag %d, now %v: usableAt = %v, want %v",
								name, ci, ei, fi, -o, got, want)
						}
						n++
						if want {
							usable++
						}
					}
				}
			}
		}
	}
	if usable == 0 || usable == n {
		t.Fatalf("%d of %d cases usable: the table does not exercise both answers", usable, n)
	}
	t.Logf("%d cases, %d usable", n, usable)
}

// TestCheckedWithin: the comparison fresh and the unreachable grace use
// answers as age >= 0 && age < d did.
func TestCheckedWithin(t *testing.T) {
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, now := range []time.Time{base, time.Now()} {
		for _, o := range []time.Duration{-time.Minute, -30*time.Second - 1, -30 * time.Second, -1, 0, 1, time.Hour} {
			checked := now.Add(o)
			age := now.Sub(checked)
			if got, want := checkedWithin(checked, now, 30*time.Second), age >= 0 && age < 30*time.Second; got != want {
				t.Errorf("check %v from now: checkedWithin = %v, want %v", o, got, want)
			}
		}
		if checkedWithin(time.Time{}, now, 30*time.Second) {
			t.Error("a delegation never checked is within the interval")
		}
	}
}
