// Package jwtcheck is the one JWT pipeline of the module.
//
// # Overview
//
// Every kind of token the SDK verifies (harness proofs, task attestations,
// harness attestations, RFC 9449 DPoP proofs, Service and Authority
// assertions, RFC 8417 security event tokens) goes through the same steps,
// each kind described by a [Profile], and every token it sends is signed
// with [Sign], so the rules cannot drift apart between kinds.
//
// # Usage
//
//	tok, err := jwtcheck.Parse(raw, jwtcheck.HarnessProof)
//	// ... claim checks that need no key (audience, issuer) ...
//	err = tok.Verify(key)
//	err = jwtcheck.CheckTimes(tok, now, jwtcheck.TimeRules{Skew: skew, MaxLifetime: maxLife})
//	err = tok.Record(ctx, replay, tok.Claims.Issuer, exp.Add(skew))
//
// # The steps
//
//  1. [Parse], once per request: size cap, compact JWS only, strict
//     base64url, the header rules of the token's [Profile], the algorithm
//     allow-list, and the claims decoded (not yet trusted).
//  2. [Token.Verify]: the key must fit the algorithm ([CheckKey]), then the
//     signature must verify.
//  3. [CheckTimes]: iat, exp, nbf, clock skew, maximum lifetime or age.
//  4. [Token.Record], last: the jti enters the replay cache only once
//     everything else passed, so self-signed junk cannot fill the cache.
//
// Callers run their own claim checks (audience, issuer, binding) between
// steps 1 and 4, and map [*Error] to their own error kinds.
package jwtcheck
