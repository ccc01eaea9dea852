package bridge

import (
	"net/http"
	"slices"
)

// originPolicy is superset-websocket's isOriginAllowed: an empty list or one
// containing "*" allows every origin; otherwise the request must carry
// exactly one Origin header equal to an entry.
type originPolicy struct {
	allowed []string
	any     bool
}

func newOriginPolicy(allowed []string) originPolicy {
	return originPolicy{allowed: allowed, any: len(allowed) == 0 || slices.Contains(allowed, "*")}
}

func (p originPolicy) check(r *http.Request) *refusal {
	if p.any {
		return nil
	}
	values := r.Header.Values("Origin")
	switch {
	case len(values) == 0:
		return refuse(reasonOrigin, "no Origin header; allowedOrigins requires one of %v", p.allowed)
	case len(values) > 1:
		return refuse(reasonOrigin, "%d Origin headers; exactly one is required", len(values))
	case !slices.Contains(p.allowed, values[0]):
		return refuse(reasonOrigin, "origin %q is not in allowedOrigins %v", values[0], p.allowed)
	}
	return nil
}
