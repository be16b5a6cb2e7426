// Package replicatest runs whole AgentPass deployments with several
// replicas per role on one PostgreSQL database, to show that single use and
// revocation hold whichever replica a request reaches.
//
// # Overview
//
// The package has tests and benchmarks only. The tests check that passes
// and initialization tokens stay single-use across replicas, and that a
// revocation made through one Authority replica is enforced by every
// Service replica at its next authorization check; the benchmarks measure
// validation and redemption end to end.
//
// # Usage
//
// The replica tests need a PostgreSQL server and skip without one:
//
//	eval "$(bash .ci/postgres.sh start)"
//	go test ./internal/replicatest/
//	go test -run '^$' -bench . -benchmem ./internal/replicatest/
//
// # What the tests build
//
// On a loopback network (package internal/testnet, real DNS and TLS,
// parties wired by internal/testnet/deploy): two Authority replicas
// (package authority, same Identifier and KeySet, each on its own
// authoritypg.Store and pool) and two Service replicas (package service,
// same Origin and KeySet, each on its own servicepg.Store and pool), all on
// one schema, where every replica of both roles records its proofs and
// assertions in the one dpoppg replay table. Each pair is served behind one
// host name by a round-robin load balancer, and a real Harness (package
// harness) acquires passes from them. The benchmarks run the in-memory
// stores next to PostgreSQL.
//
// The flood tests (TestFlood*, one replica per role on the in-memory
// stores, no PostgreSQL needed) send thousands of requests through the
// rate limits and show an honest flow passing afterwards; -race skips
// them.
package replicatest
