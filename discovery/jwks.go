package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksEntry is a cached JWKS and when it was fetched. refetched (guarded by
// Client.refetchMu) is when an unknown kid last triggered a refetch.
type jwksEntry struct {
	set       *jose.JSONWebKeySet
	fetched   time.Time
	refetched time.Time
}

// privateMembers are JWK members that carry private or symmetric key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037; "priv" of AKP keys).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// parseJWKS decodes a JWK Set of public keys. A set in which any key carries
// private or symmetric key material is rejected as a whole (it signals a
// leak or a misconfiguration). Keys of a type go-jose does not know are
// skipped (RFC 7517 §5); other malformed keys reject the set.
func parseJWKS(body []byte) (*jose.JSONWebKeySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New("malformed JSON")
	}
	if raw.Keys == nil {
		return nil, errors.New(`no "keys" array`)
	}
	set := &jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(raw.Keys))}
	for i, kb := range raw.Keys {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(kb, &members); err != nil {
			return nil, fmt.Errorf("key %d is not a JSON object", i)
		}
		for _, m := range privateMembers {
			if _, ok := members[m]; ok {
				return nil, fmt.Errorf("key %d carries private or symmetric key material (%q)", i, m)
			}
		}
		var kty string
		if err := json.Unmarshal(members["kty"], &kty); err != nil || kty == "" {
			return nil, fmt.Errorf("key %d has no kty", i)
		}
		if kty == "oct" {
			return nil, fmt.Errorf("key %d is symmetric", i)
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(kb); err != nil {
			if errors.Is(err, jose.ErrUnsupportedKeyType) {
				continue
			}
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if !k.Valid() || !k.IsPublic() {
			return nil, fmt.Errorf("key %d is not a valid public key", i)
		}
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

// JWKS fetches, validates and caches the JSON Web Key Set at jwksURL
// (Content-Type application/json or application/jwk-set+json). A set holding
// private or symmetric key material is rejected. The result is a copy of the
// cached set's key list.
func (c *Client) JWKS(ctx context.Context, jwksURL string) (*jose.JSONWebKeySet, error) {
	e, err := c.jwks(ctx, jwksURL, false)
	if err != nil {
		return nil, err
	}
	return &jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), e.set.Keys...)}, nil
}

// LookupKey returns the key with Key ID kid from the JWKS at jwksURL, for
// verifying signatures (keys with "use": "enc" are ignored). When the cached
// set has no such key, the set is fetched again, but at most once per
// Config.KeyRefetchCooldown per URL counted from the last fetch, so a flood
// of random kids cannot become a flood of fetches; otherwise the error
// matches [ErrKeyNotFound]. An empty kid is never found.
func (c *Client) LookupKey(ctx context.Context, jwksURL, kid string) (*jose.JSONWebKey, error) {
	if kid == "" {
		return nil, fmt.Errorf("%w: empty kid", ErrKeyNotFound)
	}
	e, err := c.jwks(ctx, jwksURL, false)
	if err != nil {
		return nil, err
	}
	if k := findKey(e.set, kid); k != nil {
		return k, nil
	}
	now := c.now()
	c.refetchMu.Lock()
	allowed := now.Sub(e.fetched) >= c.keyCooldown && now.Sub(e.refetched) >= c.keyCooldown
	if allowed {
		e.refetched = now
	}
	c.refetchMu.Unlock()
	if !allowed {
		return nil, fmt.Errorf("%w: kid %q in %s (refetch cooling down)", ErrKeyNotFound, trunc(kid, 64), jwksURL)
	}
	c.log.LogAttrs(ctx, levelDebug, "discovery: unknown kid, refetching JWKS", strAttr("url", jwksURL))
	e, err = c.jwks(ctx, jwksURL, true)
	if err != nil {
		return nil, err
	}
	if k := findKey(e.set, kid); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q in %s", ErrKeyNotFound, trunc(kid, 64), jwksURL)
}

func findKey(set *jose.JSONWebKeySet, kid string) *jose.JSONWebKey {
	for i := range set.Keys {
		if k := set.Keys[i]; k.KeyID == kid && k.Use != "enc" {
			return &k
		}
	}
	return nil
}

// jwks returns the cached entry for jwksURL, or fetches it. With force the
// cache is bypassed (the caller has checked the refetch cooldown).
func (c *Client) jwks(ctx context.Context, jwksURL string, force bool) (*jwksEntry, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	key, err := c.fetchKeys.key("", jwksURL)
	if err != nil {
		return nil, err
	}
	if !force {
		if e, ok := c.jwksCache.get(key, c.now()); ok {
			return e, nil
		}
	}
	fkey := "jwks " + key
	if force {
		fkey = "jwks! " + key
	}
	v, err := c.flight(ctx, fkey, c.fetchTimeout+time.Second, func(ctx context.Context) (any, error) {
		if !force {
			if e, ok := c.jwksCache.get(key, c.now()); ok {
				return e, nil
			}
		}
		f, err := c.fetch(ctx, jwksURL, mediaJSON, mediaJWKS)
		if err != nil {
			c.log.LogAttrs(ctx, levelWarn, "discovery: JWKS fetch failed", strAttr("url", jwksURL), errAttr(err))
			return nil, err
		}
		set, err := parseJWKS(f.body)
		if err != nil {
			c.log.LogAttrs(ctx, levelWarn, "discovery: invalid JWKS", strAttr("url", jwksURL), errAttr(err))
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidDocument, jwksURL, err)
		}
		e := &jwksEntry{set: set, fetched: c.now()}
		c.jwksCache.put(key, e, e.fetched.Add(f.lifetime))
		return e, nil
	})
	if err != nil {
		if !errors.Is(err, ErrFetchFailed) && !errors.Is(err, ErrInvalidDocument) {
			err = &FetchError{URL: jwksURL, Err: err}
		}
		return nil, err
	}
	return v.(*jwksEntry), nil
}
