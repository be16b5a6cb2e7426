package conformance

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// Level says how a failed check counts.
type Level string

const (
	// Required is a rule of v0.1 (a MUST, or a rule the spec states without a
	// keyword): a failure fails the run.
	Required Level = "MUST"
	// Recommended is a SHOULD or MAY of v0.1, a status code the spec only
	// suggests, or a recommendation of the project's gap notes: a failure is
	// a warning.
	Recommended Level = "SHOULD"
	// Choice is this SDK's documented behaviour beyond v0.1, checked only
	// where the target advertises the extension that promises it: a failure
	// fails the run, and a plain v0.1 target is never judged by it.
	Choice Level = "SDK"
)

// Outcome is the verdict of one check.
type Outcome string

// Outcomes.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Warn Outcome = "warn"
	Skip Outcome = "skip"
)

// Exchange is one HTTP request the kit sent and what came back. Secrets
// (pass values, tokens, initialization URLs) are redacted and JWTs shown by
// their header only.
type Exchange struct {
	Method   string `json:"method"`
	URL      string `json:"url"`
	Request  string `json:"request,omitempty"`
	Status   int    `json:"status,omitempty"`
	Response string `json:"response,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Result is the record of one check: what was sent, what was expected and
// why, and what came back.
type Result struct {
	Role      string        `json:"role"`
	Group     string        `json:"group"`
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Level     Level         `json:"level"`
	Expected  string        `json:"expected"`
	Outcome   Outcome       `json:"outcome"`
	Got       string        `json:"got,omitempty"`
	Exchanges []Exchange    `json:"exchanges,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
}

// Report is the outcome of a run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Targets  []string      `json:"targets"`
	Results  []Result      `json:"results"`
}

// Failed reports whether any check failed; warnings and skips do not count.
func (r *Report) Failed() bool {
	return r.Count(Fail) > 0
}

// Count returns how many checks ended with o.
func (r *Report) Count(o Outcome) int {
	n := 0
	for _, x := range r.Results {
		if x.Outcome == o {
			n++
		}
	}
	return n
}

// Find returns the first result whose ID is id and whose Name starts with
// name (any name when empty).
func (r *Report) Find(id, name string) (Result, bool) {
	for _, x := range r.Results {
		if x.ID == id && strings.HasPrefix(x.Name, name) {
			return x, true
		}
	}
	return Result{}, false
}

// ProgressLine formats one result as a line of the summary table.
func ProgressLine(x Result) string {
	mark := map[Outcome]string{Pass: "PASS", Fail: "FAIL", Warn: "WARN", Skip: "SKIP"}[x.Outcome]
	line := fmt.Sprintf("%-4s  %-9s %-13s %-6s %s", mark, x.Role, x.ID, x.Level, x.Name)
	if x.Outcome != Pass && x.Got != "" {
		line += "\n      " + oneLine(x.Got, 200)
	}
	return line
}

// WriteText writes the summary table.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%-4s  %-9s %-13s %-6s %s\n", "", "ROLE", "REQUIREMENT", "LEVEL", "CHECK")
	for _, x := range r.Results {
		fmt.Fprintln(w, ProgressLine(x))
	}
	_, err := fmt.Fprintf(w, "\n%d passed, %d failed, %d warnings, %d skipped in %s\n",
		r.Count(Pass), r.Count(Fail), r.Count(Warn), r.Count(Skip), r.Duration.Round(time.Millisecond))
	return err
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHTML writes a self-contained HTML report (no scripts, no external
// resources).
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlReport.Execute(w, r)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AgentPass conformance report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
.pass{color:#17702a}.fail{color:#b00020;font-weight:bold}.warn{color:#9a6700}.skip{color:#777}
details{margin:.2em 0}pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.5em;margin:.3em 0}
.sum span{margin-right:1.5em}
</style></head><body>
<h1>AgentPass conformance report</h1>
<p>Started {{.Started.Format "2006-01-02 15:04:05 MST"}}, took {{ms .Duration}}.
Targets: {{range .Targets}}<code>{{.}}</code> {{end}}</p>
<p class="sum"><span class="pass">{{.Count "pass"}} passed</span><span class="fail">{{.Count "fail"}} failed</span><span class="warn">{{.Count "warn"}} warnings</span><span class="skip">{{.Count "skip"}} skipped</span></p>
<p>Levels: MUST fails the run; SHOULD is a recommendation or a suggested status (a warning); SDK is this SDK's documented behaviour beyond v0.1, checked only where the target advertises it.</p>
<table><thead><tr><th>Outcome</th><th>Role</th><th>Requirement</th><th>Level</th><th>Check</th></tr></thead><tbody>
{{range .Results}}<tr><td class="{{.Outcome}}">{{.Outcome}}</td><td>{{.Role}}<br><small>{{.Group}}</small></td><td>{{.ID}}</td><td>{{.Level}}</td>
<td><details><summary>{{.Name}}{{if .Got}} — <em>{{.Got}}</em>{{end}}</summary>
<p><b>Expected:</b> {{.Expected}}</p>
{{range .Exchanges}}<pre>{{.Method}} {{.URL}}
{{if .Request}}{{.Request}}
{{end}}→ {{if .Error}}error: {{.Error}}{{else}}{{.Status}} {{.Response}}{{end}}</pre>{{end}}
</details></td></tr>
{{end}}</tbody></table></body></html>
`))
