package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// usePostgres gives every party a store in a schema of its own
// (agentpass_devnet_corp, ..._strict, ..._federated, ..._service_authority,
// ..._service), and all of them one replay table (..._replay), as replicas
// of every role would share it; it migrates them and runs their janitors
// until ctx ends.
func (d *devnet) usePostgres(ctx context.Context, dsn, prefix string, logger *slog.Logger, opts *sandbox.Options) error {
	if prefix == "" {
		prefix = "agentpass_devnet"
	}
	pool := func(schema string) (*pgxpool.Pool, error) {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("-postgres: %w", err)
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		admin, err := pgxpool.NewWithConfig(cctx, cfg.Copy())
		if err != nil {
			return nil, fmt.Errorf("-postgres: %w", err)
		}
		_, err = admin.Exec(cctx, "CREATE SCHEMA IF NOT EXISTS "+schema)
		admin.Close()
		if err != nil {
			return nil, fmt.Errorf("-postgres: creating schema %s: %w", schema, err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("-postgres: %w", err)
		}
		d.closers = append(d.closers, p.Close)
		return p, nil
	}
	jctx, stopJanitors := context.WithCancel(ctx)
	d.closers = append(d.closers, stopJanitors)
	for _, t := range []struct {
		schema string
		dst    *authority.Store
	}{
		{prefix + "_corp", &opts.EnterpriseStore},
		{prefix + "_strict", &opts.EnterpriseStrictStore},
		{prefix + "_federated", &opts.FederatedStore},
		{prefix + "_service_authority", &opts.ServiceAuthorityStore},
	} {
		p, err := pool(t.schema)
		if err != nil {
			return err
		}
		s := authoritypg.New(p, authoritypg.WithLogger(logger))
		if err := s.Migrate(ctx); err != nil {
			return fmt.Errorf("-postgres: migrating %s: %w", t.schema, err)
		}
		go func() { _ = s.RunJanitor(jctx, time.Minute) }()
		*t.dst = s
	}
	p, err := pool(prefix + "_service")
	if err != nil {
		return err
	}
	s := servicepg.New(p, servicepg.WithLogger(logger))
	if err := s.Migrate(ctx); err != nil {
		return fmt.Errorf("-postgres: migrating %s_service: %w", prefix, err)
	}
	go func() { _ = s.RunJanitor(jctx, time.Minute) }()
	opts.ServiceStore = s

	if p, err = pool(prefix + "_replay"); err != nil {
		return err
	}
	rc := dpoppg.New(p, dpoppg.WithClock(opts.Now), dpoppg.WithLogger(logger))
	if err := rc.Migrate(ctx); err != nil {
		return fmt.Errorf("-postgres: migrating %s_replay: %w", prefix, err)
	}
	go func() { _ = rc.RunJanitor(jctx, time.Minute) }()
	opts.ReplayCache = rc
	return nil
}
