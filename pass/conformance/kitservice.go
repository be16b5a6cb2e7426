package conformance

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// KitService is the kit's own Service. An Authority only answers its
// validation and authorization-check endpoints to a Service it can discover
// and whose keys sign the call, so to check those endpoints the kit must be
// such a Service: serve KitService at one or two origins the Authority
// reaches (a domain you control, or devnet hosts added with -external), and
// publish _agentpass-service.{host} as ConfigurationURL(origin). With two
// origins the kit also checks that one Service cannot use, or burn, a pass
// issued for the other.
//
// It serves a Service configuration, its JWKS, and an available-scopes
// endpoint offering three read-only scopes ("conformance:read", "...:list"
// and "...:search") that records each Authority call for the kit to judge.
// Its configuration advertises the mission and stages extensions, so that
// an Authority offering them keeps a staged plan for it. It is safe for
// concurrent use.
type KitService struct {
	keys    *dpop.KeySet
	origins []string

	// served counts every request, so that a check can tell whether a
	// target reached out to the kit.
	served atomic.Int64

	mu    sync.Mutex
	calls []scopeCall
}

type scopeCall struct {
	origin string
	at     time.Time
	bearer string
	body   []byte
}

// The scopes the kit's Service offers, all declared read-only so that an
// Authority's effect rules let a policy approve them and stage gates on
// them open without a person.
const (
	kitScope       = "conformance:read"
	kitScopeList   = "conformance:list"
	kitScopeSearch = "conformance:search"
)

const kitPrefix = "/agentpass-conformance"

// NewKitService returns the kit's Service for one or two https origins.
func NewKitService(origins ...string) (*KitService, error) {
	if len(origins) == 0 || len(origins) > 2 {
		return nil, errors.New("conformance: NewKitService takes one or two origins")
	}
	s := &KitService{}
	for _, o := range origins {
		if err := pass.CheckOrigin(o); err != nil {
			return nil, fmt.Errorf("conformance: kit service origin %q: %w", o, err)
		}
		norm, _ := pass.Origin(o)
		s.origins = append(s.origins, norm)
	}
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		return nil, err
	}
	s.keys = keys
	return s, nil
}

// ConfigurationURL returns the configuration URL to publish for origin.
func (s *KitService) ConfigurationURL(origin string) string {
	norm, _ := pass.Origin(origin)
	return norm + kitPrefix + "/configuration"
}

func (s *KitService) configuration(origin string) pass.ServiceConfiguration {
	base := origin + kitPrefix
	var x pass.Extensions
	for _, uri := range []string{pass.ExtMission, pass.ExtStages} {
		x, _ = x.With(uri, pass.Extension{Version: "1.0"})
	}
	return pass.ServiceConfiguration{
		Extensions: x,
		Version:    pass.Version, Kind: pass.KindService,
		Service: pass.ServiceInfo{Origin: origin, Name: "AgentPass conformance kit"},
		JWKSURI: base + "/jwks",
		Endpoints: pass.ServiceEndpoints{
			ResolveAuthorities: base + "/resolve", RedeemBrowserSession: base + "/redeem-browser-session",
			RedeemBearerToken: base + "/redeem-bearer-token", AvailableScopes: base + "/available-scopes",
		},
	}
}

// ServeHTTP serves the kit's Service for the origin the request's Host
// names.
func (s *KitService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.served.Add(1)
	origin, err := pass.Origin("https://" + r.Host)
	known := err == nil && s.has(origin)
	path := strings.TrimPrefix(r.URL.Path, kitPrefix)
	switch {
	case !known:
		httpx.WriteError(w, nil, pass.Fail(pass.CodeNotFound, "unknown host"))
	case path == "/configuration" && r.Method == http.MethodGet:
		w.Header().Set("Cache-Control", "max-age=60")
		httpx.WriteJSON(w, http.StatusOK, s.configuration(origin))
	case path == "/jwks" && r.Method == http.MethodGet:
		httpx.WriteJSON(w, http.StatusOK, s.keys.JWKS())
	case path == "/available-scopes" && r.Method == http.MethodPost:
		body, _ := io.ReadAll(io.LimitReader(r.Body, pass.MaxDocumentSize))
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		if len(s.calls) < 256 {
			s.calls = append(s.calls, scopeCall{origin: origin, at: time.Now(), bearer: bearer, body: body})
		}
		s.mu.Unlock()
		httpx.WriteJSON(w, http.StatusOK, pass.AvailableScopesResponse{Scopes: []pass.ScopeInfo{
			{Name: kitScope, Description: "Read items (conformance kit)", Effect: "read"},
			{Name: kitScopeList, Description: "List items (conformance kit)", Effect: "read"},
			{Name: kitScopeSearch, Description: "Search items (conformance kit)", Effect: "read"}}})
	default:
		httpx.WriteError(w, nil, pass.Fail(pass.CodeNotFound, "the conformance kit's Service serves no such endpoint"))
	}
}

func (s *KitService) has(origin string) bool {
	for _, o := range s.origins {
		if o == origin {
			return true
		}
	}
	return false
}

func (s *KitService) scopeCalls() []scopeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scopeCall(nil), s.calls...)
}
