package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// History search bounds: one page shows at most historyRows matches, found
// by reading at most historyScan missions, so a search costs the store a
// bounded amount whatever the query.
const (
	historyRows  = 50
	historyScan  = 2000
	historyBatch = 200
	maxQuery     = 200
)

type historyView struct {
	Query, State string
	States       []string
	Rows         []historyRow
	Next         string // the next page's URL, empty on the last
	Scanned      int
}

type historyRow struct {
	ID, User, Harness, Task, Service string
	State, StateClass                string
	Created, CreatedAbs              string
	DecidedBy, Decided, DecidedAbs   string
	Reason                           string
}

// history is GET {base}/history?q=&state=&after=: past and present
// missions in creation order, those matching q (user, task, Service,
// harness, decider, reason or id, case-insensitive) and state, of users
// the person may decide for.
func (p *Console) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := p.now()
	hv := &historyView{Query: strings.TrimSpace(q.Get("q")), State: q.Get("state"),
		States: []string{"pending", "active", "suspended", "completed", "revoked", "expired"}}
	if len(hv.Query) > maxQuery {
		hv.Query = hv.Query[:maxQuery]
	}
	opts := authority.MissionListOptions{Limit: historyBatch, After: parseCursor(q.Get("after"))}
	if !pass.MissionState(hv.State).Valid() {
		hv.State = ""
	}
	if hv.State != "" {
		opts.States = []pass.MissionState{pass.MissionState(hv.State)}
	}
	needle := strings.ToLower(hv.Query)
	for hv.Scanned < historyScan && len(hv.Rows) < historyRows {
		page, err := p.a.Missions(r.Context(), opts)
		if err != nil {
			p.fail(w, err)
			return
		}
		var last *pass.MissionRecord
		for i := range page.Missions {
			m := &page.Missions[i]
			last = m
			hv.Scanned++
			if !p.may(r, m.User.Email) || !matches(m, needle) {
				continue
			}
			hv.Rows = append(hv.Rows, historyRowOf(m, now))
			if len(hv.Rows) == historyRows {
				break
			}
		}
		if page.Next == nil || len(hv.Rows) == historyRows || last == nil {
			if (page.Next != nil || len(hv.Rows) == historyRows) && last != nil {
				hv.Next = p.historyURL(hv, last)
			}
			break
		}
		opts.After = page.Next
		if hv.Scanned >= historyScan {
			hv.Next = p.historyURL(hv, last)
		}
	}
	v := p.newView(w, r)
	v.History = hv
	p.render(w, v)
}

func (p *Console) historyURL(hv *historyView, last *pass.MissionRecord) string {
	return p.base + "/history?" + url.Values{"q": {hv.Query}, "state": {hv.State},
		"after": {strconv.FormatInt(last.CreatedAt.UnixNano(), 10) + "_" + last.ID}}.Encode()
}

// parseCursor reads "<unix nanoseconds>_<mission id>"; anything else
// starts from the beginning.
func parseCursor(s string) *authority.MissionCursor {
	ns, id, ok := strings.Cut(s, "_")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || !strings.HasPrefix(id, pass.MissionIDPrefix) || len(id) > 128 {
		return nil
	}
	return &authority.MissionCursor{CreatedAt: time.Unix(0, n).UTC(), MissionID: id}
}

func matches(m *pass.MissionRecord, needle string) bool {
	if needle == "" {
		return true
	}
	fields := []string{m.ID, m.User.Email, m.Task.Description, m.Service, m.Harness.ID}
	if a := m.Approval; a != nil {
		fields = append(fields, a.DecidedBy, a.Reason)
	}
	if e := m.Ended; e != nil {
		fields = append(fields, e.By, e.Reason)
	}
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

func historyRowOf(m *pass.MissionRecord, now time.Time) historyRow {
	h := historyRow{ID: m.ID, User: m.User.Email, Harness: m.Harness.ID, Task: m.Task.Description, Service: m.Service,
		State: string(m.State), StateClass: "status-" + string(m.State),
		Created: ago(m.CreatedAt, now), CreatedAbs: abs(m.CreatedAt)}
	if a := m.Approval; a != nil {
		h.DecidedBy, h.Reason = a.DecidedBy, a.Reason
		if a.DecidedAt != nil {
			h.Decided, h.DecidedAbs = ago(*a.DecidedAt, now), abs(*a.DecidedAt)
		}
	}
	if e := m.Ended; e != nil && e.Reason != "" {
		h.Reason = e.Reason
	}
	return h
}
