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
