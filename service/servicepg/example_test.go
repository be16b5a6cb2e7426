package servicepg_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// Example wires a Service replica to PostgreSQL: one pool per process,
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

	store := servicepg.New(pool, servicepg.WithLogger(slog.Default()))
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	go store.RunJanitor(ctx, time.Minute) // keeps up with the backlog; stops with ctx

	svc, err := service.New(service.Config{
		Origin: "https://todo.example",
		Store:  store,
		// Keys, Authorities, Scopes, ... as for any Service.
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = svc // serve it
}
