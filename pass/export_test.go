package pass

// The url.Parse paths behind the fast path of canonical URLs, for
// FuzzURLFastPath.
var (
	CheckHTTPSURLSlow = checkHTTPSURLSlow
	OriginSlow        = originSlow
	CheckOriginSlow   = checkOriginSlow
	HostSlow          = hostSlow
)

// DecodeSlow is Decode by the json.Decoder path only, for
// FuzzDecodeFastPath.
func DecodeSlow(data []byte, doc Document) error { return decode(data, doc, false) }

// ValidateJWKSlow is the map path of the cnf.jwk check, for FuzzJWKMembers.
var ValidateJWKSlow = validateJWKSlow

// ValidateCnf is the cnf check of a document.
func ValidateCnf(c *Cnf, field string) error { return c.validate(field) }
