// Package replicatest runs whole AgentPass deployments with several
// replicas per role on one PostgreSQL database (issue 9, items 4 and 7).
//
// # Overview
//
// The tests build, on a loopback network (package internal/testnet, real
// DNS and TLS, parties wired by internal/testnet/deploy), two Authority replicas (package authority, same Identifier
// and KeySet, each on its own authoritypg.Store and pool) and two Service
// replicas (package service, same Origin and KeySet, each on its own
// servicepg.Store and pool), all on one schema, where every replica of both
// roles records its proofs and assertions in the one dpoppg replay table.
// Each pair is served behind
// one host name by a round-robin load balancer, and a real Harness (package
// harness) acquires passes from them. They check that single use holds
// across replicas (passes, initialization tokens) and that a revocation made
// through one Authority replica is enforced by every Service replica at its
// next authorization check. The benchmarks measure validation and
// redemption end to end, with the in-memory stores next to PostgreSQL.
// The flood tests (TestFlood*, one replica per role on the in-memory
// stores, no PostgreSQL needed) send thousands of requests through the
// rate limits and show an honest flow passing afterwards; -race skips
// them.
//
// # Usage
//
// The package has tests only. They need a PostgreSQL server and skip
// without one:
//
//	eval "$(.ci/postgres.sh start)"
//	go test ./internal/replicatest/
//	go test -run '^$' -bench . -benchmem ./internal/replicatest/
package replicatest
