// Package authoritypg is an [authority.Store] on PostgreSQL (driver
// github.com/jackc/pgx/v5), so that several Authority replicas behind a
// load balancer share issuance requests, passes and authorizations, and a
// pass stays single-use whichever replica validates it. Applications that
// do not want PostgreSQL do not import this package, and so not pgx.
//
// # Overview
//
// [New] wraps a pgxpool; [Store.Migrate] creates the schema; the Store goes
// into authority.Config.Store; [Store.RunJanitor] deletes records that can
// no longer change. Every replica uses its own pool on the same database.
//
// # Usage
//
// Open one pgxpool per process, migrate once at start-up (every replica
// may do it; it is idempotent), pass the store in the Config, and run the
// janitor for as long as the Authority serves:
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	if err != nil {
//		return err
//	}
//	defer pool.Close()
//	store := authoritypg.New(pool, authoritypg.WithLogger(logger))
//	if err := store.Migrate(ctx); err != nil {
//		return err
//	}
//	go store.RunJanitor(ctx, time.Minute) // returns when ctx ends
//	a, err := authority.New(authority.Config{
//		Identifier: "https://idp.corp.example",
//		Store:      store,
//		// ...
//	})
//
// A database error fails the operation closed: the Authority answers with
// an error, never with a success it did not store. pgxpool replaces broken
// connections by itself, so after a PostgreSQL restart the same Store
// works again.
//
// # Atomicity
//
// Each state transition is one conditional statement or one short
// transaction, never a read followed by a blind write, so replicas racing
// on one record cannot both win:
//
//   - ConsumePass is two statements and no transaction (three for a
//     sub-agent's pass; one for a root pass this store issued, whose row
//     it remembers and need not read): a read of the row holding the
//     pass (and of its ancestors, in one more statement, once the row is
//     worth consuming), then one conditional write (the consumption, the authorization and the mission's
//     "redeemed" history entry in one statement) that takes effect only
//     if the row and every ancestor are still as read, so a pass is
//     consumed once and never under a mission suspended or ended in
//     between (the write locks the ancestors FOR SHARE, root first, as
//     TransitionMission locks them). Only a pass of an active mission
//     whose audience matches, unconsumed and unexpired, becomes an
//     authorization. Otherwise nothing changes and the error says why:
//     ErrNotFound (also for a mission that is not active),
//     ErrWrongAudience (the pass is not burnt), ErrConsumed or
//     ErrExpired.
//   - RotatePass is UPDATE ... WHERE ... RETURNING.
//   - TransitionMission locks the mission's row, applies
//     [authority.MissionChange.Apply], writes the row, its history entry and
//     its authorization, then locks and updates each descendant
//     ([authority.MissionChange.Cascade]) in the same transaction. Replicas
//     racing on one mission serialise on the row lock, so each committed
//     change gets exactly one version.
//
// # Pool size
//
// On the validation path no transaction spans a round trip and no lock is
// held while the network or Go runs. A validation at the Authority makes
// two round trips in sequence, each on a connection taken from the pool
// and given back at once: the Service assertion's replay record with
// ConsumePass's read, in one batch, and ConsumePass's write (a sub-agent's
// pass adds the read of its ancestors). The batch needs the Authority's
// replay cache to be a dpop/dpoppg table on this store's own pool (the
// same *pgxpool.Pool); with any other cache the record is a round trip of
// its own. The record's row lock and the write's row locks are held only
// while the server runs the statements. A connection is thus busy
// for one round trip per statement, so size pgxpool's MaxConns to the
// statements the database should run at once, about 2–4 × its cores, not
// to the requests in flight: 16 validations in flight keep far fewer than
// 16 connections busy. pgxpool's default, max(4, NumCPU of the client),
// suits a small database. Operator and Harness calls (CreateRequest,
// CreateChild, TransitionMission) are short transactions of a few round
// trips on one connection; they are rare next to validations.
//
// A root pass this store issued (CreateRequest of an approved request,
// RotatePass) takes one round trip: the store remembers the row it wrote
// ([WithKnownPasses], default 4096 rows of about 1.5 KiB each, at most
// 16 MiB in all; a row over 8 KiB, from a long task description or many
// scopes, is not remembered) and sends the record and the conditional write
// in one statement, the write made only if the record claimed the
// assertion (with any other cache, the write alone, after the cache's
// record). The remembered row is never trusted: if another replica
// changed the row in between, the write applies to nothing and the read
// and write follow, so the outcome is the same. With several replicas,
// only a validation that reaches the replica which issued the pass saves
// the read; the others take two round trips.
//
// # Pool configuration
//
// None is needed beyond the size. The statements of a consumption are
// written so that every estimate in them is the same whatever their
// parameters, so under PostgreSQL's default plan_cache_mode (auto) each
// connection plans them for their first five executions and then keeps
// one generic plan: planning them every time cost more than running
// them. Leave plan_cache_mode at auto (force_generic_plan changes nothing
// for these statements, and a pool shared with the application's own
// queries should not force it on them); force_custom_plan would plan every
// execution again.
//
// # Storage
//
// A mission lives on its request's row (id is the mission id; the request
// id, the Harness's polling secret, is kept only as its SHA-256). The
// history is a table of (mission_id, seq, body, hash) where body is the
// exact canonical bytes that were hashed (bytea, never jsonb, which would
// re-normalise them). It has no foreign key to the mission's row: every
// insert holds or writes that row already, the check cost each
// consumption a lookup and a lock of the row it had just updated, and
// [Store.Prune] deletes a mission's history in the transaction that
// deletes the mission, by a second statement that sees every record a
// racing transition committed. Delete missions only through Prune, or
// their history too.
//
// Passes are stored only as their hash (unique index). Scopes are text[],
// the holder key (cnf) is a json column (its exact bytes), times are
// timestamptz: PostgreSQL keeps microseconds, and truncation errs on the
// side of expired. Listings filter users case-insensitively through an
// index on lower(user_email). Every time comes from the caller (the
// Authority's Config.Now), never from the database's clock.
//
// A consumption changes no indexed column of its mission's row, and the
// requests table keeps a quarter of each page free, so the update is a
// heap-only one that writes no index entry. For that, an approved
// mission's end (from which the retention counts) is the later of its
// pass's and its authorization's expiry from the approval on: an
// unredeemed pass's row is kept until its authorization would have
// expired.
//
// Records that can no longer change are deleted by [Store.Prune] once
// they ended more than the retention ago (WithRetention, default one
// hour, as the in-memory store), in bounded batches; [Store.RunJanitor]
// calls it on a ticker, batch after batch until the backlog is gone.
//
// The schema is created by [Store.Migrate] from migrations embedded in the
// package (versioned, applied once under an advisory lock, recorded in
// agentpass_schema_migrations); the tables are named agentpass_authority_*.
// Operators with their own migration tool apply [Migrations] instead.
package authoritypg
