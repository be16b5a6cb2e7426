package authority

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/pass"
)

// auditRecord is one line of ExportAudit: one history entry with what an
// auditor needs to read it alone.
type auditRecord struct {
	At              time.Time      `json:"at"`
	Event           string         `json:"event"`
	MissionID       string         `json:"mission_id"`
	Seq             int64          `json:"seq"`
	Version         int64          `json:"version"`
	By              string         `json:"by"`
	RequestIDHash   string         `json:"request_id_hash"`
	ParentMissionID string         `json:"parent_mission_id,omitempty"`
	User            string         `json:"user"`
	Service         string         `json:"service"`
	Agent           string         `json:"agent"`
	HarnessID       string         `json:"harness_id"`
	Tier            string         `json:"tier"`
	Task            auditTask      `json:"task"`
	Available       pass.Scope     `json:"available_scope"`
	Requested       pass.Scope     `json:"requested_scope,omitempty"`
	Scope           pass.Scope     `json:"scope"`
	Decision        *auditDecision `json:"decision,omitempty"`
	Details         map[string]any `json:"details,omitempty"`
	Prev            string         `json:"prev"`
	Hash            string         `json:"hash"`
}

type auditTask struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Attested    bool   `json:"attested"`
}

type auditDecision struct {
	Status                 string     `json:"status"`
	DecidedBy              string     `json:"decided_by"`
	DecidedAt              time.Time  `json:"decided_at"`
	Reason                 string     `json:"reason,omitempty"`
	Scope                  pass.Scope `json:"scope,omitempty"`
	ScopeBasis             string     `json:"scope_basis,omitempty"`
	DisclosureSHA256       string     `json:"disclosure_sha256,omitempty"`
	PassExpiresAt          *time.Time `json:"pass_expires_at,omitempty"`
	AuthorizationExpiresAt *time.Time `json:"authorization_expires_at,omitempty"`
}

// ExportAudit writes the audit trail as JSON Lines: one record per
// lifecycle event (history entry) recorded at or after since, with the
// mission's full request id hash, user, agent, task, scopes and the
// evidence of its decision, missions in creation order and each one's
// events in order. Each record carries its entry's chain hash, so it can
// be checked against the mission's history. It reads the store page by
// page and holds one mission at a time.
func (a *Authority) ExportAudit(ctx context.Context, w io.Writer, since time.Time) error {
	if err := a.ready(); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	opts := MissionListOptions{Limit: 1000}
	for {
		page, err := a.store.Missions(ctx, opts)
		if err != nil {
			return fmt.Errorf("authority: ExportAudit: %w", err)
		}
		for _, r := range page {
			recs, err := a.store.History(ctx, r.MissionID)
			if errors.Is(err, ErrNotFound) {
				continue // pruned meanwhile
			}
			if err != nil {
				return fmt.Errorf("authority: ExportAudit: %w", err)
			}
			for _, rec := range recs {
				e, err := missionlog.Decode(rec.Body, rec.Hash)
				if err != nil {
					return fmt.Errorf("authority: ExportAudit: mission %s seq %d: %w", r.MissionID, rec.Seq, err)
				}
				if e.At.Before(since) {
					continue
				}
				if err := enc.Encode(auditOf(r, e)); err != nil {
					return fmt.Errorf("authority: ExportAudit: %w", err)
				}
			}
		}
		if len(page) < opts.EffectiveLimit() {
			break
		}
		last := page[len(page)-1]
		opts.After = &MissionCursor{CreatedAt: last.CreatedAt, MissionID: last.MissionID}
	}
	return bw.Flush()
}

func auditOf(r *Request, e pass.HistoryEntry) auditRecord {
	out := auditRecord{
		At: e.At, Event: e.Type, MissionID: r.MissionID, Seq: e.Seq, Version: e.Version, By: e.By,
		RequestIDHash: r.IDHash, ParentMissionID: r.ParentMissionID, User: r.User, Service: r.Service,
		Agent: r.AgentID, HarnessID: r.HarnessID, Tier: string(r.Tier),
		Task:      auditTask{ID: r.TaskID, Description: r.TaskDescription, Attested: r.TaskAttested},
		Available: scopeDetail(r.AvailableScope), Requested: r.RequestedScope, Scope: scopeDetail(r.Scope),
		Details: e.Details, Prev: e.Prev, Hash: e.Hash,
	}
	if d := r.Decision; d != nil {
		ad := &auditDecision{Status: string(d.Status), DecidedBy: d.DecidedBy, DecidedAt: d.DecidedAt, Reason: d.Reason,
			Scope: d.Scope, ScopeBasis: d.ScopeDecision, DisclosureSHA256: d.DisclosureSHA256}
		if d.Status == pass.StatusApproved {
			p, z := d.PassExpiresAt, d.AuthorizationExpiresAt
			ad.PassExpiresAt, ad.AuthorizationExpiresAt = &p, &z
		}
		out.Decision = ad
	}
	return out
}
