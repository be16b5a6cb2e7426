package conformance_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass/conformance"
)

func sampleReport() *conformance.Report {
	return &conformance.Report{
		Started: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC), Duration: 1500 * time.Millisecond,
		Targets: []string{"service https://app.test"},
		Results: []conformance.Result{
			{Role: "service", Group: "redemption", ID: "HB-8", Name: "no proof is refused", Level: conformance.Required,
				Expected: "reject", Outcome: conformance.Fail, Got: `a bearer_token was issued <script>alert(1)</script>`,
				Exchanges: []conformance.Exchange{{Method: "POST", URL: "https://app.test/redeem", Request: "{}", Status: 200, Response: "{}"}}},
			{Role: "service", ID: "X-DNS-11", Name: "cache", Level: conformance.Recommended, Outcome: conformance.Warn},
			{Role: "authority", ID: "A-CFG-2", Name: "schema", Level: conformance.Required, Outcome: conformance.Pass},
			{Role: "extension", ID: "ext:mission", Name: "mission", Level: conformance.Choice, Outcome: conformance.Skip},
		},
	}
}

// The three outputs carry every result; a warning or a skip alone never
// fails a run; the HTML report is self-contained and escapes what targets
// sent.
func TestReportOutputs(t *testing.T) {
	rep := sampleReport()
	if !rep.Failed() || rep.Count(conformance.Warn) != 1 || rep.Count(conformance.Skip) != 1 {
		t.Errorf("Failed=%v warn=%d skip=%d", rep.Failed(), rep.Count(conformance.Warn), rep.Count(conformance.Skip))
	}
	ok := &conformance.Report{Results: rep.Results[1:]}
	if ok.Failed() {
		t.Error("warnings and skips failed the run")
	}
	var text, js, html bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "FAIL  service   HB-8") || !strings.Contains(text.String(), "1 passed, 1 failed, 1 warnings, 1 skipped") {
		t.Errorf("text:\n%s", text.String())
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back conformance.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 4 || back.Results[0].Outcome != conformance.Fail {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	for _, bad := range []string{"<script>", "<link", "src="} {
		if strings.Contains(h, bad) {
			t.Errorf("HTML holds %q", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;", "HB-8", "https://app.test/redeem", `class="fail"`} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

// A configuration without a user or a target is refused before anything
// is sent; so is a schema folder without schemas.
func TestRunRefusesBadConfig(t *testing.T) {
	for _, cfg := range []conformance.Config{
		{ServiceOrigin: "https://app.test"},
		{User: "alex@corp.test"},
		{User: "not an address", ServiceOrigin: "https://app.test"},
		{User: "alex@corp.test", ServiceOrigin: "https://app.test", SchemaDir: t.TempDir()},
	} {
		if _, err := conformance.Run(t.Context(), cfg); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
	if _, err := conformance.NewKitService("http://kit.test"); err == nil {
		t.Error("NewKitService accepted an http origin")
	}
	if _, err := conformance.NewKitService(); err == nil {
		t.Error("NewKitService accepted no origin")
	}
}
