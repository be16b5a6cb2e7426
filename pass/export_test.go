package pass

// The url.Parse paths behind the fast path of canonical URLs, for
// FuzzURLFastPath.
var (
	CheckHTTPSURLSlow = checkHTTPSURLSlow
	OriginSlow        = originSlow
	CheckOriginSlow   = checkOriginSlow
	HostSlow          = hostSlow
)
