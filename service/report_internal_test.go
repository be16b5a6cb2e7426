package service

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

var reportBase = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func reportRec(i int) *DelegationRecord {
	return &DelegationRecord{AuthorizationID: "authz-" + strconv.Itoa(i), Authority: "https://idp.example", MissionID: "msn_" + strconv.Itoa(i)}
}

// The buffer of reports is bounded: beyond maxReportDelegations the oldest
// delegation's observations are dropped, and counted.
func TestReporterDropsOldest(t *testing.T) {
	r := newReporter()
	for i := range maxReportDelegations {
		r.observe(reportRec(i), pass.ObservationScopeDenied, "admin", "", reportBase)
	}
	r.observe(reportRec(0), pass.ObservationScopeDenied, "admin", "", reportBase) // count 2 on the oldest
	r.observe(reportRec(maxReportDelegations), pass.ObservationScopeDenied, "admin", "", reportBase)
	if n := len(r.entries); n != maxReportDelegations {
		t.Fatalf("%d entries, want the cap %d", n, maxReportDelegations)
	}
	if _, ok := r.entries["authz-0"]; ok {
		t.Error("the oldest delegation was kept")
	}
	batches, dropped := r.take(reportBase)
	if dropped != 2 {
		t.Errorf("dropped %d observations, want 2", dropped)
	}
	if len(batches) != reportBatch {
		t.Errorf("one round took %d reports, want %d", len(batches), reportBatch)
	}
}

// One delegation holds at most pass.MaxObservations kinds of refusal, so
// a report never exceeds what the wire allows; names are bounded too.
func TestReporterObservationsPerDelegation(t *testing.T) {
	r := newReporter()
	rec := reportRec(1)
	for i := range pass.MaxObservations + 1 {
		r.observe(rec, pass.ObservationScopeDenied, "scope-"+strconv.Itoa(i), "", reportBase)
	}
	r.observe(rec, pass.ObservationStageScopeExceeded, strings.Repeat("s", 1000), "stage", reportBase)
	batches, dropped := r.take(reportBase)
	if len(batches) != 1 || len(batches[0].obs) != pass.MaxObservations || dropped != 2 {
		t.Fatalf("take = %d batches, %d observations, dropped %d; want 1, %d, 2", len(batches), len(batches[0].obs), dropped, pass.MaxObservations)
	}
	req := pass.MissionReportRequest{AuthorizationID: rec.AuthorizationID, Observations: batches[0].obs}
	if err := req.Validate(); err != nil {
		t.Errorf("the report is not valid on the wire: %v", err)
	}
	r = newReporter()
	r.observe(rec, pass.ObservationScopeDenied, strings.Repeat("s", 1000), "", reportBase)
	batches, _ = r.take(reportBase)
	if got := len(batches[0].obs[0].Scope); got != maxObservationValue {
		t.Errorf("scope of %d bytes kept, want %d", got, maxObservationValue)
	}
}

// At most one report per delegation per reportInterval; what arrives
// meanwhile waits, aggregated.
func TestReporterInterval(t *testing.T) {
	r := newReporter()
	rec := reportRec(1)
	r.observe(rec, pass.ObservationScopeDenied, "admin", "", reportBase)
	if b, _ := r.take(reportBase); len(b) != 1 {
		t.Fatalf("first take: %d reports, want 1", len(b))
	}
	for i := 1; i <= 3; i++ {
		r.observe(rec, pass.ObservationScopeDenied, "admin", "", reportBase.Add(time.Duration(i)*time.Second))
	}
	if b, _ := r.take(reportBase.Add(reportInterval - time.Nanosecond)); len(b) != 0 {
		t.Fatalf("a report within %v of the last: %+v", reportInterval, b)
	}
	b, _ := r.take(reportBase.Add(reportInterval))
	if len(b) != 1 || b[0].obs[0].Count != 3 || !b[0].obs[0].FirstAt.Equal(reportBase.Add(time.Second)) {
		t.Fatalf("after the interval: %+v, want one report counting 3", b)
	}
	// An entry with nothing pending is forgotten once its interval passed.
	r.take(reportBase.Add(3 * reportInterval))
	if len(r.entries) != 0 || r.age.Len() != 0 {
		t.Errorf("%d entries kept with nothing to send", len(r.entries))
	}
}

// A report the Authority could not take is merged back and retried, then
// dropped after maxReportAttempts.
func TestReporterRetries(t *testing.T) {
	r := newReporter()
	rec := reportRec(1)
	r.observe(rec, pass.ObservationScopeDenied, "admin", "", reportBase)
	now := reportBase
	for attempt := 1; attempt <= maxReportAttempts; attempt++ {
		b, dropped := r.take(now)
		if len(b) != 1 || dropped != 0 {
			t.Fatalf("attempt %d: %d reports, %d dropped", attempt, len(b), dropped)
		}
		if attempt == 2 {
			r.observe(rec, pass.ObservationScopeDenied, "admin", "", now)
		}
		r.putBack(b[0], true)
		now = now.Add(reportInterval)
	}
	b, dropped := r.take(now)
	if len(b) != 0 || dropped != 2 {
		t.Errorf("after %d failed attempts: %d reports, %d dropped; want 0 and 2", maxReportAttempts, len(b), dropped)
	}
}
