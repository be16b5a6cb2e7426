// Package servicepg is a [service.Store] on PostgreSQL (driver
// github.com/jackc/pgx/v5), so that several Service replicas behind a load
// balancer share delegations, bearer tokens, browser sessions and one-time
// initialization tokens.
//
// # Overview
//
// [New] makes a Store from a pgxpool; [Store.Migrate] creates its tables and
// [Store.RunJanitor] deletes what has expired. Pass the Store as
// service.Config.Store, together with a replay cache from package
// dpop/dpoppg on the same database, which keeps the proofs and assertions
// the replicas have seen. Applications that do not want PostgreSQL do not
// import this package, and so not pgx.
//
// # Usage
//
// Open one pgxpool per process, migrate once at start-up (every replica
// may do it; it is idempotent), pass the store and a dpoppg replay cache
// in the Config, and run their janitors for as long as the Service serves:
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	if err != nil {
//		return err
//	}
//	defer pool.Close()
//	store := servicepg.New(pool, servicepg.WithLogger(logger))
//	if err := store.Migrate(ctx); err != nil {
//		return err
//	}
//	replay := dpoppg.New(pool, dpoppg.WithLogger(logger))
//	if err := replay.Migrate(ctx); err != nil {
//		return err
//	}
//	go store.RunJanitor(ctx, time.Minute)  // returns when ctx ends
//	go replay.RunJanitor(ctx, time.Minute) // likewise
//	svc, err := service.New(service.Config{
//		Store:       store,
//		ReplayCache: replay,
//		// ...
//	})
//
// A database error fails the operation closed: the Service refuses the
// request rather than accept a token it could not check. pgxpool replaces
// broken connections by itself, so after a PostgreSQL restart the same
// Store works again.
//
// # Atomicity
//
// Every operation that must be atomic across replicas is one statement:
//
//   - Redeem inserts the delegation and its credential (or initialization
//     token) in one statement (a data-modifying CTE); the unique key on
//     authorization_id makes a second redemption fail with
//     service.ErrConflict and store nothing.
//   - With the dpoppg cache on the Store's own pool as the Service's
//     replay cache, Redeem's statement also records the harness proof's
//     jti (Store.RedeemRecorded): the replay claim comes first, and the
//     delegation and credential are inserted only if it succeeded, so a
//     replayed proof never yields a credential and a redemption costs one
//     round trip fewer. A cache on another pool is used as it is.
//   - ConsumeInit is UPDATE ... SET used = true WHERE hash = $1 AND NOT
//     used RETURNING: of any number of concurrent visits one gets the
//     token. Its expiry is judged from the returned row (an expired token
//     is used up too, service.ErrInitExpired); when nothing is returned, a
//     read tells service.ErrNotFound from service.ErrInitUsed.
//   - Invalidate flips the delegation row; Credential reads a credential
//     JOINed with its delegation, so an invalidation is seen at once by
//     every replica for every credential and session of the delegation.
//   - AddCredential, RecordCheck, RecordMissionCheck and Invalidate each
//     test their condition and report whether the delegation exists in the
//     same statement; RecordMissionCheck compares the mission version in
//     that statement too, so answers applied out of order by two replicas
//     never leave the older one in force.
//   - ApplyEvent applies a security event with one conditional UPDATE
//     (version guard and mission match in its WHERE clause) and, for a
//     mission's end, one recursive UPDATE of its descendants, in one
//     transaction. The middleware reads the delegation row with every
//     request, so an event applied through one replica refuses the next
//     request at every replica; there is no per-process cache to notify.
//
// # Pool size
//
// No statement on the request paths runs in a transaction that spans a
// round trip, so a request holds a connection only while the server runs
// one statement. A bearer redemption with a holder proof makes three round
// trips in sequence, each on a connection taken from the pool and given
// back at once: the proof's replay lookup before the Authority is called,
// its replay record after (both dpop/dpoppg), and Redeem; the validation
// call to the Authority in between holds none. An authenticated API call
// makes one (Credential), and one more when it re-checks its delegation
// with the Authority (RecordCheck). Size pgxpool's MaxConns to the statements the
// database should run at once, about 2–4 × its cores, not to the requests
// in flight; pgxpool's default, max(4, NumCPU of the client), suits a
// small database.
//
// # Storage
//
// Secrets are stored only as the hashes the Service computes. Scopes are
// text[]; times are timestamptz, kept to the microsecond (truncation errs
// on the side of expired). Every time comes from the caller (the Service's
// Config.Now), never from the database's clock, so expiry is judged by the
// same clock as the Service's own checks.
//
// # Pruning and schema
//
// [Store.Prune] deletes, in bounded batches, expired credentials,
// initialization tokens ten minutes after their expiry, and the
// delegations nothing refers to any more; [Store.RunJanitor] calls it on a
// ticker, batch after batch until the backlog is gone.
//
// The schema is created by [Store.Migrate] from migrations embedded in the
// package (versioned, applied once under an advisory lock, recorded in
// agentpass_schema_migrations); the tables are named agentpass_service_*.
// Operators with their own migration tool apply [Migrations] instead.
package servicepg
