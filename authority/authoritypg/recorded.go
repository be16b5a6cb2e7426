package authoritypg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/pgreplay"
)

var _ authority.RecordingStore = (*Store)(nil)

// ConsumePassRecorded implements authority.RecordingStore. When replay is
// a dpop/dpoppg table on the store's own pool, the assertion's record and the
// read of the pass's row go in one batch: one round trip, and one implicit
// transaction that commits both (pgx sends a batch with one Sync), so a
// validation costs two round trips instead of three. The record is then
// dpoppg's own statement and key on dpoppg's clock, and the row lock its
// INSERT takes on a pair claimed concurrently by another replica makes
// that replica's record wait and find the pair taken: exactly one of them
// consumes. With any other cache (in memory, custom, or dpoppg on another
// pool) the record is made by that cache, then the pass consumed as
// ConsumePass does.
func (s *Store) ConsumePassRecorded(ctx context.Context, passHash, audience, authorizationID string, now time.Time,
	replay dpop.ReplayCache, record func(dpop.ReplayCache) error,
) (*authority.Consumption, error) {
	switch {
	case authorizationID == "":
		return nil, errors.New("authoritypg: ConsumePassRecorded: empty authorization id")
	case record == nil:
		return nil, errors.New("authoritypg: ConsumePassRecorded: no record function")
	}
	pool, clock, ok := pgreplay.Of(replay)
	if !ok || pool != s.pool {
		if err := record(replay); err != nil {
			return nil, err
		}
		return s.consumePass(ctx, passHash, audience, authorizationID, now, nil)
	}
	f := &foldedRecord{s: s, rc: replay, now: clock, passHash: passHash}
	if err := record(f); err != nil {
		return nil, err
	}
	var pre *passRead
	if f.done {
		pre = &f.read
	}
	return s.consumePass(ctx, passHash, audience, authorizationID, now, pre)
}

// foldedRecord is the cache ConsumePassRecorded hands its record
// function: its first Seen sends the replay record (the table's own
// statement, on the table's clock) and the read of the pass's row
// together, answers the record's outcome and keeps the read for the
// consumption. Any other Seen is rc's own.
type foldedRecord struct {
	s        *Store
	rc       dpop.ReplayCache // a dpoppg table on s's pool
	now      func() time.Time // rc's clock
	passHash string
	sent     bool
	done     bool     // the first Seen read the row into read
	read     passRead // with the batch, in the one allocation
	batch    pgx.Batch
	queued   [2]*pgx.QueuedQuery
}

func (f *foldedRecord) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	if f.sent {
		return f.rc.Seen(ctx, issuer, jti, exp)
	}
	f.sent = true
	b := &f.batch
	b.QueuedQueries = f.queued[:0]
	sql, args, readSeen := pgreplay.Statement(issuer, jti, exp, f.now())
	b.Queue(sql, args...)
	b.Queue(passRowSQL, f.passHash)
	br := f.s.pool.SendBatch(ctx, b)
	replayed, err := readSeen(br.QueryRow())
	r, rerr := scanRequest(br.QueryRow())
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && rerr != nil && !errors.Is(rerr, pgx.ErrNoRows) {
		// The read failed, and with it, in the one transaction, the
		// record: the pair is not known to be claimed.
		err = rerr
	}
	if err != nil {
		return false, fmt.Errorf("authoritypg: replay record: %w", err)
	}
	f.read, f.done = passRead{r: r, err: rerr}, true
	return replayed, nil
}
