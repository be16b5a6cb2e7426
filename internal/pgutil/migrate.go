// Package pgutil holds what the PostgreSQL stores share: schema migrations
// and the janitor that deletes expired rows.
//
// # Overview
//
// [MigrateFS] applies a component's embedded, versioned migrations under an
// advisory lock, so several replicas starting at once migrate exactly once.
// [RunJanitor] prunes expired rows in batches, bounded by time per tick, so
// it keeps up however many rows expire.
//
// # Usage
//
//	//go:embed migrations/*.sql
//	var Migrations embed.FS
//
//	err := pgutil.MigrateFS(ctx, pool, "my_component", Migrations, "migrations")
//	go pgutil.RunJanitor(ctx, 0, logger, "my_component", store.Prune)
package pgutil

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migration is one versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads files named "NNN_description.sql" from dir in fsys,
// ordered by version. Versions must be unique and start at 1 without gaps.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("pgutil: migration %q is not named NNN_description.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("pgutil: migration versions must be 1..n without gaps (found %d at position %d)", m.Version, i+1)
		}
	}
	return out, nil
}

// Migrate applies the migrations of component that the database has not
// seen yet, each in its own transaction, under a transaction-scoped advisory
// lock keyed by the component, and records them in
// agentpass_schema_migrations. Running it again is a no-op; running it from
// several processes at once applies each migration once.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, migrations []Migration) error {
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS agentpass_schema_migrations (
		component  text        NOT NULL,
		version    integer     NOT NULL,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (component, version))`); err != nil {
		// A concurrent CREATE TABLE IF NOT EXISTS can race on the catalog;
		// the table exists afterwards either way, so check before failing.
		var exists bool
		if qerr := pool.QueryRow(ctx, `SELECT to_regclass('agentpass_schema_migrations') IS NOT NULL`).Scan(&exists); qerr != nil || !exists {
			return fmt.Errorf("pgutil: creating migrations table: %w", err)
		}
	}
	lockKey := advisoryKey(component)
	for _, m := range migrations {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
				return err
			}
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agentpass_schema_migrations WHERE component = $1 AND version = $2)`,
				component, m.Version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO agentpass_schema_migrations (component, version, name) VALUES ($1, $2, $3)`,
				component, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgutil: %s migration %d (%s): %w", component, m.Version, m.Name, err)
		}
	}
	return nil
}

func advisoryKey(component string) int64 {
	h := fnv.New64a()
	h.Write([]byte("agentpass:" + component))
	return int64(h.Sum64())
}

// MigrateFS loads the migrations in dir of fsys (see LoadMigrations) and
// applies them for component (see Migrate): what each store's Migrate does.
func MigrateFS(ctx context.Context, pool *pgxpool.Pool, component string, fsys fs.FS, dir string) error {
	ms, err := LoadMigrations(fsys, dir)
	if err != nil {
		return err
	}
	return Migrate(ctx, pool, component, ms)
}
