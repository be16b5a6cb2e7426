package conformance

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// check is one running check.
type check struct {
	r       *runner
	res     Result
	bad     []string
	skipped string
}

// failf records a deviation; the check's Level decides whether it fails
// the run.
func (c *check) failf(format string, args ...any) {
	c.bad = append(c.bad, fmt.Sprintf(format, args...))
}

// skipf marks the check as not applicable to this target.
func (c *check) skipf(format string, args ...any) {
	c.skipped = fmt.Sprintf(format, args...)
}

// got records what came back, for a passing check.
func (c *check) got(format string, args ...any) {
	if c.res.Got == "" {
		c.res.Got = fmt.Sprintf(format, args...)
	}
}

func (c *check) send(ctx context.Context, method, url string, hdr http.Header, body any) *answer {
	return c.r.send(ctx, c, method, url, hdr, body)
}

// expectRefusal checks that a answers 4xx with a valid error document,
// and, when wantStatus is not zero, warns unless it is that suggested
// status.
func (c *check) expectRefusal(a *answer, what string, wantStatus ...int) {
	switch {
	case a.err != nil:
		c.failf("%s: %v", what, a.err)
		return
	case !a.refused():
		c.failf("%s: want a 4xx refusal, got %s", what, a)
		return
	}
	if err := c.r.sch.validate(a.body, "error-response.schema.json", ""); err != nil {
		c.failf("%s: %d with a body that is not an error document: %v", what, a.status, err)
		return
	}
	if len(wantStatus) > 0 {
		for _, s := range wantStatus {
			if a.status == s {
				return
			}
		}
		c.r.note(c, fmt.Sprintf("%s: %d (suggested %v)", what, a.status, wantStatus))
	}
}

// note keeps a remark that does not fail the check.
func (r *runner) note(c *check, s string) {
	if c.res.Got != "" {
		c.res.Got += "; "
	}
	c.res.Got += s
}

// def defines a check.
type def struct {
	role, group, id, name string
	level                 Level
	expected              string
	fn                    func(ctx context.Context, c *check)
}

// setup names the checks that find the targets: they always run.
var setup = map[string]bool{"S-CFG-1": true, "S-RES-13": true, "A-CFG-2": true}

func (r *runner) selected(d def) bool {
	if len(r.cfg.Only) == 0 || setup[d.id] {
		return true
	}
	for _, p := range r.cfg.Only {
		if strings.HasPrefix(d.id, p) {
			return true
		}
	}
	return false
}

func (r *runner) exec(ctx context.Context, d def) {
	if !r.selected(d) {
		return
	}
	start := time.Now()
	c := &check{r: r, res: Result{Role: d.role, Group: d.group, ID: d.id, Name: d.name, Level: d.level, Expected: d.expected}}
	if ctx.Err() != nil {
		c.skipf("run cancelled")
	} else {
		func() {
			defer func() {
				if p := recover(); p != nil {
					c.failf("the kit itself failed: %v", p)
				}
			}()
			d.fn(ctx, c)
		}()
	}
	switch {
	case len(c.bad) > 0:
		c.res.Outcome = Fail
		if d.level == Recommended {
			c.res.Outcome = Warn
		}
		c.res.Got = strings.Join(c.bad, "; ")
	case c.skipped != "":
		c.res.Outcome = Skip
		c.res.Got = c.skipped
	default:
		c.res.Outcome = Pass
	}
	c.res.Duration = time.Since(start)
	r.report.Results = append(r.report.Results, c.res)
	if r.cfg.Progress != nil {
		r.cfg.Progress(c.res)
	}
}

func (r *runner) run(ctx context.Context) *Report {
	r.report.Started = time.Now()
	if r.cfg.ServiceOrigin != "" || r.cfg.ServiceConfigURL != "" {
		r.report.Targets = append(r.report.Targets, "service "+firstOf(r.cfg.ServiceOrigin, r.cfg.ServiceConfigURL))
	}
	if r.cfg.AuthorityConfigURL != "" || r.cfg.AuthorityID != "" {
		r.report.Targets = append(r.report.Targets, "authority "+firstOf(r.cfg.AuthorityConfigURL, r.cfg.AuthorityID))
	}
	for _, d := range r.serviceChecks() {
		r.exec(ctx, d)
	}
	for _, d := range r.authorityChecks() {
		r.exec(ctx, d)
	}
	for _, d := range slices.Concat(r.extensionChecks(), r.missionLayerChecks(), r.delegationChecks(), r.eventsChecks()) {
		r.exec(ctx, d)
	}
	r.exec(ctx, r.errorBodiesCheck())
	r.report.Duration = time.Since(r.report.Started)
	return &r.report
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// errorBodiesCheck judges every error answer of the run (X-ERR-2): a
// refusal with a body that is not the error document is a failure even
// where the refusal itself was right.
func (r *runner) errorBodiesCheck() def {
	return def{role: "all", group: "errors", id: "X-ERR-2", level: Required,
		name:     "every error answer of the run is an error document",
		expected: `§5.5: error bodies are {"error":{"code":<non-empty string>,"message":<string>}} (error-response schema).`,
		fn: func(ctx context.Context, c *check) {
			n := 0
			for _, res := range r.report.Results {
				for _, x := range res.Exchanges {
					if x.Status < 400 || x.Status >= 600 {
						continue
					}
					if strings.Contains(x.URL, "/init") || strings.Contains(x.URL, "initialization") || res.Group == "browser" {
						continue // the browser-facing endpoint may answer HTML
					}
					if r.setReceiver != "" && x.URL == r.setReceiver {
						continue // a SET receiver answers in RFC 8935's shape
					}
					n++
					if err := r.sch.validate([]byte(x.Response), "error-response.schema.json", ""); err != nil && x.Response != "" {
						c.failf("%s %s answered %d with %q", x.Method, x.URL, x.Status, oneLine(x.Response, 120))
					}
				}
			}
			c.got("%d error answers seen", n)
		}}
}
