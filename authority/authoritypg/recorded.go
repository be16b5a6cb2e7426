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
//
// A root pass whose row this store wrote (WithKnownPasses) needs no read:
// its record and its conditional write go in one statement, the write
// made only if the record claimed the pair, so a validation is one round
// trip and a replay consumes nothing. If the pair was claimed but the row
// changed since this store wrote it, the consumption reads and writes as
// ConsumePass does, without recording again.
func (s *Store) ConsumePassRecorded(ctx context.Context, passHash, audience, authorizationID string, now time.Time,
	replay dpop.ReplayCache, record func(dpop.ReplayCache) error,
) (*authority.Consumption, error) {
	switch {
	case authorizationID == "":
		return nil, errors.New("authoritypg: ConsumePassRecorded: empty authorization id")
	case record == nil:
		return nil, errors.New("authoritypg: ConsumePassRecorded: no record function")
	}
	known := s.knownWrite(passHash, audience, authorizationID, now)
	pool, clock, ok := pgreplay.Of(replay)
	if !ok || pool != s.pool {
		if err := record(replay); err != nil {
			return nil, err
		}
		return s.consumePass(ctx, passHash, audience, authorizationID, now, nil, known)
	}
	f := &foldedRecord{s: s, rc: replay, now: clock, passHash: passHash, known: known}
	if err := record(f); err != nil {
		// A record that fails after its Seen claimed the pair may leave
		// the pass consumed; the Authority's never does (it returns
		// Seen's outcome).
		return nil, err
	}
	if f.consumed {
		return &known.c, nil
	}
	var pre *passRead
	if f.done {
		pre = &f.read
	}
	if f.sent {
		known = nil // tried in the record's statement, and the row had changed
	}
	return s.consumePass(ctx, passHash, audience, authorizationID, now, pre, known)
}

// claimParams is the most parameters a claim adds to consumeSQL[0]'s.
const claimParams = 3

// claimConsumeSQL is consumeSQL[0] made only if the replay record of
// [pgreplay.Statement] claims its pair, keyed by that statement: a pair
// already expired is only looked up, its "claim" a row when no record
// holds it. The statement answers whether the pair was claimed and the
// rows consumed.
var claimConsumeSQL = map[string]string{
	pgreplay.SeenSQL:     consumeStatement(0, pgreplay.ClaimCTE(pgreplay.SeenSQL, consumeParams+1)),
	pgreplay.ContainsSQL: consumeStatement(0, pgreplay.ClaimCTE(pgreplay.ContainsSQL, consumeParams+1)),
}

// foldedRecord is the cache ConsumePassRecorded hands its record
// function: its first Seen sends the replay record (the table's own
// statement, on the table's clock) and the read of the pass's row
// together, answers the record's outcome and keeps the read for the
// consumption; with a known row's write, it sends the record and the
// write in one statement instead (claimConsumeSQL). Any other Seen is
// rc's own.
type foldedRecord struct {
	s        *Store
	rc       dpop.ReplayCache // a dpoppg table on s's pool
	now      func() time.Time // rc's clock
	passHash string
	known    *consumeWrite // the write of the row this store wrote, or nil
	sent     bool
	consumed bool     // the first Seen claimed the pair and made known's write
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
	if f.known != nil {
		return f.claimConsume(ctx, issuer, jti, exp)
	}
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

// claimConsume records the pair and, only if it claimed it, makes the
// known row's write, in one statement: a replay consumes nothing, and a
// write that finds the row changed leaves the pair recorded for the read
// and write that follow.
func (f *foldedRecord) claimConsume(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	sql, args, _ := pgreplay.Statement(issuer, jti, exp, f.now())
	q, ok := claimConsumeSQL[sql]
	if !ok {
		return false, errors.New("authoritypg: replay record: unknown statement")
	}
	var claimed, consumed int
	if err := f.s.pool.QueryRow(ctx, q, append(f.known.args, args...)...).Scan(&claimed, &consumed); err != nil {
		return false, fmt.Errorf("authoritypg: replay record: %w", err)
	}
	f.consumed = claimed == 1 && consumed == 1
	return claimed == 0, nil
}
