package devnetclient

// Manifest is manifest.json: everything a tool needs to use the devnet.
type Manifest struct {
	ManifestFile string `json:"manifest_file"`
	// CAFile is the PEM certificate of the CA every host's certificate
	// chains to. The devnet keeps it (and its key, ca-key.pem, mode 0600)
	// in its directory across restarts; name constraints limit it to
	// names under .test.
	CAFile string `json:"ca_file"`
	// DNS is the DNS server (UDP and TCP): the discovery TXT records, and
	// A records of every host (127.0.0.1).
	DNS string `json:"dns"`
	// Hosts maps each host name to the loopback address it listens on.
	Hosts map[string]string `json:"hosts"`
	// EtcHosts are lines for /etc/hosts, for tools that cannot use DNS.
	EtcHosts []string `json:"etc_hosts"`
	// Curl gives each host's --resolve argument ("todo.test:8443:127.0.0.1").
	Curl map[string]string `json:"curl_resolve"`
	// DNSRecords are the TXT records published.
	DNSRecords map[string]string `json:"dns_records"`
	// AdminToken is the bearer token of every approval page's admin API.
	AdminToken  string              `json:"admin_token"`
	Store       string              `json:"store"` // memory or postgres
	Service     ManifestService     `json:"service"`
	Authorities []ManifestAuthority `json:"authorities"`
	Users       []ManifestUser      `json:"users"`
	// External lists your own servers added with -external.
	External []ManifestExternal `json:"external,omitempty"`
}

// ManifestExternal is a server of yours that the devnet reaches.
type ManifestExternal struct {
	Host     string `json:"host"`
	Addr     string `json:"addr"`
	Origin   string `json:"origin"`
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// ManifestService describes the to-do Service.
type ManifestService struct {
	Origin           string   `json:"origin"`
	ConfigurationURL string   `json:"configuration_url"`
	API              string   `json:"api"`
	App              string   `json:"app"`
	Scopes           []string `json:"scopes"`
}

// ManifestAuthority describes one Authority.
type ManifestAuthority struct {
	Name             string `json:"name"`
	Identifier       string `json:"identifier"`
	TrustMode        string `json:"trust_mode"`
	ConfigurationURL string `json:"configuration_url"`
	ApprovalPage     string `json:"approval_page"`
	AdminAPI         string `json:"admin_api"`
}

// ManifestUser is a test user and what to expect for them.
type ManifestUser struct {
	Email string `json:"email"`
	// Branch is what the Service's resolution answered at start-up:
	// enterprise, service, federated, service_or_federated, or refused.
	Branch string `json:"branch"`
	// Authorities lists the identifiers offered.
	Authorities []string `json:"authorities,omitempty"`
	// Error is the Service's refusal ("403 delegation_disabled").
	Error  string `json:"error,omitempty"`
	Expect string `json:"expect"`
}
