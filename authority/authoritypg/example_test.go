package authoritypg_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Example wires an Authority replica to PostgreSQL: one pool per process,
// Migrate at start-up (idempotent, safe from every replica), the store in
// the Config, and the janitor for as long as the process serves. (It needs
// a database, so it is compiled, not run.)
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	store := authoritypg.New(pool, authoritypg.WithLogger(slog.Default()))
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	go store.RunJanitor(ctx, time.Minute) // keeps up with the backlog; stops with ctx

	keys, err := dpop.GenerateKeySet()
	if err != nil {
		log.Fatal(err)
	}
	a, err := authority.New(authority.Config{
		Identifier: "https://idp.corp.example",
		TrustMode:  pass.TrustEnterprise,
		Keys:       keys,
		Store:      store,
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = a // serve it: http.ListenAndServeTLS(..., a)
}
