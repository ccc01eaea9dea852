package eventlog

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NewJetStream returns a JetStream context for domain ("": the domain of
// nc's own server). It addresses a domain by its API prefix,
// $JS.<domain>.API, as jetstream.NewWithDomain does internally, but through
// jetstream.NewWithAPIPrefix so that the prefix is also in the context's
// Options: batched direct gets (jetstreamext.GetBatch, which Read uses)
// build their subject from those options and, given only a domain, request
// $JS.<domain>.DIRECT.GET.<stream>, which nothing answers (orbit.go
// jetstreamext v0.3.2): every replay from JetStream failed with "no
// responders".
func NewJetStream(nc *nats.Conn, domain string, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	if domain == "" {
		return jetstream.New(nc, opts...)
	}
	return jetstream.NewWithAPIPrefix(nc, APIPrefix(domain), opts...)
}

// APIPrefix is the JetStream API prefix of domain ("": the local one).
func APIPrefix(domain string) string {
	if domain == "" {
		return jetstream.DefaultAPIPrefix
	}
	return "$JS." + domain + ".API."
}
