package bridge

import (
	"fmt"
	"net/http"
)

// Refusal reasons: the metric label and the log's reason field.
const (
	reasonCookieMissing  = "cookie_missing"
	reasonTokenMalformed = "token_malformed"
	reasonSignature      = "signature_invalid"
	reasonAlgorithm      = "algorithm_not_allowed"
	reasonExpired        = "token_expired"
	reasonNotYetValid    = "token_not_yet_valid"
	reasonClaimMissing   = "claim_missing"
	reasonClaimInvalid   = "claim_invalid"
	reasonNotPublisher   = "not_a_publisher"
	reasonOrigin         = "origin_not_allowed"
	reasonNotReady       = "not_ready"
	reasonShuttingDown   = "shutting_down"
	reasonBadHandshake   = "bad_handshake"
)

// refusal is why an upgrade (or a publish) was refused.
type refusal struct {
	reason string
	detail string
}

func refuse(reason, format string, args ...any) *refusal {
	return &refusal{reason: reason, detail: fmt.Sprintf(format, args...)}
}

func (r *refusal) Error() string { return r.reason + ": " + r.detail }

// status is the HTTP status that answers the refused request: 401 for token
// problems, 403 for Origin, 503 while the node cannot serve.
func (r *refusal) status() int {
	switch r.reason {
	case reasonOrigin, reasonNotPublisher:
		return http.StatusForbidden
	case reasonNotReady, reasonShuttingDown:
		return http.StatusServiceUnavailable
	case reasonBadHandshake:
		return http.StatusBadRequest
	}
	return http.StatusUnauthorized
}
